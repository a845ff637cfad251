"""`agentflux demo` end to end: broker, worker, simulator, summary, a Parquet history."""

import os
import subprocess
import sys

from agentflux.sinks.catalog import connect


def test_demo_runs_end_to_end_and_leaves_a_history(kafka_bootstrap, tmp_path):
    root = tmp_path / "demo-history"
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "AGENTFLUX_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"),
           "COLUMNS": "160"}
    proc = subprocess.run([sys.executable, "-m", "agentflux.cli", "demo", "--events", "8000",
                           "--history", str(root)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "landed 8,000" in out and "dead letters 0" in out and "events/s" in out
    assert "llm.call" in out and "tool.call" in out
    assert f"agentflux sql --history {root}" in out.replace("\n", "")
    # the worker's log is in the state directory (the demo says where), nothing in /tmp
    logs = list((tmp_path / "home" / "logs").glob("demo-worker-*.log"))
    assert len(logs) == 1 and str(logs[0]) in out.replace("\n", "")
    assert not list((tmp_path / "tmp").iterdir())
    con = connect(root)
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone() == (8000, 8000)
    assert con.execute("SELECT count(*) FROM kpis").fetchone()[0] > 0
    assert con.execute("SELECT count(*) FROM kpi_timing").fetchone()[0] > 0
    con.close()
    # a second run never replaces the history: one line, the fix, nothing touched
    again = subprocess.run([sys.executable, "-m", "agentflux.cli", "demo", "--events", "10",
                            "--history", str(root)], env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 2 and "another --history" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    con = connect(root)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 8000
