"""Tumbling event-time windows of KPIs, per source partition, with state that survives a restart.

Every event updates one window ``[start, start + size)`` per *dimension* it belongs to:

* ``name``: ``(type, name, philosophy)``, the name being the tool, model, cache, pool ... of the
  event (:data:`~agentflux.streams.fields.SPAN_FIELDS`): count, errors, a DDSketch of durations
  and the type's measures (:data:`~agentflux.streams.fields.MEASURES`), summed and maxed;
* ``agent`` and ``session``: tool and LLM calls per agent, LLM calls per session (cost, tokens);
* ``tool``: cache lookups and stats per tool (their ``label``);
* ``cold``: the cold starts of a pool (their sketch is the cold-start latency).

A window of a partition closes when that partition's watermark (the largest event time seen in
it) has passed ``end + grace``, or when wall-clock time has passed ``end + grace`` and the window
received nothing for ``grace`` (the stream went quiet). An event for a window that has already
closed opens a new *revision*; rows are partial aggregates with a mergeable sketch, so readers sum
counts and measures and merge sketches of all revisions and partitions of a window.

State is kept per Kafka partition of the events topic so that it can move with the partition:
:meth:`TumblingWindows.snapshot` serialises one partition's open windows, revision counters and
the rows closed but not yet published (its *outbox*); the worker stores the snapshot with the
history's offsets (:mod:`agentflux.agents.kpis`), and the partition's next owner restores it
(:meth:`TumblingWindows.restore`). Each row has an id (``row_id``) derived from its partition,
window, key and revision: a row published twice (a crash between publishing and the next
snapshot) is the same row, and readers keep one.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from agentflux.schemas.sketch import DDSketch
from agentflux.streams.fields import (MAX_MEASURES, MEASURE_FUNCS, MEASURE_NAMES, QUANTILES,
                                      SpanKey)

if TYPE_CHECKING:
    from agentflux.streams.frame import EventFrame

# (dim, type, name, philosophy)
Key = tuple[str, str, str, str]
# dimensions whose rows carry a duration sketch (the others count and sum)
SKETCHED = frozenset({"name", "cold"})
# extra dimensions: dim -> (event types, the frame's string column naming the group)
EXTRA_DIMS: dict[str, tuple[tuple[str, ...], str]] = {
    "agent": (("tool.call", "llm.call"), "agent_id"),
    "session": (("llm.call",), "session_id"),
    "tool": (("cache.lookup", "cache.stats"), "label"),
}


@dataclass
class _Acc:
    count: int = 0
    errors: int = 0
    sketch: DDSketch | None = None
    sums: np.ndarray = field(default_factory=lambda: np.zeros(MAX_MEASURES))
    maxes: np.ndarray = field(default_factory=lambda: np.full(MAX_MEASURES, np.nan))
    last_update_wall_ns: int = 0

    def to_list(self) -> list:
        return [self.count, self.errors,
                None if self.sketch is None else self.sketch.to_dict(), self.sums.tolist(),
                [None if np.isnan(x) else x for x in self.maxes.tolist()],
                self.last_update_wall_ns]

    @classmethod
    def from_list(cls, v: list) -> "_Acc":
        count, errors, sketch, sums, maxes, wall = v
        return cls(count, errors, None if sketch is None else DDSketch.from_dict(sketch),
                   np.asarray(sums, np.float64),
                   np.array([np.nan if x is None else x for x in maxes], np.float64), wall)


def row_id(log: str, partition: int, start_ns: int, key: Key, revision: int) -> str:
    """The id of a window row: the same row, published twice, has the same id."""
    raw = orjson.dumps([log, partition, start_ns, *key, revision])
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


@dataclass(frozen=True)
class WindowRow:
    """One closed (partial) window of one key, from one partition's events."""

    window_start_ns: int
    window_end_ns: int
    dim: str
    type: str
    name: str
    philosophy: str
    revision: int
    count: int
    errors: int
    sketch: DDSketch | None
    sums: dict[str, float]
    maxes: dict[str, float | None]
    partition: int = 0
    row_id: str = ""

    @property
    def key(self) -> str:
        return f"{self.dim}|{self.type}|{self.name}|{self.philosophy}"

    def to_dict(self, worker: str = "") -> dict:
        s = self.sketch if self.sketch is not None else DDSketch()
        q = {f"p{int(x * 100)}_ms": s.quantile(x) for x in QUANTILES}
        return {
            "kind": "kpi", "row_id": self.row_id, "worker": worker, "dim": self.dim,
            "window_start_ns": self.window_start_ns, "window_end_ns": self.window_end_ns,
            "type": self.type, "name": self.name, "philosophy": self.philosophy,
            "revision": self.revision, "source_partition": self.partition,
            "count": self.count, "errors": self.errors,
            "duration_count": s.count, "duration_sum_ms": s.sum,
            "duration_min_ms": s.min if s.count else None,
            "duration_max_ms": s.max if s.count else None,
            **q, "sketch": s.to_dict(), "sums": self.sums, "maxes": self.maxes,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "WindowRow":
        return cls(d["window_start_ns"], d["window_end_ns"], d["dim"], d["type"], d["name"],
                   d["philosophy"], d["revision"], d["count"], d["errors"],
                   DDSketch.from_dict(d["sketch"]) if d["sketch"]["count"] else None,
                   d["sums"], d["maxes"], d["source_partition"], d["row_id"])


@dataclass
class PartitionWindows:
    """The window state of one source partition."""

    open: dict[tuple[int, Key], _Acc] = field(default_factory=dict)
    revisions: dict[tuple[int, Key], int] = field(default_factory=dict)  # closed -> last rev
    outbox: list[WindowRow] = field(default_factory=list)  # closed, not published yet
    watermark_ns: int = 0


class TumblingWindows:
    """Aggregates frames of validated events into tumbling windows per partition; no I/O."""

    def __init__(self, size_s: float = 10.0, grace_s: float = 2.0,
                 wall_clock_ns: Callable[[], int] = time.time_ns,
                 max_future_skew_s: float = 10.0, log: str = ""):
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
        self.log = log  # the events' log (cluster and topic id): part of every row id
        self.early_events = 0
        self.late_events = 0  # events for a window that had already been published
        self._wall = wall_clock_ns
        self.partitions: dict[int, PartitionWindows] = {}

    # --- adding -------------------------------------------------------------------------------

    def add(self, events: Sequence[dict], partition: int = 0,
            on_durations: Callable[[SpanKey, np.ndarray], None] | None = None) -> None:
        """Add a batch of wire events (dicts, not validated: for tests and peers); the worker
        adds frames (:meth:`add_frame`)."""
        from agentflux.streams.frame import EventFrame
        self.add_frame(EventFrame.from_wire(events, partition), on_durations)

    def add_frame(self, frame: "EventFrame",
                  on_durations: Callable[[SpanKey, np.ndarray], None] | None = None) -> None:
        """Add a frame. ``on_durations(span, durations_ms)`` sees each ``name`` key's new
        durations once per call (the Prometheus histograms). Vectorised: one grouping of the
        frame's (event, dimension) pairs by (partition, window, key), then per group one count,
        one error sum, one sum and max per measure and one sketch insert."""
        n = frame.n
        if n == 0:
            return
        wall = self._wall()
        ts = frame.ts
        ceiling = wall + self.max_future_skew_ns
        early = ts > ceiling
        n_early = int(early.sum())
        if n_early:
            ts = np.minimum(ts, ceiling)
            self.early_events += n_early
        rows, key_index, keys = _dimension_rows(frame)
        sums, maxes = _measures(frame)
        part = frame.partition[rows]
        start = (ts - ts % self.size_ns)[rows]
        order = np.lexsort((key_index, start, part))
        part, start, key_index, rows = part[order], start[order], key_index[order], rows[order]
        change = ((np.diff(part) != 0) | (np.diff(start) != 0) | (np.diff(key_index) != 0))
        firsts = np.concatenate(([0], np.flatnonzero(change) + 1))
        counts = np.diff(np.concatenate((firsts, [len(rows)])))
        errors = np.add.reduceat(frame.error[rows].astype(np.int64), firsts).tolist()
        g_sums = np.add.reduceat(sums[rows], firsts, axis=0)
        g_maxes = np.fmax.reduceat(maxes[rows], firsts, axis=0)
        dur = frame.duration_ms[rows]
        for p in np.unique(frame.partition).tolist():
            state = self.partitions.setdefault(p, PartitionWindows())
            state.watermark_ns = max(state.watermark_ns,
                                     int(ts[frame.partition == p].max()))
        late = 0
        for j, (first, cnt) in enumerate(zip(firsts.tolist(), counts.tolist())):
            state = self.partitions[int(part[first])]
            key = keys[int(key_index[first])]
            k = (int(start[first]), key)
            acc = state.open.get(k)
            if acc is None:
                acc = state.open[k] = _Acc()
            if key[0] == "name" and k in state.revisions:  # (every event has one)
                late += cnt
            acc.count += cnt
            acc.errors += errors[j]
            acc.sums += g_sums[j]
            np.fmax(acc.maxes, g_maxes[j], out=acc.maxes)
            acc.last_update_wall_ns = wall
            if key[0] in SKETCHED:
                d = dur[first:first + cnt]
                d = d[~np.isnan(d)]
                if d.size:
                    if acc.sketch is None:
                        acc.sketch = DDSketch()
                    acc.sketch.add_many(d)
                    if on_durations is not None and key[0] == "name":
                        on_durations(key[1:], d)
        self.late_events += late

    # --- closing ------------------------------------------------------------------------------

    def close_due(self, flush_all: bool = False,
                  partitions: Iterable[int] | None = None) -> list[WindowRow]:
        """Close the windows that are due (all of them with ``flush_all``) of ``partitions``
        (default: every partition), put their rows in the partitions' outboxes and return
        them."""
        wall = self._wall()
        due = []
        for p in (list(self.partitions) if partitions is None else partitions):
            state = self.partitions.get(p)
            if state is None:
                continue
            for (start, key), acc in list(state.open.items()):
                end = start + self.size_ns
                if (flush_all or state.watermark_ns >= end + self.grace_ns
                        or (wall >= end + self.grace_ns
                            and wall - acc.last_update_wall_ns >= self.grace_ns)):
                    del state.open[(start, key)]
                    rev = state.revisions.get((start, key), -1) + 1
                    state.revisions[(start, key)] = rev
                    row = self._row(p, start, key, rev, acc)
                    state.outbox.append(row)
                    due.append(row)
            # forget revision counters of windows far behind the watermark
            horizon = state.watermark_ns - 100 * self.size_ns
            for k in [k for k in state.revisions if k[0] < horizon]:
                del state.revisions[k]
        return due

    def _row(self, p: int, start: int, key: Key, rev: int, acc: _Acc) -> WindowRow:
        names = MEASURE_NAMES.get(key[1], ())
        sums = acc.sums.tolist()
        maxes = acc.maxes.tolist()
        return WindowRow(start, start + self.size_ns, *key, rev, acc.count, acc.errors,
                         acc.sketch, {m: sums[i] for i, m in enumerate(names)},
                         {m: None if np.isnan(maxes[i]) else maxes[i]
                          for i, m in enumerate(names)},
                         p, row_id(self.log, p, start, key, rev))

    def published(self, rows: Iterable[WindowRow]) -> None:
        """``rows`` reached the KPI topic: take them out of their partitions' outboxes."""
        ids = {r.row_id for r in rows}
        for state in self.partitions.values():
            if state.outbox:
                state.outbox = [r for r in state.outbox if r.row_id not in ids]

    def outbox(self, partitions: Iterable[int] | None = None) -> list[WindowRow]:
        ps = list(self.partitions) if partitions is None else partitions
        return [r for p in ps if p in self.partitions for r in self.partitions[p].outbox]

    # --- state that moves with a partition ----------------------------------------------------

    def snapshot(self, partition: int) -> bytes:
        """One partition's state (open windows, revision counters, outbox) as bytes."""
        state = self.partitions.get(partition, PartitionWindows())
        return orjson.dumps({
            "size_ns": self.size_ns, "watermark_ns": state.watermark_ns,
            "open": [[start, *key, *acc.to_list()] for (start, key), acc in state.open.items()],
            "revisions": [[start, *key, rev] for (start, key), rev in state.revisions.items()],
            # closed rows as their accumulators (their ids and quantiles are derived again)
            "outbox": [[r.window_start_ns, r.dim, r.type, r.name, r.philosophy, r.revision,
                        r.count, r.errors, None if r.sketch is None else r.sketch.to_dict(),
                        list(r.sums.values()), list(r.maxes.values())] for r in state.outbox]})

    def restore(self, partition: int, data: bytes | None) -> None:
        """Take over a partition's state from :meth:`snapshot` (None: start empty). A snapshot
        of another window size is not used (the windows would not line up)."""
        state = self.partitions[partition] = PartitionWindows()
        if data is None:
            return
        d = orjson.loads(data)
        if d.get("size_ns") != self.size_ns:
            return
        state.watermark_ns = d["watermark_ns"]
        for start, dim, t, name, phil, *acc in d["open"]:
            state.open[(start, (dim, t, name, phil))] = _Acc.from_list(acc)
        for start, dim, t, name, phil, rev in d["revisions"]:
            state.revisions[(start, (dim, t, name, phil))] = rev
        for start, dim, t, name, phil, rev, count, errors, sketch, sums, maxes in d["outbox"]:
            key = (dim, t, name, phil)
            names = MEASURE_NAMES.get(t, ())
            state.outbox.append(WindowRow(
                start, start + self.size_ns, *key, rev, count, errors,
                None if sketch is None else DDSketch.from_dict(sketch), dict(zip(names, sums)),
                dict(zip(names, maxes)), partition, row_id(self.log, partition, start, key, rev)))

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.partitions.pop(p, None)

    def wall_ns(self) -> int:
        return self._wall()

    @property
    def open_windows(self) -> int:
        return sum(len(s.open) for s in self.partitions.values())

    @property
    def watermark_ns(self) -> int:
        return max((s.watermark_ns for s in self.partitions.values()), default=0)


def _dimension_rows(frame: "EventFrame") -> tuple[np.ndarray, np.ndarray, list[Key]]:
    """Every (event, dimension) pair of the frame: the event's row, a key index and the keys
    (two indexes may name the same key)."""
    from agentflux.streams.frame import TYPE_NAMES
    idx, base_keys = frame.spans()
    rows = [np.arange(frame.n)]
    key_index = [idx]
    keys: list[Key] = [("name", *k) for k in base_keys]
    type_code = frame.type_code
    for dim, (types, column) in EXTRA_DIMS.items():
        codes = [TYPE_NAMES.index(t) for t in types]
        sel = np.flatnonzero(np.isin(type_code, codes))
        if sel.size and column == "label":
            sel = sel[frame.strings["label"].take(pa.array(sel)).is_valid()
                      .to_numpy(zero_copy_only=False)]
        if not sel.size:
            continue
        names = pc.dictionary_encode(frame.strings[column].take(pa.array(sel)))
        phils = pc.dictionary_encode(frame.strings["philosophy"].take(pa.array(sel)))
        nn, npp = len(names.dictionary), len(phils.dictionary)
        combined = ((type_code[sel].astype(np.int64) * nn
                     + names.indices.to_numpy().astype(np.int64)) * npp
                    + phils.indices.to_numpy().astype(np.int64))
        uniq, inverse = np.unique(combined, return_inverse=True)
        nd, pd = names.dictionary.to_pylist(), phils.dictionary.to_pylist()
        base = len(keys)
        for c in uniq.tolist():
            rest, ph = divmod(c, npp)
            t, nm = divmod(rest, nn)
            keys.append((dim, TYPE_NAMES[t], nd[nm], pd[ph]))
        rows.append(sel)
        key_index.append(inverse.reshape(-1) + base)
    cold = _cold_rows(frame)
    if cold.size:
        # the cold starts of a pool: the same name as the pool's acquire key
        base = len(keys)
        sub_idx = idx[cold]
        uniq, inverse = np.unique(sub_idx, return_inverse=True)
        keys += [("cold", *base_keys[u]) for u in uniq.tolist()]
        rows.append(cold)
        key_index.append(inverse.reshape(-1) + base)
    return np.concatenate(rows), np.concatenate(key_index), keys


def _cold_rows(frame: "EventFrame") -> np.ndarray:
    from agentflux.streams.frame import TYPE_NAMES
    acquire = np.flatnonzero(frame.type_code == TYPE_NAMES.index("pool.acquire"))
    return acquire[frame.measures[acquire, 0] == 0.0]  # MEASURE_FIELDS: warm first


def _measures(frame: "EventFrame") -> tuple[np.ndarray, np.ndarray]:
    """Per event, its type's KPI measures (:data:`MEASURES`), for sums (NaN: 0) and maxes
    (NaN: none)."""
    from agentflux.streams.frame import TYPE_NAMES
    out = np.full((frame.n, MAX_MEASURES), np.nan)
    codes = np.unique(frame.type_code).tolist()
    for code in codes:
        funcs = MEASURE_FUNCS[TYPE_NAMES[code]]
        if not funcs:
            continue
        at = slice(None) if len(codes) == 1 else np.flatnonzero(frame.type_code == code)
        m = frame.measures[at]
        for j, f in enumerate(funcs):
            out[at, j] = f(m)
    return np.nan_to_num(out, nan=0.0), out
