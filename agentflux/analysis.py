"""The history, for analysts: one read-only connection and the questions asked of it most.

:func:`connect` opens a history (a local directory or ``s3://...``) through its DuckDB views
(:mod:`agentflux.sinks.catalog`) and writes nothing, so a notebook or a report can run beside a
worker that is landing into the same root. The functions below answer the usual questions over a
period (``start`` inclusive, ``end`` exclusive; ``None``: the whole history) and return DuckDB
relations: ``.df()`` gives a pandas DataFrame (notebooks), ``.fetchall()`` and ``.columns`` plain
rows (:mod:`agentflux.report`). They read the pipeline's windows (``kpi_rows``, ``kpi_windows``)
where the pipeline aggregates, so their figures are the ones its alerts and dashboards see:

* latency percentiles come from the windows' DDSketches merged over the period or bucket (bucket
  counts summed), never from percentiles of percentiles;
* rates are ratios of sums (hits over lookups of the whole period), never means of ratios.

Every function takes the connection first; ``bucket`` is a DuckDB interval (``'5 minutes'``,
``'1 hour'``) or ``None`` for one row per key over the whole period.

    >>> from agentflux import analysis
    >>> con = analysis.connect("agentflux-demo-history")
    >>> analysis.latency(con, types=("tool.call",)).df()
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Sequence

import duckdb

from agentflux.sinks import catalog
from agentflux.sinks.history import History
from agentflux.sinks.tables import TABLES

# wider than any history: the bounds used when a period is left open
_FAR_PAST = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_FAR_FUTURE = dt.datetime(2200, 1, 1, tzinfo=dt.timezone.utc)


def connect(root: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    """The history's DuckDB views (events, kpis, latency, alerts, ...) over ``root``, read-only:
    nothing is written into the root (unlike :func:`agentflux.sinks.catalog.connect`, which
    writes the catalog file a local root lacks). Each query reads the segments visible when it
    starts, so a notebook can run while a worker lands and compacts. Times come back
    zone-aware (Python shows them in the machine's zone: ``.astimezone(datetime.timezone.utc)``).
    ``FileNotFoundError`` when ``root`` holds no history."""
    root = os.fspath(root)
    history = History(root)
    if not history.local:
        return catalog.connect(root)  # (reads through pyarrow; writes nothing)
    if not (Path(history.base) / "events").is_dir():
        raise FileNotFoundError(f"no history at {history.base}")
    con = duckdb.connect()
    con.create_function(catalog.SEGMENTS_FUNCTION,
                        lambda table: catalog.visible_segments(history, table),
                        ["VARCHAR"], "VARCHAR[]", side_effects=True)
    con.execute(catalog.catalog_sql(history.base, listed=True))
    return con


def row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows per table of the history (every table, 0 for an empty one): what a notebook checks
    before plotting a table that a deployment may not produce (no pool manager, no alerts)."""
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}


def records(rel: duckdb.DuckDBPyRelation) -> list[dict[str, Any]]:
    """A relation's rows as dicts (column -> value), for code that reads figures by name."""
    cols = rel.columns
    return [dict(zip(cols, row)) for row in rel.fetchall()]


