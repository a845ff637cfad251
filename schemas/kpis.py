"""The KPIs of a window row, defined once over its measures (:mod:`agentflux.streams.fields`).

The worker publishes rows of measures (counts, sums, maxes, a duration sketch); a KPI is a ratio
or a sum of them. The same definitions give the values in Python (:func:`kpi_values`, the
failure detector, tests' oracles) and the history's ``kpi_values`` view (:func:`kpi_views_sql`),
so a dashboard, a notebook and an alert cannot disagree on what a hit rate is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

@dataclass(frozen=True)
class Kpi:
    """A KPI of a window row: ``sum(num) / sum(den)`` of its measures (``count`` and
    ``errors`` are the row's own), or ``sum(num)`` without a denominator; a minus sign before a
    measure subtracts it."""

    name: str
    types: tuple[str, ...]
    num: tuple[str, ...]
    den: tuple[str, ...] = ()
    help: str = ""
    dims: tuple[str, ...] = ("name",)


KPIS: tuple[Kpi, ...] = (
    Kpi("error_rate", ("tool.call", "llm.call", "executor.task"), ("errors",), ("count",),
        "failed calls / calls"),
    Kpi("cache_hit_rate", ("cache.lookup", "cache.stats"), ("hits",),
        ("hits", "misses", "expired"), "hits / lookups, per cache (and per tool: dim tool)",
        ("name", "tool")),
    Kpi("cache_expirations", ("cache.lookup", "cache.stats"), ("expired",), (),
        "lookups that found an expired entry", ("name", "tool")),
    Kpi("cache_evictions", ("cache.stats",), ("evictions",), (), "entries evicted"),
    Kpi("cache_evicted", ("cache.evict",), ("evicted",), (), "entries evicted (evict events)"),
    Kpi("prompt_cache_hit_rate", ("prompt_cache.lookup",), ("hits",), ("hits", "misses"),
        "prefix hits / lookups, per prefix"),
    Kpi("prompt_cache_token_share", ("prompt_cache.lookup",), ("hit_tokens",),
        ("prefix_tokens",), "prefix tokens served from the cache / prefix tokens"),
    Kpi("llm_cached_token_share", ("llm.call",), ("cache_read_tokens",), ("input_tokens",),
        "input tokens read from the provider's prompt cache / input tokens (normalised: input "
        "includes cached)", ("name", "agent", "session")),
    Kpi("llm_input_tokens", ("llm.call",), ("input_tokens",), (), "input tokens",
        ("name", "agent", "session")),
    Kpi("llm_output_tokens", ("llm.call",), ("output_tokens",), (), "output tokens",
        ("name", "agent", "session")),
    Kpi("llm_cache_read_tokens", ("llm.call",), ("cache_read_tokens",), (), "cache read tokens",
        ("name", "agent", "session")),
    Kpi("llm_cache_write_tokens", ("llm.call",), ("cache_write_tokens",), (),
        "cache write tokens", ("name", "agent", "session")),
    Kpi("cost_usd", ("llm.call",), ("cost_usd",), (), "cost in USD",
        ("name", "agent", "session")),
    Kpi("compression_ratio", ("context.compress",), ("tokens_before",), ("tokens_after",),
        "tokens before / tokens after, per strategy"),
    Kpi("compression_tokens_saved", ("context.compress",), ("tokens_before", "-tokens_after"),
        (), "tokens before - tokens after"),
    Kpi("compression_quality", ("context.compress",), ("quality",), ("quality_n",),
        "mean quality score of the compressions that have one"),
    Kpi("routing_fallback_rate", ("routing.decision",), ("fallbacks",), ("count",),
        "decisions that fell back from another model / decisions"),
    Kpi("routing_decisions", ("routing.decision",), ("count",), (),
        "decisions per chosen model (the model mix)"),
    Kpi("speculative_win_rate", ("executor.task",), ("won",), ("speculative",),
        "speculative tasks that won / speculative tasks"),
    Kpi("partial_failure_rate", ("executor.task",), ("failed",), ("count",),
        "failed tasks / tasks of parallel runs"),
    Kpi("budget_exhaustion_rate", ("executor.task",), ("budget_exceeded",), ("count",),
        "tasks refused or stopped by their budget / tasks"),
    Kpi("warm_start_rate", ("pool.acquire",), ("warm",), ("count",),
        "warm acquires / acquires, per pool"),
    Kpi("pool_utilisation", ("pool.acquire", "pool.release", "pool.state"), ("in_use",),
        ("in_use", "available"), "containers in use / (in use + available), mean over samples"),
)
KPI_BY_NAME = {k.name: k for k in KPIS}

# model -> (input USD per million tokens, cache read price / input price, cache write price /
# input price). Cost saved by the prompt cache = input price x (cache read tokens x (1 - read
# ratio) - cache write tokens x (write ratio - 1)): OpenAI bills cached input at 50 % (no write
# premium), Anthropic at 10 % with writes at 125 %. A model not listed has no cost-saved figure.
PRICES: dict[str, tuple[float, float, float]] = {
    "gpt-4o": (2.5, 0.5, 1.0), "gpt-4o-mini": (0.15, 0.5, 1.0),
    "gpt-4.1": (2.0, 0.25, 1.0), "gpt-4.1-mini": (0.4, 0.25, 1.0),
    "o3": (2.0, 0.25, 1.0), "o4-mini": (1.1, 0.25, 1.0),
    "claude-sonnet-4": (3.0, 0.1, 1.25), "claude-opus-4": (15.0, 0.1, 1.25),
    "claude-haiku-4": (0.8, 0.1, 1.25), "claude-3-5-haiku": (0.8, 0.1, 1.25),
}


def _measure(row: Mapping[str, Any], m: str) -> float:
    if m in ("count", "errors"):
        return float(row[m])
    return float(row["sums"].get(m, 0.0))


def kpi_value(kpi: Kpi, row: Mapping[str, Any]) -> float | None:
    """One KPI of a (merged) row; None where it does not apply or its denominator is 0."""
    if row["type"] not in kpi.types or row["dim"] not in kpi.dims:
        return None
    num = sum(-_measure(row, m[1:]) if m.startswith("-") else _measure(row, m)
              for m in kpi.num)
    if not kpi.den:
        return num
    den = sum(_measure(row, m) for m in kpi.den)
    return num / den if den else None


def cost_saved_usd(row: Mapping[str, Any], prices: Mapping = PRICES) -> float | None:
    """What the prompt cache saved on an ``llm.call`` row of one model (dim ``name``)."""
    if row["type"] != "llm.call" or row["dim"] != "name" or row["name"] not in prices:
        return None
    price, read, write = prices[row["name"]]
    s = row["sums"]
    return price / 1e6 * (s.get("cache_read_tokens", 0.0) * (1 - read)
                          - s.get("cache_write_tokens", 0.0) * (write - 1))


def kpi_values(row: Mapping[str, Any]) -> dict[str, float]:
    """Every KPI that applies to a (merged) row, plus the p50/p99 of its durations."""
    out = {k.name: v for k in KPIS if (v := kpi_value(k, row)) is not None}
    saved = cost_saved_usd(row)
    if saved is not None:
        out["cost_saved_usd"] = saved
    for q in ("p50_ms", "p99_ms"):
        if row.get(q) is not None:
            out[q] = row[q]
    return out


def merge_rows(rows: Iterable[Mapping[str, Any]]) -> dict[tuple, dict]:
    """Rows merged per (window, dim, type, name, philosophy): counts and sums added, maxes
    maxed, sketches merged; each ``row_id`` taken once (a row may be published twice)."""
    from agentflux.schemas.sketch import DDSketch
    out: dict[tuple, dict] = {}
    seen: set[str] = set()
    for r in rows:
        if r["row_id"] in seen:
            continue
        seen.add(r["row_id"])
        k = (r["window_start_ns"], r["dim"], r["type"], r["name"], r["philosophy"])
        m = out.get(k)
        if m is None:
            out[k] = m = {**r, "sums": dict(r["sums"]), "maxes": dict(r["maxes"]),
                          "_sketch": DDSketch.from_dict(r["sketch"]) if r.get("sketch")
                          else DDSketch()}
            continue
        m["count"] += r["count"]
        m["errors"] += r["errors"]
        for name, v in r["sums"].items():
            m["sums"][name] = m["sums"].get(name, 0.0) + v
        for name, v in r["maxes"].items():
            if v is not None and (m["maxes"].get(name) is None or v > m["maxes"][name]):
                m["maxes"][name] = v
        if r.get("sketch"):
            m["_sketch"].merge(DDSketch.from_dict(r["sketch"]))
    for m in out.values():
        s = m.pop("_sketch")
        m["sketch"] = s.to_dict()
        m["p50_ms"], m["p99_ms"] = s.quantile(0.5), s.quantile(0.99)
    return out


def _sql_measure(m: str) -> str:
    return f'"{m}"'


def kpi_views_sql(source: str = "kpi_rows") -> str:
    """DuckDB views over the KPI rows of ``source`` (one row per ``row_id``):

    * ``kpi_windows``: the rows merged per window and key, one column per measure a KPI reads;
    * ``kpi_values``: one row per window, key and KPI (``kpi``, ``value``), as :func:`kpi_value`
      computes it (a ratio whose denominator is 0 is left out)."""
    measures = sorted({m.lstrip("-") for k in KPIS for m in (*k.num, *k.den)}
                      - {"count", "errors"} | {"cache_read_tokens", "cache_write_tokens"})
    cols = ",\n           ".join(
        f"sum(coalesce(CAST(sums ->> '{m}' AS DOUBLE), 0)) AS {_sql_measure(m)}"
        for m in measures)
    wide = f"""
CREATE OR REPLACE VIEW kpi_windows AS
    SELECT window_start, window_end, dim, type, name, philosophy,
           sum(count) AS count, sum(errors) AS errors,
           {cols},
           count(*) AS partial_rows
    FROM {source} GROUP BY ALL;"""
    selects = []
    for k in KPIS:
        num = " + ".join(f"-{_sql_measure(m[1:])}" if m.startswith("-") else _sql_measure(m)
                         for m in k.num)
        value = f"({num})" if not k.den else \
            f"({num}) / nullif({' + '.join(_sql_measure(m) for m in k.den)}, 0)"
        types = ", ".join(f"'{t}'" for t in k.types)
        dims = ", ".join(f"'{d}'" for d in k.dims)
        selects.append(f"""    SELECT window_start, window_end, dim, type, name, philosophy, '{k.name}' AS kpi,
           CAST({value} AS DOUBLE) AS value
    FROM kpi_windows WHERE type IN ({types}) AND dim IN ({dims})""")
    price_rows = ", ".join(f"('{m}', {p}, {r}, {w})" for m, (p, r, w) in PRICES.items())
    selects.append(f"""    SELECT window_start, window_end, dim, type, name, philosophy, 'cost_saved_usd' AS kpi,
           price / 1e6 * ("cache_read_tokens" * (1 - read_ratio)
                          - "cache_write_tokens" * (write_ratio - 1)) AS value
    FROM kpi_windows JOIN (VALUES {price_rows}) prices(model, price, read_ratio, write_ratio)
        ON kpi_windows.name = prices.model
    WHERE type = 'llm.call' AND dim = 'name'""")
    values = ("\nCREATE OR REPLACE VIEW kpi_values AS\n    SELECT * FROM (\n"
              + "\n    UNION ALL\n".join(selects) + "\n    ) WHERE value IS NOT NULL;")
    return wide + values + CROSS_VIEWS


# KPIs across event types and windows (see :func:`cost_per_decision`)
CROSS_VIEWS = """
CREATE OR REPLACE VIEW kpi_cost_per_decision AS
    SELECT r.window_start, r.window_end, r.name AS model, r.philosophy, r.count AS decisions,
           l.cost_usd, l.cost_usd / r.count AS cost_per_decision
    FROM kpi_windows r JOIN kpi_windows l
        ON l.window_start = r.window_start AND l.name = r.name AND l.philosophy = r.philosophy
           AND l.type = 'llm.call' AND l.dim = 'name'
    WHERE r.type = 'routing.decision' AND r.dim = 'name';
CREATE OR REPLACE VIEW kpi_rolling_cost AS
    SELECT window_start, dim, name, philosophy, count AS llm_calls,
           "input_tokens" + "output_tokens" AS tokens, "cost_usd",
           sum("cost_usd") OVER w AS cost_usd_to_date,
           sum("input_tokens" + "output_tokens") OVER w AS tokens_to_date
    FROM kpi_windows WHERE type = 'llm.call'
    WINDOW w AS (PARTITION BY dim, name, philosophy ORDER BY window_start);"""


def cost_per_decision(merged: Mapping[tuple, Mapping[str, Any]]) -> dict[tuple, float]:
    """LLM cost per routing decision, per window, chosen model and philosophy: the cost of the
    calls to a model over the decisions that chose it (merged rows, as :func:`merge_rows`
    gives them)."""
    out = {}
    for (start, dim, t, name, phil), r in merged.items():
        if t == "routing.decision" and dim == "name" and r["count"]:
            llm = merged.get((start, "name", "llm.call", name, phil))
            if llm is not None:
                out[(start, name, phil)] = llm["sums"].get("cost_usd", 0.0) / r["count"]
    return out
