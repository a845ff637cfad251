"""Tumbling event-time windows of RED metrics (rate, errors, duration sketch) per span key.

A span key is ``(event type, name, philosophy)`` where the name is the tool, model, cache, pool...
of the event (see :data:`SPAN_FIELDS`). A window ``[start, start + size)`` closes when either

* the watermark (the largest event time seen) has passed ``end + grace``, or
* wall-clock time has passed ``end + grace`` and the window received nothing for ``grace``
  (the stream went quiet; without this the last window of a burst would never close).

An event for a window that has already closed opens a new *revision* of that window; rows are
partial aggregates with a mergeable sketch, so readers may sum counts and merge sketches of all
revisions (and of all workers) of a window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from agentflux.schemas.sketch import DDSketch

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


@dataclass
class _Acc:
    count: int = 0
    errors: int = 0
    sketch: DDSketch = field(default_factory=DDSketch)
    last_update_wall_ns: int = 0


@dataclass(frozen=True)
class WindowRow:
    """One closed (partial) window of one span key."""

    window_start_ns: int
    window_end_ns: int
    type: str
    name: str
    philosophy: str
    revision: int
    count: int
    errors: int
    sketch: DDSketch

    @property
    def key(self) -> str:
        return f"{self.type}|{self.name}|{self.philosophy}"

    def to_dict(self, worker: str = "") -> dict:
        s = self.sketch
        q = {f"p{int(x * 100)}_ms": s.quantile(x) for x in QUANTILES}
        return {
            "kind": "timing", "worker": worker,
            "window_start_ns": self.window_start_ns, "window_end_ns": self.window_end_ns,
            "type": self.type, "name": self.name, "philosophy": self.philosophy,
            "revision": self.revision, "count": self.count, "errors": self.errors,
            "duration_count": s.count, "duration_sum_ms": s.sum,
            "duration_min_ms": s.min if s.count else None,
            "duration_max_ms": s.max if s.count else None,
            **q, "sketch": s.to_dict(),
        }


class TumblingWindows:
    """Aggregates batches of validated events into tumbling windows; pure logic, no I/O."""

    def __init__(self, size_s: float = 10.0, grace_s: float = 2.0,
                 wall_clock_ns: Callable[[], int] = time.time_ns,
                 max_future_skew_s: float = 10.0):
        if size_s <= 0:
            raise ValueError(f"window size must be > 0 seconds, got {size_s!r}")
        if max_future_skew_s < 0:
            raise ValueError(f"the allowed future skew must be >= 0 s, got {max_future_skew_s!r}")
        self.size_ns = int(size_s * 1e9)
        self.grace_ns = int(grace_s * 1e9)
        # An event time further ahead of the wall clock than this is clamped to it for windowing
        # (the event itself lands unchanged): one clock that is a day fast must not move the
        # watermark a day ahead, close every window at once and keep its own open for a day.
        self.max_future_skew_ns = int(max_future_skew_s * 1e9)
        self.early_events = 0
        self._wall = wall_clock_ns
        self._open: dict[tuple[int, SpanKey], _Acc] = {}
        self._revisions: dict[tuple[int, SpanKey], int] = {}  # closed windows -> revisions emitted
        self.watermark_ns = 0
        self.late_events = 0  # events for a window that had already been published

    def add(self, events: Sequence[dict],
            on_durations: Callable[[SpanKey, np.ndarray], None] | None = None) -> None:
        """Add a batch of wire events (dicts); the worker adds columns (:meth:`add_columns`)."""
        if not events:
            return
        spans = [span_of(ev) for ev in events]
        keys: dict[SpanKey, int] = {}
        idx = np.fromiter((keys.setdefault(s[0], len(keys)) for s in spans), np.int64, len(spans))
        dur = np.array([np.nan if s[1] is None else s[1] for s in spans], np.float64)
        self.add_columns(np.fromiter((ev["ts"] for ev in events), np.int64, len(events)), idx,
                         list(keys), dur, np.array([s[2] for s in spans], bool), on_durations)

    def add_columns(self, ts: np.ndarray, key_index: np.ndarray, keys: Sequence[SpanKey],
                    duration_ms: np.ndarray, error: np.ndarray,
                    on_durations: Callable[[SpanKey, np.ndarray], None] | None = None) -> None:
        """Add a batch as columns: event time (ns), a span key index per event into ``keys``,
        duration in ms (NaN: none) and error flag. ``on_durations(span, durations_ms)`` sees
        each key's new durations once per batch. Vectorised: one grouping of the batch by
        (window, key), then one count, one error sum and one sketch insert per group."""
        n = len(ts)
        if n == 0:
            return
        wall = self._wall()
        ceiling = wall + self.max_future_skew_ns
        early = ts > ceiling
        n_early = int(early.sum())
        if n_early:
            ts = np.minimum(ts, ceiling)
        self.watermark_ns = max(self.watermark_ns, int(ts.max()))
        self.early_events += n_early
        start = ts - ts % self.size_ns
        nk = max(len(keys), 1)
        group = start // self.size_ns * nk + key_index  # one id per (window, key)
        order = np.argsort(group, kind="stable")
        g = group[order]
        bounds = np.flatnonzero(np.diff(g)) + 1
        firsts = np.concatenate(([0], bounds))
        counts = np.diff(np.concatenate((firsts, [n])))
        errors = np.add.reduceat(error[order].astype(np.int64), firsts)
        dur_sorted = duration_ms[order]
        open_ = self._open
        late = 0
        for j, (first, cnt, errs) in enumerate(zip(firsts.tolist(), counts.tolist(),
                                                     errors.tolist())):
            i = int(order[first])
            k = (int(start[i]), keys[int(key_index[i])])
            acc = open_.get(k)
            if acc is None:
                acc = open_[k] = _Acc()
            if k in self._revisions:
                late += cnt
            acc.count += cnt
            acc.errors += errs
            acc.last_update_wall_ns = wall
            d = dur_sorted[first:first + cnt]
            d = d[~np.isnan(d)]
            if d.size:
                acc.sketch.add_many(d)
                if on_durations is not None:
                    on_durations(k[1], d)
        self.late_events += late

    def close_due(self, flush_all: bool = False) -> list[WindowRow]:
        """Close and return the windows that are due (all of them with ``flush_all``)."""
        wall = self._wall()
        due = []
        for (start, span), acc in list(self._open.items()):
            end = start + self.size_ns
            if (flush_all or self.watermark_ns >= end + self.grace_ns
                    or (wall >= end + self.grace_ns
                        and wall - acc.last_update_wall_ns >= self.grace_ns)):
                del self._open[(start, span)]
                rev = self._revisions.get((start, span), -1) + 1
                self._revisions[(start, span)] = rev
                due.append(WindowRow(start, end, *span, rev, acc.count, acc.errors, acc.sketch))
        # forget revision counters of windows far behind the watermark
        horizon = self.watermark_ns - 100 * self.size_ns
        for k in [k for k in self._revisions if k[0] < horizon]:
            del self._revisions[k]
        return due

    @property
    def open_windows(self) -> int:
        return len(self._open)