def span(con: duckdb.DuckDBPyConnection) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The first and last event time in the history, in UTC (``(None, None)`` when it has no
    events)."""
    first, last = con.execute("SELECT min(ts), max(ts) FROM events").fetchall()[0]
    return tuple(t.astimezone(dt.timezone.utc) if t is not None else None  # type: ignore
                 for t in (first, last))


def _period(start: dt.datetime | None, end: dt.datetime | None) -> list[dt.datetime]:
    return [start or _FAR_PAST, end or _FAR_FUTURE]


def _bucket(column: str, bucket: str | None) -> str:
    """The SQL of a row's bucket: ``time_bucket`` of ``column``, or the period's start (one
    bucket) when ``bucket`` is None. The interval is checked by DuckDB first: a bad one is a
    ``ValueError`` naming it."""
    if bucket is None:
        return "CAST(? AS TIMESTAMPTZ)"
    try:
        duckdb.sql(f"SELECT INTERVAL '{bucket}'").fetchall()
    except duckdb.Error as e:
        raise ValueError(f"bucket {bucket!r} is not an interval (e.g. '5 minutes', '1 hour'): "
                         f"{e}") from None
    return f"time_bucket(INTERVAL '{bucket}', {column})"


def _in(values: Sequence[str]) -> str:
    if not values:
        raise ValueError("at least one value is needed")
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def latency(con: duckdb.DuckDBPyConnection, start: dt.datetime | None = None,
            end: dt.datetime | None = None, *, bucket: str | None = None,
            types: Sequence[str] = ("tool.call", "llm.call"), dim: str = "name",
            merge_names: bool = False) -> duckdb.DuckDBPyRelation:
    """Calls, errors, error rate and p50/p90/p95/p99 latency (ms) per bucket, type and name (tool
    or model; ``dim='cold'`` for cold starts): the windows' DDSketches merged (bucket counts
    summed over windows, partitions and workers), then each quantile read from the merged
    sketch, within the sketch's relative accuracy (1 %). ``merge_names``: one row per type
    (name ``'*'``), every name's sketch merged."""
    params: list[Any] = []
    b = _bucket("window_start", bucket)
    if bucket is None:
        params.append(_period(start, end)[0])
    params += [dim, *_period(start, end)]
    name = "'*'" if merge_names else "name"
    source = (f"SELECT {b} AS bucket, type, {name} AS name, "
              f"sketch, count, errors FROM kpi_rows WHERE dim = ? AND type IN ({_in(types)}) "
              "AND window_start >= ? AND window_start < ?")
    sql = f"""
SELECT bucket, type, name, count AS calls, errors, error_rate, p50_ms, p90_ms, p95_ms, p99_ms,
       max_ms
FROM ({catalog.sketch_quantiles(source, ("bucket", "type", "name"))})
ORDER BY bucket, type, calls DESC, name"""
    return con.sql(sql, params=params)


def slowest_sessions(con: duckdb.DuckDBPyConnection, start: dt.datetime | None = None,
                     end: dt.datetime | None = None, *, limit: int = 10
                     ) -> duckdb.DuckDBPyRelation:
    """The sessions with the most time spent in timed calls (tool and LLM calls, ...): calls,
    errors, total and slowest call (ms), LLM cost, first and last event."""
    return con.sql(f"""
SELECT session_id, any_value(agent_id) AS agent_id, any_value(philosophy) AS philosophy,
       count(*) AS calls, count(*) FILTER (WHERE error) AS errors,
       sum(duration_ms) AS total_ms, max(duration_ms) AS slowest_ms,
       sum(CAST(attrs ->> 'cost_usd' AS DOUBLE)) FILTER (WHERE type = 'llm.call') AS cost_usd,
       CAST(min(ts) AS TIMESTAMPTZ) AS first_ts, CAST(max(ts) AS TIMESTAMPTZ) AS last_ts
FROM events
WHERE duration_ms IS NOT NULL AND session_id IS NOT NULL AND ts >= ? AND ts < ?
GROUP BY session_id ORDER BY total_ms DESC LIMIT {int(limit)}""", params=_period(start, end))


_COST_BY = {"model": "name", "agent": "agent_id", "session": "session_id",
            "philosophy": "philosophy"}


def cost(con: duckdb.DuckDBPyConnection, start: dt.datetime | None = None,
         end: dt.datetime | None = None, *, by: str = "model", bucket: str | None = None
         ) -> duckdb.DuckDBPyRelation:
    """LLM calls, input/output/cache-read tokens and cost (USD) per ``by`` (``model``,
    ``agent``, ``session`` or ``philosophy``) from the LLM call events, by cost."""
    if by not in _COST_BY:
        raise ValueError(f"by must be one of {', '.join(_COST_BY)}, not {by!r}")
    params: list[Any] = [_period(start, end)[0]] if bucket is None else []
    return con.sql(f"""
SELECT {_bucket('ts', bucket)} AS bucket, {_COST_BY[by]} AS {by}, count(*) AS calls,
       sum(CAST(attrs ->> 'input_tokens' AS BIGINT)) AS input_tokens,
       sum(CAST(attrs ->> 'output_tokens' AS BIGINT)) AS output_tokens,
       sum(CAST(attrs ->> 'cache_read_tokens' AS BIGINT)) AS cache_read_tokens,
       sum(CAST(attrs ->> 'cost_usd' AS DOUBLE)) AS cost_usd
FROM events WHERE type = 'llm.call' AND ts >= ? AND ts < ?
GROUP BY ALL ORDER BY bucket, cost_usd DESC NULLS LAST""", params=params + _period(start, end))


