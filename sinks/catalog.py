"""DuckDB on top of the history: views over the Parquet segments.

Two ways in, with the same views:

* :func:`connect` (``agentflux sql``, notebooks, Python): an in-memory DuckDB whose base views
  read the segments that are visible at the moment each query starts, listed by
  :func:`visible_segments` (a function of this connection that DuckDB calls once per table per
  query). A segment a merged one hides is never opened, so the compactor deleting it cannot fail
  a query; a visible segment is deleted only ``compact_grace_s`` after the merged segment that
  hides it appeared, so a query shorter than the grace never misses a file.
* ``<root>/history.duckdb``, for plain DuckDB clients (the ``duckdb`` CLI, other languages):
  views only (no data), so no process keeps it open; a worker writes it to a temporary file and
  renames it into place, and any number of readers open it read-only at any time. Its views glob
  every segment at each query (SQL cannot pass a computed file list to ``read_parquet``), so they
  open hidden segments too: a query running at the moment the compactor deletes one fails with
  "No such file or directory" and can simply be run again.

Both apply the history's visibility rule (:mod:`agentflux.sinks.history`) to the rows they read:
a row shows when its offset is above its segment's floor, so overlapping segments (a compaction
in progress, a late segment from a previous owner) never show a row twice.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb
import pyarrow.fs as pafs

from agentflux.schemas.kpis import kpi_views_sql
from agentflux.sinks.history import SCHEMA_FILE, SEGMENT_SQL_RE, History, with_floors
from agentflux.sinks.tables import TABLES

CATALOG_FILE = "history.duckdb"


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


SEGMENTS_FUNCTION = "agentflux_segments"


def table_views(root: str, *, listed: bool = False) -> str:
    """The base views: one per table, each with the visibility rule applied.

    The files come from the glob (the catalog file) or, with ``listed``, from
    ``agentflux_segments(table)`` (:func:`connect`: the visible segments, after the table's
    schema file). The floors come from the files the scan read (materialised once, only the
    columns a query needs): a second listing, taken a moment earlier or later, could see a merged
    segment that the scan did not, and hide rows the scan read. Segments with no rows take no
    part in the rule (there is nothing they could hide: the content of an offset is the same in
    every segment that holds it)."""
    out = []
    for name in TABLES:
        files = (f"{SEGMENTS_FUNCTION}({_q(name)})" if listed
                 else _q(f"{root}/{name}/**/*.parquet"))
        out.append(f"""
CREATE OR REPLACE VIEW {name} AS
    WITH scan AS MATERIALIZED (SELECT * FROM read_parquet({files}, filename = true)),
    segs AS (
        SELECT filename, seg.log || '/' || seg.p AS lp, CAST(seg.first AS BIGINT) AS first_offset,
               CAST(seg.last AS BIGINT) AS last_offset
        FROM (SELECT filename, regexp_extract(filename, {_q(SEGMENT_SQL_RE)},
                                              ['log', 'p', 'first', 'last']) AS seg
              FROM (SELECT DISTINCT filename FROM scan))
        WHERE seg.log <> ''),
    floors AS (
        SELECT filename, coalesce(max(last_offset) OVER (
            PARTITION BY lp ORDER BY first_offset, last_offset DESC, filename
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), -1) AS floor
        FROM segs)
    SELECT scan.* EXCLUDE (filename)
    FROM scan JOIN floors USING (filename)
    WHERE scan.kafka_offset > floors.floor;""")
    return "\n".join(out)


# Views for analysts, over the base views. Percentiles over time come from the windows' merged
# DDSketches (bucket counts summed across partial rows, revisions and workers), never from
# percentiles of percentiles.
QUANTILES = (0.5, 0.9, 0.95, 0.99)


def sketch_quantiles(source: str, keys: tuple[str, ...]) -> str:
    """SQL: the DDSketches of ``source`` (a query with the columns ``keys``, ``sketch``,
    ``count`` and ``errors``: KPI rows) merged per group of ``keys`` (bucket counts summed over
    windows, partitions and workers), and per group ``count``, ``errors``, ``error_rate``,
    ``p50_ms`` .. ``p99_ms`` (each read from the merged sketch, within its relative accuracy),
    ``min_ms`` and ``max_ms``. The ``latency`` view and :func:`agentflux.analysis.latency`
    (which buckets windows first) are both this."""
    k = ", ".join(keys)
    bk = ", ".join(f"b.{x}" for x in keys)
    tk = ", ".join(f"t.{x}" for x in keys)
    ps = ", ".join(f"({p})" for p in QUANTILES)
    cols = ", ".join(f"max(v) FILTER (WHERE p = {p}) AS p{round(p * 100)}_ms" for p in QUANTILES)
    return f"""
