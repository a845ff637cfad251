"""What the windows read from each event: the span (name, duration, error) and the KPI measures.

One table per concern, keyed by event type, read by the native decoder (handed over at start,
:mod:`agentflux.streams.native`), by the codec's per-event path
(:meth:`agentflux.streams.frame.EventFrame.from_structs`) and by the oracles of the tests.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

# type -> (attrs field naming the span, attrs field holding its duration, factor to milliseconds)
SPAN_FIELDS: dict[str, tuple[str | None, str | None, float]] = {
    "tool.call": ("tool", "duration_ms", 1.0),
    "llm.call": ("model", "duration_ms", 1.0),
    "cache.lookup": ("cache", "latency_ns", 1e-6),
    "cache.evict": ("cache", None, 0.0),
    "cache.invalidate": ("cache", None, 0.0),
    "cache.stats": ("cache", None, 0.0),
    "prompt_cache.lookup": ("prefix_id", None, 0.0),
    "context.compress": ("strategy", "duration_ms", 1.0),
    "routing.decision": ("chosen", "decision_us", 1e-3),
    "executor.task": ("task", "duration_ms", 1.0),
    "pool.acquire": ("pool", "startup_ms", 1.0),
    "pool.release": ("pool", None, 0.0),
    "pool.state": ("pool", None, 0.0),
    "resource.sample": (None, None, 0.0),
    "memory.gc": (None, None, 0.0),
    "checkpoint.restore": (None, None, 0.0),
}
# type -> attrs fields read as numbers into the measure slots of each event, in slot order (at
# most SLOTS): a number as it is, a boolean as 0/1, an enum as the index of its value among the
# schema's allowed values, any other present value as 1, absent or null as NaN. The KPI measures
# (:mod:`agentflux.agents.kpis`) are computed from these columns.
MEASURE_FIELDS: dict[str, tuple[str, ...]] = {
    "tool.call": ("cached", "idempotent"),
    "llm.call": ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                 "cost_usd"),
    "cache.lookup": ("outcome",),
    "cache.evict": ("count",),
    "cache.invalidate": ("count",),
    "cache.stats": ("hits", "misses", "expired", "evictions", "size"),
    "prompt_cache.lookup": ("outcome", "prefix_tokens"),
    "context.compress": ("tokens_before", "tokens_after", "preserved", "quality"),
    "routing.decision": ("fallback_from", "attempt"),
    "executor.task": ("outcome", "speculative", "budget_exceeded", "concurrency"),
    "pool.acquire": ("warm", "available", "in_use", "target"),
    "pool.release": ("available", "in_use", "target"),
    "pool.state": ("available", "in_use", "target"),
    "resource.sample": ("cpu_percent", "memory_mb", "memory_percent", "execution_time_s"),
    "memory.gc": ("objects_collected", "rss_before_mb", "rss_after_mb"),
    "checkpoint.restore": (),
}
SLOTS = 6


def _enums() -> dict[str, dict[str, tuple]]:
    from agentflux.schemas.events import EVENT_TYPES
    from agentflux.schemas.spec import field_specs
    return {name: {f.name: tuple(v for v in f.enum if v is not None)
                   for f in field_specs(t.attrs) if f.enum}
            for name, t in EVENT_TYPES.items()}


# type -> enum field -> its allowed values, in the order whose index a measure slot holds
ENUMS: dict[str, dict[str, tuple]] = _enums()


def measure_value(value: object, allowed: tuple | None = None) -> float:
    """One attrs value as its measure slot holds it (the native decoder's rule, for the codec's
    per-event path and for oracles)."""
    if value is None:
        return float("nan")
    if allowed:
        return float(allowed.index(value))
    if isinstance(value, (bool, int, float)):
        return float(value)
    return 1.0


def _defaults() -> dict[str, dict[str, float]]:
    import dataclasses

    from agentflux.schemas.events import EVENT_TYPES
    out: dict[str, dict[str, float]] = {}
    for name, t in EVENT_TYPES.items():
        fields = {f.name: f for f in dataclasses.fields(t.attrs)}
        out[name] = {f: (float("nan") if fields[f].default is dataclasses.MISSING
                         else measure_value(fields[f].default, ENUMS[name].get(f)))
                     for f in MEASURE_FIELDS[name]}
    return out


# type -> measure field -> its slot's value when the field is absent (the model's default)
MEASURE_DEFAULTS: dict[str, dict[str, float]] = _defaults()

# type -> an attrs string field carried as the event's ``label`` (a second dimension)
LABEL_FIELDS: dict[str, str] = {"cache.lookup": "tool", "cache.stats": "tool"}
# attrs field -> values that mark the span as an error (a type has at most one of the fields)
ERROR_VALUES = {"status": frozenset({"error", "timeout", "cancelled"}),
                "outcome": frozenset({"failed"})}
QUANTILES = (0.5, 0.9, 0.95, 0.99)

SpanKey = tuple[str, str, str]  # (type, name, philosophy)


def span_of(event: dict) -> tuple[SpanKey, float | None, bool]:
    """The span key, duration in ms (None if the type has none) and error flag of one event."""
    name_f, dur_f, scale = SPAN_FIELDS.get(event["type"], (None, None, 0.0))
    attrs = event["attrs"]
    name = attrs.get(name_f) if name_f else None
    dur = attrs.get(dur_f) if dur_f else None
    error = any(attrs.get(f) in values for f, values in ERROR_VALUES.items())
    return ((event["type"], name if type(name) is str else "", event["philosophy"]),
            None if dur is None else dur * scale, error)


# type -> the KPI measures summed (and maxed) per window: (name, measure field, how), where how
# is "value" (NaN counts 0), "present" (1 where the field has a value), "==x" (1 where the
# field's value is x) or "if f==x" (the value where field f is x, else 0).
MEASURES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "tool.call": (("cached", "cached", "value"),),
    "llm.call": tuple((f, f, "value") for f in MEASURE_FIELDS["llm.call"]),
    "cache.lookup": (("hits", "outcome", "==hit"), ("misses", "outcome", "==miss"),
                     ("expired", "outcome", "==expired")),
    "cache.stats": tuple((f, f, "value") for f in MEASURE_FIELDS["cache.stats"]),
    "cache.evict": (("evicted", "count", "value"),),
    "cache.invalidate": (("invalidated", "count", "value"),),
    "prompt_cache.lookup": (("hits", "outcome", "==hit"), ("misses", "outcome", "==miss"),
                            ("prefix_tokens", "prefix_tokens", "value"),
                            ("hit_tokens", "prefix_tokens", "if outcome==hit")),
    "context.compress": (("tokens_before", "tokens_before", "value"),
                         ("tokens_after", "tokens_after", "value"),
                         ("preserved", "preserved", "value"), ("quality", "quality", "value"),
                         ("quality_n", "quality", "present")),
    "routing.decision": (("fallbacks", "fallback_from", "present"),
                         ("attempts", "attempt", "value")),
    "executor.task": (("speculative", "speculative", "value"), ("won", "outcome", "==won"),
                      ("failed", "outcome", "==failed"), ("cancelled", "outcome", "==cancelled"),
                      ("budget_exceeded", "budget_exceeded", "value")),
    "pool.acquire": (("warm", "warm", "value"), ("cold", "warm", "==False"),
                     ("available", "available", "value"), ("in_use", "in_use", "value"),
                     ("target", "target", "value")),
    "pool.release": tuple((f, f, "value") for f in MEASURE_FIELDS["pool.release"]),
    "pool.state": tuple((f, f, "value") for f in MEASURE_FIELDS["pool.state"]),
    "resource.sample": (("cpu_percent", "cpu_percent", "value"),
                        ("memory_mb", "memory_mb", "value"),
                        ("memory_percent", "memory_percent", "value"),
                        ("memory_percent_n", "memory_percent", "present"),
                        ("execution_time_s", "execution_time_s", "value")),
    "memory.gc": tuple((f, f, "value") for f in MEASURE_FIELDS["memory.gc"]),
    "checkpoint.restore": (),
}
MAX_MEASURES = max(map(len, MEASURES.values()))


def _compile(type_name: str, how: str, field: str) -> Callable[[np.ndarray], np.ndarray]:
    """A vectorised measure: the measure-slot matrix of events of ``type_name`` -> one column."""
    slots = MEASURE_FIELDS[type_name]
    j = slots.index(field)
    if how == "value":
        return lambda m: m[:, j]
    if how == "present":
        return lambda m: (~np.isnan(m[:, j])).astype(np.float64)

    def code(f: str, v: str) -> float:
        allowed = ENUMS[type_name].get(f)
        if allowed:
            return float(allowed.index(v))
        return {"True": 1.0, "False": 0.0}[v]

    if how.startswith("=="):
        c = code(field, how[2:])
        return lambda m: (m[:, j] == c).astype(np.float64)
    if how.startswith("if "):
        f, v = how[3:].split("==")
        k, c = slots.index(f), code(f, v)
        return lambda m: np.where(m[:, k] == c, m[:, j], 0.0)
    raise ValueError(f"{type_name}: unknown measure rule {how!r}")


# type -> [measure column function]: applied to the events of that type in a frame
MEASURE_FUNCS: dict[str, list] = {
    t: [_compile(t, how, f) for _, f, how in defs] for t, defs in MEASURES.items()}
MEASURE_NAMES: dict[str, tuple[str, ...]] = {
    t: tuple(name for name, _, _ in defs) for t, defs in MEASURES.items()}
