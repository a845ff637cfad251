"""An offline oracle of the KPI windows, written independently of the worker's vectorised path:
one event at a time, from the wire dicts, with its own reading of every measure."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable

from agentflux.streams.fields import span_of


def _v(field: str, default: float = 0.0) -> Callable[[dict], float]:
    return lambda a: float(a[field]) if a.get(field) is not None else default


def _eq(field: str, value: Any) -> Callable[[dict], float]:
    return lambda a: float(a.get(field) == value)


MEASURES: dict[str, dict[str, Callable[[dict], float]]] = {
    "tool.call": {"cached": lambda a: float(bool(a.get("cached", False)))},
    "llm.call": {k: _v(k) for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                    "cache_write_tokens", "cost_usd")},
    "cache.lookup": {"hits": _eq("outcome", "hit"), "misses": _eq("outcome", "miss"),
                     "expired": _eq("outcome", "expired")},
    "cache.stats": {k: _v(k) for k in ("hits", "misses", "expired", "evictions", "size")},
    "cache.evict": {"evicted": _v("count", 1.0)},
    "cache.invalidate": {"invalidated": _v("count", 1.0)},
    "prompt_cache.lookup": {"hits": _eq("outcome", "hit"), "misses": _eq("outcome", "miss"),
                            "prefix_tokens": _v("prefix_tokens"),
                            "hit_tokens": lambda a: float(a["prefix_tokens"])
                            if a["outcome"] == "hit" else 0.0},
    "context.compress": {"tokens_before": _v("tokens_before"), "tokens_after": _v("tokens_after"),
                         "preserved": _v("preserved"), "quality": _v("quality"),
                         "quality_n": lambda a: float(a.get("quality") is not None)},
    "routing.decision": {"fallbacks": lambda a: float(a.get("fallback_from") is not None),
                         "attempts": _v("attempt", 1.0)},
    "executor.task": {"speculative": lambda a: float(bool(a.get("speculative", False))),
                      "won": _eq("outcome", "won"), "failed": _eq("outcome", "failed"),
                      "cancelled": _eq("outcome", "cancelled"),
                      "budget_exceeded": lambda a: float(bool(a.get("budget_exceeded")))},
    "pool.acquire": {"warm": lambda a: float(bool(a["warm"])),
                     "cold": lambda a: float(not a["warm"]), "available": _v("available"),
                     "in_use": _v("in_use"), "target": _v("target")},
    "pool.release": {k: _v(k) for k in ("available", "in_use", "target")},
    "pool.state": {k: _v(k) for k in ("available", "in_use", "target")},
    "resource.sample": {"cpu_percent": _v("cpu_percent"), "memory_mb": _v("memory_mb"),
                        "memory_percent": _v("memory_percent"),
                        "memory_percent_n": lambda a: float(a.get("memory_percent") is not None),
                        "execution_time_s": _v("execution_time_s")},
    "memory.gc": {k: _v(k) for k in ("objects_collected", "rss_before_mb", "rss_after_mb")},
}


def dimensions(e: dict) -> list[tuple[str, str]]:
    """(dim, name) of every window an event counts in."""
    (t, name, _), _, _ = span_of(e)
    a = e["attrs"]
    out = [("name", name)]
    if t in ("tool.call", "llm.call"):
        out.append(("agent", e["agent_id"]))
    if t == "llm.call":
        out.append(("session", e["session_id"]))
    if t in ("cache.lookup", "cache.stats") and a.get("tool") is not None:
        out.append(("tool", a["tool"]))
    if t == "pool.acquire" and not a["warm"]:
        out.append(("cold", name))
    if t == "resource.sample":  # one key per metric; its sketch holds the metric's values
        out += [("resource", m) for m in ("cpu_percent", "memory_mb", "execution_time_s")]
    return out


def oracle(events: Iterable[dict], size_ns: int) -> dict[tuple, dict]:
    """(window start, dim, type, name, philosophy) -> {"count", "errors", "sums",
    "durations"}."""
    out: dict[tuple, dict] = defaultdict(lambda: {"count": 0, "errors": 0,
                                                  "sums": defaultdict(float), "durations": []})
    for e in events:
        (t, _, phil), dur, err = span_of(e)
        start = e["ts"] - e["ts"] % size_ns
        for dim, name in dimensions(e):
            w = out[(start, dim, t, name, phil)]
            w["count"] += 1
            w["errors"] += err
            for m, f in MEASURES.get(t, {}).items():
                w["sums"][m] += f(e["attrs"])
            if dim == "resource":
                if e["attrs"].get(name) is not None:
                    w["durations"].append(float(e["attrs"][name]))
            elif dur is not None and dim in ("name", "cold"):
                w["durations"].append(dur)
    return out


def merged_from_history(con: Any) -> dict[tuple, dict]:
    """The landed KPI rows (one per row id), merged per window and key."""
    import orjson
    out: dict[tuple, dict] = defaultdict(lambda: {"count": 0, "errors": 0,
                                                  "sums": defaultdict(float), "sketches": []})
    for start, dim, t, name, phil, count, errors, sums, sketch in con.execute(
            "SELECT epoch_ns(window_start), dim, type, name, philosophy, count, errors, sums, "
            "sketch FROM kpi_rows").fetchall():
        w = out[(start, dim, t, name, phil)]
        w["count"] += count
        w["errors"] += errors
        for m, v in orjson.loads(sums).items():
            w["sums"][m] += v
        w["sketches"].append(orjson.loads(sketch))
    return out


def compare(got: dict, want: dict, rel: float = 1e-9) -> list[str]:
    """Differences between merged rows and the oracle (counts, errors, every measure sum
    exactly up to float rounding, p50/p99 within the sketch's 1 %)."""
    import numpy as np

    from agentflux.schemas.sketch import DDSketch
    problems = []
    if set(got) != set(want):
        missing, extra = set(want) - set(got), set(got) - set(want)
        problems.append(f"keys differ: {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
                        f"{len(extra)} extra (e.g. {sorted(extra)[:3]})")
    for k in set(got) & set(want):
        g, w = got[k], want[k]
        if (g["count"], g["errors"]) != (w["count"], w["errors"]):
            problems.append(f"{k}: count/errors {g['count']}/{g['errors']} != "
                            f"{w['count']}/{w['errors']}")
        for m, v in w["sums"].items():
            if abs(g["sums"].get(m, 0.0) - v) > rel * max(1.0, abs(v)):
                problems.append(f"{k}: {m} {g['sums'].get(m)} != {v}")
        if w["durations"]:
            s = DDSketch()
            for d in g["sketches"]:
                s.merge(DDSketch.from_dict(d))
            for q in (0.5, 0.99):
                exact = float(np.quantile(w["durations"], q, method="lower"))
                est = s.quantile(q)
                if est is None or abs(est - exact) > 0.01 * exact + 1e-9:
                    problems.append(f"{k}: p{int(q * 100)} {est} vs {exact}")
    return problems