WITH _rows AS ({source}),
_bins AS (
    SELECT {k}, CAST(e.key AS INTEGER) AS k, sum(CAST(e.value AS BIGINT)) AS c
    FROM (SELECT {k},
                 unnest(map_entries(json_transform(sketch -> 'bins', '"MAP(VARCHAR, BIGINT)"')))
                     AS e
          FROM _rows)
    GROUP BY ALL),
_totals AS (
    SELECT {k}, any_value(CAST(sketch ->> 'alpha' AS DOUBLE)) AS alpha,
           sum(CAST(sketch ->> 'zero' AS BIGINT)) AS zero,
           sum(CAST(sketch ->> 'count' AS BIGINT)) AS n,
           min(CAST(sketch ->> 'min' AS DOUBLE)) AS min_ms,
           max(CAST(sketch ->> 'max' AS DOUBLE)) AS max_ms,
           CAST(sum(count) AS BIGINT) AS count, CAST(sum(errors) AS BIGINT) AS errors
    FROM _rows GROUP BY ALL),
_cum AS (
    SELECT {bk}, b.k, t.alpha, t.zero, t.n, t.min_ms, t.max_ms,
           t.zero + sum(b.c) OVER (PARTITION BY {bk} ORDER BY b.k) AS seen
    FROM _bins b JOIN _totals t USING ({k})),
_q AS (
    SELECT {k}, p,
           CASE WHEN floor(p * (any_value(n) - 1)) < any_value(zero) THEN 0.0
                ELSE least(greatest(
                    2 * pow((1 + any_value(alpha)) / (1 - any_value(alpha)),
                            min(k) FILTER (WHERE seen > floor(p * (n - 1))))
                      / ((1 + any_value(alpha)) / (1 - any_value(alpha)) + 1),
                    any_value(min_ms)), any_value(max_ms)) END AS v
    FROM _cum, (VALUES {ps}) ps(p)
    GROUP BY {k}, p)
SELECT {tk}, t.count, t.errors, t.errors / t.count AS error_rate, {cols}, t.min_ms, t.max_ms
FROM _totals t LEFT JOIN _q USING ({k})
GROUP BY ALL"""


ANALYST_VIEWS = """
CREATE OR REPLACE VIEW kpi_rows AS
    SELECT * FROM kpis
    QUALIFY row_number() OVER (PARTITION BY row_id ORDER BY kafka_partition, kafka_offset) = 1;
CREATE OR REPLACE VIEW spans AS
    SELECT ts, type, name, philosophy, agent_id, session_id, duration_ms, error, trace_id, span_id
    FROM events WHERE duration_ms IS NOT NULL;
CREATE OR REPLACE VIEW kpi_timing AS
    SELECT window_start, window_end, type, name, philosophy, sum(count) AS count,
           sum(errors) AS errors, sum(errors) / sum(count) AS error_rate,
           max(p50_ms) AS p50_ms, max(p99_ms) AS p99_ms, count(*) AS partial_rows
    FROM kpi_rows WHERE dim = 'name'
    GROUP BY ALL;
CREATE OR REPLACE VIEW llm_usage AS
    SELECT date_trunc('hour', ts) AS hour, philosophy, name AS model,
           count(*) AS calls,
           sum(CAST(attrs->>'input_tokens' AS BIGINT)) AS input_tokens,
           sum(CAST(attrs->>'output_tokens' AS BIGINT)) AS output_tokens,
           sum(CAST(attrs->>'cache_read_tokens' AS BIGINT)) AS cache_read_tokens,
           sum(CAST(attrs->>'cost_usd' AS DOUBLE)) AS cost_usd
    FROM events WHERE type = 'llm.call' GROUP BY ALL;