def _windows(con: duckdb.DuckDBPyConnection, select: str, where: str, group: str,
             start: dt.datetime | None, end: dt.datetime | None, bucket: str | None,
             order: str = "") -> duckdb.DuckDBPyRelation:
    params: list[Any] = [_period(start, end)[0]] if bucket is None else []
    return con.sql(f"""
SELECT {_bucket('window_start', bucket)} AS bucket, {select}
FROM kpi_windows WHERE {where} AND window_start >= ? AND window_start < ?
GROUP BY bucket{', ' + group if group else ''} ORDER BY bucket{', ' + order if order else ''}""",
                   params=params + _period(start, end))


def cache_hit_rates(con: duckdb.DuckDBPyConnection, start: dt.datetime | None = None,
                    end: dt.datetime | None = None, *, bucket: str | None = None
                    ) -> duckdb.DuckDBPyRelation:
    """Per cache: hits, misses, hit rate and expirations, from the pipeline's windows of
    ``cache.lookup`` and ``cache.stats`` (a runtime reports one or the other per cache)."""
    return _windows(con, """name AS cache, CAST(sum(hits) AS BIGINT) AS hits,
       CAST(sum(misses) AS BIGINT) AS misses,
       sum(hits) / nullif(sum(hits) + sum(misses), 0) AS hit_rate,
       CAST(sum(expired) AS BIGINT) AS expired""",
                    "dim = 'name' AND type IN ('cache.lookup', 'cache.stats')", "name",
                    start, end, bucket, "sum(hits) + sum(misses) DESC")


def prompt_caching(con: duckdb.DuckDBPyConnection, start: dt.datetime | None = None,
                   end: dt.datetime | None = None, *, bucket: str | None = None
                   ) -> duckdb.DuckDBPyRelation:
    """Per model: input tokens, the share of them read from the provider's prompt cache, and the
    money the cache saved (``kpi_values``' ``cost_saved_usd``: cache reads at the read price
    instead of the input price, less the write premium)."""
    params: list[Any] = [_period(start, end)[0]] if bucket is None else []
    period = _period(start, end)
    return con.sql(f"""
WITH w AS (
    SELECT {_bucket('window_start', bucket)} AS bucket, name AS model,
           CAST(sum(input_tokens) AS BIGINT) AS input_tokens,
           CAST(sum(cache_read_tokens) AS BIGINT) AS cache_read_tokens,
           CAST(sum(cache_write_tokens) AS BIGINT) AS cache_write_tokens, sum(cost_usd) AS cost_usd
    FROM kpi_windows
    WHERE type = 'llm.call' AND dim = 'name' AND window_start >= ? AND window_start < ?
    GROUP BY ALL),
s AS (
    SELECT {_bucket('window_start', bucket)} AS bucket, name AS model, sum(value) AS saved_usd
    FROM kpi_values
    WHERE kpi = 'cost_saved_usd' AND window_start >= ? AND window_start < ?
    GROUP BY ALL)
SELECT w.*, cache_read_tokens / nullif(input_tokens, 0) AS cached_share,
       coalesce(s.saved_usd, 0) AS saved_usd
FROM w LEFT JOIN s USING (bucket, model) ORDER BY bucket, cost_usd DESC""",
                   params=params + period + params + period)


def compression(con: duckdb.DuckDBPyConnection, start: dt.datetime | None = None,
                end: dt.datetime | None = None, *, bucket: str | None = None
                ) -> duckdb.DuckDBPyRelation:
    """Context compressions: count, tokens before and after, tokens saved, the ratio (tokens
    before over after, of the sums) and the mean quality score, from the pipeline's windows."""
    return _windows(con, """CAST(sum(count) AS BIGINT) AS compressions,
       CAST(sum(tokens_before) AS BIGINT) AS tokens_before,
       CAST(sum(tokens_after) AS BIGINT) AS tokens_after,
       CAST(sum(tokens_before) - sum(tokens_after) AS BIGINT) AS tokens_saved,
       sum(tokens_before) / nullif(sum(tokens_after), 0) AS ratio,
       sum(quality) / nullif(sum(quality_n), 0) AS quality""",
                    "dim = 'name' AND type = 'context.compress'", "", start, end, bucket)


