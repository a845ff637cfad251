"""`agentflux history import`: a history of the earlier single-DuckDB-file layout, brought into
the Parquet layout; a worker on the new root resumes where the old file said it had landed."""

from __future__ import annotations

import subprocess
import sys

import duckdb

from agentflux.sinks.catalog import connect
from agentflux.sinks.history import History, log_id

# the earlier layout's tables, as its sinks/duckdb.py created them (commit b0a5ea8)
OLD_SCHEMA = """
CREATE TABLE events (id VARCHAR NOT NULL, type VARCHAR NOT NULL, v INTEGER NOT NULL,
    ts TIMESTAMPTZ NOT NULL, ts_ns BIGINT NOT NULL, agent_id VARCHAR, session_id VARCHAR,
    philosophy VARCHAR, source_runtime VARCHAR, source_host VARCHAR, source_pid BIGINT,
    trace_id VARCHAR, span_id VARCHAR, parent_span_id VARCHAR, name VARCHAR,
    duration_ms DOUBLE, error BOOLEAN, attrs JSON, kafka_partition INTEGER,
    kafka_offset BIGINT);
CREATE TABLE deadletters (reason VARCHAR NOT NULL, detail VARCHAR, event_id VARCHAR,
    topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT, batch_index INTEGER, raw BLOB,
    landed_at TIMESTAMPTZ DEFAULT current_timestamp);
CREATE TABLE kpis (kind VARCHAR NOT NULL, worker VARCHAR, window_start TIMESTAMPTZ,
    window_end TIMESTAMPTZ, type VARCHAR, name VARCHAR, philosophy VARCHAR, revision INTEGER,
    count BIGINT, errors BIGINT, duration_count BIGINT, duration_sum_ms DOUBLE,
    duration_min_ms DOUBLE, duration_max_ms DOUBLE, p50_ms DOUBLE, p90_ms DOUBLE,
    p95_ms DOUBLE, p99_ms DOUBLE, sketch JSON, kafka_partition INTEGER, kafka_offset BIGINT);
CREATE TABLE duplicates (event_id VARCHAR NOT NULL, topic VARCHAR, kafka_partition INTEGER,
    kafka_offset BIGINT, landed_at TIMESTAMPTZ DEFAULT current_timestamp);
CREATE TABLE consumer_offsets (consumer VARCHAR NOT NULL, topic VARCHAR NOT NULL,
    kafka_partition INTEGER NOT NULL, kafka_offset BIGINT NOT NULL, cluster_id VARCHAR,
    topic_id VARCHAR, PRIMARY KEY (consumer, topic, kafka_partition));
"""


def old_history(path):
    con = duckdb.connect(str(path))
    con.execute(OLD_SCHEMA)
    con.execute("""INSERT INTO events SELECT 'id-' || p || '-' || o, 'tool.call', 1,
        make_timestamp(1700000000000000), 1700000000000000000, 'a', 's', 'react', 'r', 'h', 1,
        NULL, NULL, NULL, 'grep', 2.5, false, '{"tool": "grep"}', p, o
        FROM range(2) t(p), range(10, 60) u(o)""")
    con.execute("INSERT INTO deadletters (reason, topic, kafka_partition, kafka_offset, raw) "
                "VALUES ('invalid_json', 'agentflux.events', 1, 61, 'x'::BLOB)")
    con.execute("INSERT INTO duplicates (event_id, topic, kafka_partition, kafka_offset) "
                "VALUES ('id-0-10', 'agentflux.events', 0, 62)")
    con.execute("""INSERT INTO consumer_offsets VALUES
        ('history.events', 'agentflux.events', 0, 62, 'cl', 'tp'),
        ('history.events', 'agentflux.events', 1, 61, 'cl', 'tp')""")
    con.close()


def test_an_old_duckdb_history_imports_and_resumes_where_it_stopped(tmp_path):
    old = tmp_path / "old.duckdb"
    old_history(old)
    root = tmp_path / "history"
    run = subprocess.run([sys.executable, "-m", "agentflux.cli", "history", "import", "--db",
                          str(old), "--history", str(root)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert "100 events" in run.stdout and "1 deadletters" in run.stdout
    con = connect(root)
    assert con.execute("SELECT count(*), count(DISTINCT id), sum(duration_ms) FROM events"
                       ).fetchone() == (100, 100, 250.0)
    assert con.execute("SELECT reason, kafka_offset FROM deadletters").fetchall() == [
        ("invalid_json", 61)]
    assert con.execute("SELECT count(*) FROM duplicates").fetchone() == (1,)
    con.close()
    # the stored offsets carry over: a worker on the new root resumes after them, in their log
    assert History(root).landed_offsets("events", log_id("cl", "tp")) == {0: 62, 1: 61}
    bad = subprocess.run([sys.executable, "-m", "agentflux.cli", "history", "import", "--db",
                          str(tmp_path / "missing.duckdb"), "--history", str(root)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no DuckDB history" in bad.stderr
    assert "Traceback" not in bad.stderr
