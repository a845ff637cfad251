"""``agentflux history import --db OLD``: a history of the earlier single-DuckDB-file layout into
a Parquet history root.

Each table's rows become one segment per Kafka partition, whose range ends at the offset the old
file stored as landed for that partition (so a worker on the new root resumes exactly where the
old one stopped), in the log of the cluster and topic ids the old file recorded (offsets it stored
before recording them count in the unknown log). Rows go through Arrow, never row by row.
"""

from __future__ import annotations

from pathlib import Path

from agentflux.config import ConfigError
from agentflux.sinks.history import NO_LOG, History, log_id
from agentflux.sinks.tables import DEADLETTERS, DUPLICATES, EVENTS, KPIS, Table

OLD_CONSUMERS = {"events": "history.events", "kpis": "history.kpis"}


def import_duckdb(db: str | Path, history: History, events_topic: str,
                  kpis_topic: str) -> dict[str, int]:
    """Rows imported per table."""
    import duckdb

    if not Path(db).exists():
        raise ConfigError(f"no DuckDB history at {db}: pass --db PATH of the old file")
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        raise ConfigError(f"cannot open {db} read-only ({exc}): stop the old worker that holds "
                          "it first") from None
    try:
        have = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                          "WHERE table_type = 'BASE TABLE'").fetchall()}
        if "consumer_offsets" not in have:
            raise ConfigError(f"{db} is not an agentflux history (no consumer_offsets table)")
        cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                          "WHERE table_name = 'consumer_offsets'").fetchall()}
        ident = "cluster_id, topic_id" if "topic_id" in cols else "NULL, NULL"
        stored = {(t, p): (o, c, tid) for c_, t, p, o, c, tid in con.execute(
            f"SELECT consumer, topic, kafka_partition, kafka_offset, {ident} "
            "FROM consumer_offsets").fetchall()
            if c_ in OLD_CONSUMERS.values()}
        history.init()
        out = {}
        for table, topic in ((DEADLETTERS, events_topic), (DUPLICATES, events_topic),
                             (KPIS, kpis_topic), (EVENTS, events_topic)):  # events last: commit
            if table.name not in have:
                out[table.name] = 0
                continue
            out[table.name] = _import_table(con, history, table, topic, stored)
        return out
    finally:
        con.close()


def _import_table(con, history: History, table: Table, topic: str, stored: dict) -> int:
    names = table.schema.names
    old_cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                          "WHERE table_name = ?", [table.name]).fetchall()}
    select = ", ".join(n if n in old_cols else f"NULL AS {n}" for n in names)
    n = 0
    parts = [r[0] for r in con.execute(
        f"SELECT DISTINCT kafka_partition FROM {table.name} WHERE kafka_partition IS NOT NULL"
    ).fetchall()]
    for p in sorted(set(parts) | {p for (t, p) in stored if t == topic}):
        data = con.execute(f"SELECT {select} FROM {table.name} WHERE kafka_partition = ? "
                           "ORDER BY kafka_offset", [p]).to_arrow_table()
        landed, cluster, topic_id = stored.get((topic, p), (None, None, None))
        if not data.num_rows and (landed is None or table is not EVENTS):
            continue
        offsets = data.column("kafka_offset").to_pylist() if data.num_rows else []
        first = min(offsets) if offsets else landed
        last = max([*offsets, landed if landed is not None else -1])
        history.write_segment(table, data.cast(table.schema), partition=p, first=first,
                              last=last, log=log_id(cluster, topic_id) if cluster else NO_LOG)
        n += data.num_rows
    return n