def alerts(con: duckdb.DuckDBPyConnection, start: dt.datetime | None = None,
           end: dt.datetime | None = None) -> duckdb.DuckDBPyRelation:
    """One row per alert episode (a fingerprint's firing from ``starts_at``) overlapping the
    period: rule, kind, severity, its labels' subject, when it started and ended (``None``: still
    firing at its last update), the last value against the threshold, and its summary."""
    return con.sql("""
WITH last AS (
    SELECT * FROM alerts
    QUALIFY row_number() OVER (PARTITION BY fingerprint, starts_at
                               ORDER BY updated_at DESC, status = 'resolved' DESC) = 1)
SELECT fingerprint, rule, kind, severity,
       (SELECT string_agg(e.key || '=' || e.value, ' ' ORDER BY e.key)
        FROM (SELECT unnest(map_entries(json_transform(labels, '"MAP(VARCHAR, VARCHAR)"'))) AS e)
        WHERE e.key NOT IN ('alertname', 'severity')) AS subject,
       CAST(starts_at AS TIMESTAMPTZ) AS starts_at,
       CAST(CASE WHEN status = 'resolved' THEN ends_at END AS TIMESTAMPTZ) AS ends_at, status, value,
       threshold, annotations ->> 'summary' AS summary
FROM last
WHERE starts_at < ?
  -- still firing at its last update: it overlaps every period after its start
  AND (status <> 'resolved' OR ends_at >= ?)
ORDER BY starts_at, rule""", params=[_period(start, end)[1], _period(start, end)[0]])


def warm_starts(con: duckdb.DuckDBPyConnection, start: dt.datetime | None = None,
                end: dt.datetime | None = None, *, bucket: str | None = None
                ) -> duckdb.DuckDBPyRelation:
    """Per pool: acquisitions, warm starts and the warm-start rate, from the pipeline's windows
    of ``pool.acquire``."""
    return _windows(con, """name AS pool, CAST(sum(count) AS BIGINT) AS acquisitions,
       CAST(sum(warm) AS BIGINT) AS warm,
       sum(warm) / nullif(sum(count), 0) AS warm_start_rate""",
                    "dim = 'name' AND type = 'pool.acquire'", "name", start, end, bucket,
                    "pool")


def pool_sizes(con: duckdb.DuckDBPyConnection, start: dt.datetime | None = None,
               end: dt.datetime | None = None, *, bucket: str = "1 minute"
               ) -> duckdb.DuckDBPyRelation:
    """Per pool and bucket, what the pool's own events said: mean containers in use and
    available, and the largest target, from ``pool.acquire``/``pool.release``/``pool.state``."""
    return con.sql(f"""
SELECT {_bucket('ts', bucket)} AS bucket, coalesce(attrs ->> 'pool', name) AS pool,
       avg(CAST(attrs ->> 'in_use' AS DOUBLE)) AS in_use,
       avg(CAST(attrs ->> 'available' AS DOUBLE)) AS available,
       max(CAST(attrs ->> 'target' AS BIGINT)) AS target, count(*) AS events
FROM events
WHERE type IN ('pool.acquire', 'pool.release', 'pool.state') AND ts >= ? AND ts < ?
GROUP BY ALL ORDER BY bucket, pool""", params=_period(start, end))


def pool_commands(con: duckdb.DuckDBPyConnection, start: dt.datetime | None = None,
                  end: dt.datetime | None = None) -> duckdb.DuckDBPyRelation:
    """The autoscaler's commands (issued, one row each): pool, generation, action, target and
    bounds, and its reason."""
    return con.sql("""
SELECT CAST(issued_at AS TIMESTAMPTZ) AS issued_at, pool, generation, action, target, min_size,
       max_size, published, reason
FROM pool_commands WHERE issued_at >= ? AND issued_at < ?
QUALIFY row_number() OVER (PARTITION BY command_id ORDER BY kafka_offset) = 1
ORDER BY issued_at, pool""", params=_period(start, end))