""" + """CREATE OR REPLACE VIEW latency AS""" + sketch_quantiles(
    "SELECT window_start, window_end, dim, type, name, sketch, count, errors FROM kpi_rows "
    "WHERE dim IN ('name', 'cold')", ("window_start", "window_end", "dim", "type", "name")
) + """;
CREATE OR REPLACE VIEW error_rates AS
    SELECT date_trunc('minute', ts) AS minute, type, name, count(*) AS events,
           count(*) FILTER (WHERE error) AS errors,
           count(*) FILTER (WHERE error) / count(*) AS error_rate
    FROM events WHERE duration_ms IS NOT NULL GROUP BY ALL;
CREATE OR REPLACE VIEW cost AS
    SELECT session_id, agent_id, name AS model, count(*) AS llm_calls,
           sum(CAST(attrs->>'input_tokens' AS BIGINT)) AS input_tokens,
           sum(CAST(attrs->>'output_tokens' AS BIGINT)) AS output_tokens,
           sum(CAST(attrs->>'cost_usd' AS DOUBLE)) AS cost_usd
    FROM events WHERE type = 'llm.call' GROUP BY GROUPING SETS
        ((session_id, agent_id, model), (agent_id, model), (model), ());
"""


def catalog_sql(root: str, *, listed: bool = False) -> str:
    return table_views(root, listed=listed) + ANALYST_VIEWS + kpi_views_sql()


def visible_segments(history: History, table: str) -> list[str]:
    """The table's schema file, then the segments of which some row is visible (those whose
    floor is below their last offset), from one listing."""
    return [f"{history.table_dir(table)}/{SCHEMA_FILE}"] + [
        s.path for s, floor in with_floors(history.segments(table)) if floor < s.last]


def write_catalog(history: History) -> Path:
    """Write ``<root>/history.duckdb`` (views only) to a temporary file and rename it into
    place; the table directories and schema files are created first, so the views are valid on
    an empty history. Local roots only (DuckDB reads object stores through an extension this
    project does not download: use :func:`connect`)."""
    if not history.local:
        raise ValueError(f"a catalog file needs a local history root, not {history.root}")
    history.init()
    final = Path(history.base) / CATALOG_FILE
    tmp = final.with_name(f".{CATALOG_FILE}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        con = duckdb.connect(str(tmp))
        try:
            con.execute(catalog_sql(history.base))
        finally:
            con.close()
        os.replace(tmp, final)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            if leftover.exists():
                leftover.unlink()
    return final


def connect(root: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the history's views (see the module docstring).

    A local root gets an in-memory DuckDB whose views read the segments visible when each query
    starts (its catalog file is written too when there is none, for plain DuckDB clients; a
    read-only copy of a history goes without). Any other root (``s3://...``) is read through
    pyarrow: the visible rows of each table are registered in an in-memory DuckDB, with the same
    analyst views on top."""
    history = History(root)
    if history.local:
        if not (Path(history.base) / "events").is_dir():
            raise FileNotFoundError(f"no history at {history.base}")
        if not (Path(history.base) / CATALOG_FILE).exists():
            try:  # for plain DuckDB clients; it creates the schema files the views start from
                write_catalog(history)
            except OSError:
                pass  # a read-only copy of a history
        con = duckdb.connect()
        con.create_function(SEGMENTS_FUNCTION, lambda table: visible_segments(history, table),
                            ["VARCHAR"], "VARCHAR[]", side_effects=True)
        con.execute(catalog_sql(history.base, listed=True))
        return con
    if history.fs.get_file_info(history.table_dir("events")).type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no history at {history.root}")
    con = duckdb.connect()
    for name in TABLES:
        con.register(f"_{name}_arrow", history.read(name))
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM _{name}_arrow")
    con.execute(ANALYST_VIEWS + kpi_views_sql())
    return con


__all__ = ["CATALOG_FILE", "SCHEMA_FILE", "catalog_sql", "connect", "visible_segments",
           "write_catalog"]