def resource_usage(con: duckdb.DuckDBPyConnection, start: dt.datetime | None = None,
                   end: dt.datetime | None = None, *, bucket: str | None = None
                   ) -> duckdb.DuckDBPyRelation:
    """Per philosophy: samples, mean and p90/max of CPU %, memory (MB and %) and execution time
    (s) from the runtimes' ``resource.sample`` events."""
    params: list[Any] = [_period(start, end)[0]] if bucket is None else []
    cols = []
    for m in ("cpu_percent", "memory_mb", "memory_percent", "execution_time_s"):
        x = f"CAST(attrs ->> '{m}' AS DOUBLE)"
        cols.append(f"avg({x}) AS {m}_mean, quantile_cont({x}, 0.9) AS {m}_p90, "
                    f"max({x}) AS {m}_max")
    return con.sql(f"""
SELECT {_bucket('ts', bucket)} AS bucket, philosophy, count(*) AS samples, {', '.join(cols)}
FROM events WHERE type = 'resource.sample' AND ts >= ? AND ts < ?
GROUP BY ALL ORDER BY bucket, philosophy""", params=params + _period(start, end))


def predictions(con: duckdb.DuckDBPyConnection, start: dt.datetime | None = None,
                end: dt.datetime | None = None) -> duckdb.DuckDBPyRelation:
    """The last prediction per philosophy (not per tool) issued in the period, against the usage
    observed in the period: the recommended CPU and memory (target, bounds), the specification's
    mean x 1.2, and the observed p90 and max."""
    period = _period(start, end)
    return con.sql("""
WITH p AS (
    SELECT * FROM predictions WHERE tool IS NULL AND issued_at >= ? AND issued_at < ?
    QUALIFY row_number() OVER (PARTITION BY key ORDER BY issued_at DESC, kafka_offset DESC) = 1),
o AS (
    SELECT philosophy, count(*) AS samples,
           quantile_cont(CAST(attrs ->> 'cpu_percent' AS DOUBLE), 0.9) AS cpu_p90,
           max(CAST(attrs ->> 'cpu_percent' AS DOUBLE)) AS cpu_max,
           quantile_cont(CAST(attrs ->> 'memory_mb' AS DOUBLE), 0.9) AS memory_mb_p90,
           max(CAST(attrs ->> 'memory_mb' AS DOUBLE)) AS memory_mb_max
    FROM events WHERE type = 'resource.sample' AND ts >= ? AND ts < ? GROUP BY philosophy)
SELECT p.philosophy, CAST(p.issued_at AS TIMESTAMPTZ) AS issued_at, p.confidence,
       p.cpu_percent_target AS cpu_target, p.cpu_percent_lower AS cpu_lower,
       p.cpu_percent_upper AS cpu_upper, p.cpu_percent_mean_x_1_2 AS cpu_mean_x_1_2,
       o.cpu_p90, o.cpu_max,
       p.memory_mb_target AS memory_mb_target, p.memory_mb_mean_x_1_2 AS memory_mb_mean_x_1_2,
       o.memory_mb_p90, o.memory_mb_max, o.samples
FROM p LEFT JOIN o USING (philosophy) ORDER BY p.philosophy""", params=period + period)


def deadletters(con: duckdb.DuckDBPyConnection, start: dt.datetime | None = None,
                end: dt.datetime | None = None) -> duckdb.DuckDBPyRelation:
    """Dead letters per reason (landed in the period)."""
    return con.sql("""
SELECT reason, count(*) AS records, CAST(min(landed_at) AS TIMESTAMPTZ) AS first,
       CAST(max(landed_at) AS TIMESTAMPTZ) AS last
FROM deadletters WHERE landed_at >= ? AND landed_at < ?
GROUP BY reason ORDER BY records DESC""", params=_period(start, end))


def summary(con: duckdb.DuckDBPyConnection, start: dt.datetime | None = None,
            end: dt.datetime | None = None) -> dict[str, Any]:
    """The period's headline figures, one number each (``None`` where the history has nothing
    to say): events, sessions, agents, tool and LLM calls, their error rates and p95 latency
    (merged sketches), LLM cost, tool-cache hit rate, prompt-cache token share and savings,
    compression ratio, warm-start rate, alerts raised, dead letters. :func:`trends` compares two
    of these."""
    period = _period(start, end)
    ev = con.execute("""
SELECT count(*), count(DISTINCT session_id), count(DISTINCT agent_id)
FROM events WHERE ts >= ? AND ts < ?""", period).fetchall()[0]
    out: dict[str, Any] = {"events": ev[0], "sessions": ev[1], "agents": ev[2]}
    merged = {r["type"]: r for r in records(latency(con, start, end, merge_names=True))}
    for t, key in (("tool.call", "tool"), ("llm.call", "llm")):
        r = merged.get(t, {})
        out[f"{key}_calls"] = r.get("calls", 0)
        out[f"{key}_error_rate"] = r.get("error_rate")
        out[f"{key}_p95_ms"] = r.get("p95_ms")
    c = con.execute("""
SELECT sum(CAST(attrs ->> 'cost_usd' AS DOUBLE)) FROM events
WHERE type = 'llm.call' AND ts >= ? AND ts < ?""", period).fetchall()[0][0]
    out["cost_usd"] = c
    out["cost_per_llm_call_usd"] = c / out["llm_calls"] if c is not None and out["llm_calls"] \
        else None
    hits = records(cache_hit_rates(con, start, end))
    h, m = sum(r["hits"] or 0 for r in hits), sum(r["misses"] or 0 for r in hits)
    out["cache_hit_rate"] = h / (h + m) if h + m else None
    pc = records(prompt_caching(con, start, end))
    inp = sum(r["input_tokens"] or 0 for r in pc)
    out["prompt_cached_share"] = (sum(r["cache_read_tokens"] or 0 for r in pc) / inp
                                  if inp else None)
    out["prompt_cache_saved_usd"] = sum(r["saved_usd"] for r in pc) if pc else None
    comp = records(compression(con, start, end))
    out["compression_ratio"] = comp[0]["ratio"] if comp else None
    out["compression_tokens_saved"] = comp[0]["tokens_saved"] if comp else None
    warm = records(warm_starts(con, start, end))
    a, w = sum(r["acquisitions"] for r in warm), sum(r["warm"] or 0 for r in warm)
    out["warm_start_rate"] = w / a if a else None
    out["alerts"] = len(alerts(con, start, end).fetchall())
    out["deadletters"] = sum(r["records"] for r in records(deadletters(con, start, end)))
    return out


# figures where a higher value is better (the rest: lower is better; volumes are neutral)
HIGHER_IS_BETTER = {"cache_hit_rate", "prompt_cached_share", "compression_ratio",
                    "warm_start_rate"}
# volumes (more traffic is neither better nor worse; money and tokens saved follow the volume)
NEUTRAL = {"events", "sessions", "agents", "tool_calls", "llm_calls", "cost_usd",
           "prompt_cache_saved_usd", "compression_tokens_saved"}


def trends(current: dict[str, Any], previous: dict[str, Any], *,
           tolerance: float = 0.05) -> list[dict[str, Any]]:
    """Each headline figure of :func:`summary` for two periods: the relative change and its
    direction (``up``/``down``/``flat`` within ``tolerance``) and whether that is ``better``,
    ``worse`` or ``neutral`` (volumes; a figure missing from either period)."""
    out = []
    for k, now in current.items():
        before = previous.get(k)
        change = None
        if now is not None and before is not None:
            change = (now - before) / abs(before) if before else (0.0 if now == before else None)
        if now is None or before is None:
            direction = "n/a"
        elif change is None:
            direction = "up" if now > before else "down" if now < before else "flat"
        else:
            direction = "flat" if abs(change) <= tolerance else ("up" if change > 0 else "down")
        if direction in ("n/a", "flat") or k in NEUTRAL:
            verdict = "neutral"
        else:
            verdict = "better" if (direction == "up") == (k in HIGHER_IS_BETTER) else "worse"
        out.append({"figure": k, "current": now, "previous": before, "change": change,
                    "direction": direction, "verdict": verdict})
    return out


__all__ = ["HIGHER_IS_BETTER", "NEUTRAL", "alerts", "cache_hit_rates", "compression", "connect",
           "cost", "deadletters", "latency", "pool_commands", "pool_sizes", "predictions",
           "prompt_caching", "records", "resource_usage", "row_counts", "slowest_sessions", "span",
           "summary", "trends", "warm_starts"]
