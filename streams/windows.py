"""Tumbling event-time windows of KPIs, per source partition, with state that survives a restart.

Every event updates one window ``[start, start + size)`` per *dimension* it belongs to:

* ``name``: ``(type, name, philosophy)``, the name being the tool, model, cache, pool ... of the
  event (:data:`~agentflux.streams.fields.SPAN_FIELDS`): count, errors, a DDSketch of durations
  and the type's measures (:data:`~agentflux.streams.fields.MEASURES`), summed and maxed;
* ``agent`` and ``session``: tool and LLM calls per agent, LLM calls per session (cost, tokens);
* ``tool``: cache lookups and stats per tool (their ``label``);
* ``cold``: the cold starts of a pool (their sketch is the cold-start latency);
* ``resource``: resource samples per philosophy, one key per metric (``name`` = ``cpu_percent``,
  ``memory_mb``, ``execution_time_s``) whose sketch holds that metric's values (its row's
  ``duration_*`` fields are then in the metric's unit): the distributions the resource
  predictor (:mod:`agentflux.agents.predictor`) builds its histograms from.

A window of a partition closes when that partition's watermark (the largest event time seen in
it) has passed ``end + grace``, or when wall-clock time has passed ``end + grace`` and the window
received nothing for ``grace`` (the stream went quiet). An event for a window that has already
closed opens it again, and its next close makes a new *revision* (the partition's count of
closes: unique, so nothing per closed window is remembered); rows are partial aggregates with a
mergeable sketch, so readers sum counts and measures and merge sketches of all revisions and
partitions of a window.

The open windows are columns (numpy arrays, one slot per window and key), so that adding a
frame and closing windows cost array operations and one dictionary lookup per group, not Python
objects per window, and a snapshot is a small JSON header and raw arrays.

State is kept per Kafka partition of the events topic so that it can move with the partition:
:meth:`TumblingWindows.snapshot` serialises one partition's open windows, count of closes and
the rows closed but not yet published (its *outbox*); the worker stores the snapshot with the
history's offsets (:mod:`agentflux.agents.kpis`), and the partition's next owner restores it
(:meth:`TumblingWindows.restore`). Each row has an id (``row_id``) derived from its partition,
window, key and revision: a row published twice (a crash between publishing and the next
snapshot) is the same row, and readers keep one.

Keys of a :data:`COLUMNAR_DIMS` dimension (sessions: about a key per 20 events) close as one
:class:`WindowBatch` per partition, window and type, columns instead of a row object each: the
rows are the same (the KPI lander lands them one by one, the failure detector reads them as
rows), the work per row is a few array elements instead of an object, an id hash and a JSON
document through publication, landing and the detector.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from agentflux.schemas.sketch import DDSketch, add_grouped
from agentflux.streams.fields import (MAX_MEASURES, MEASURE_FIELDS, MEASURE_FUNCS,
                                      MEASURE_NAMES, QUANTILES, SpanKey)

if TYPE_CHECKING:
    from agentflux.streams.frame import EventFrame

# (dim, type, name, philosophy)
Key = tuple[str, str, str, str]
# dimensions whose rows carry a duration sketch (the others count and sum)
SKETCHED = frozenset({"name", "cold", "resource"})
# extra dimensions: dim -> (event types, the frame's string column naming the group)
EXTRA_DIMS: dict[str, tuple[tuple[str, ...], str]] = {
    "agent": (("tool.call", "llm.call"), "agent_id"),
    "session": (("llm.call",), "session_id"),
    "tool": (("cache.lookup", "cache.stats"), "label"),
}
# the resource dimension: the metrics of resource.sample sketched per philosophy (the value
# sketched is the metric, not a duration)
RESOURCE_METRICS = ("cpu_percent", "memory_mb", "execution_time_s")
DIMENSIONS = ("name", *EXTRA_DIMS, "cold", "resource")
# dimensions with a key per few events (a session makes about one row per window it spans,
# and the simulator's sessions span one): their closed windows of one partition, window and
# type go out as one :class:`WindowBatch` (columns), not a :class:`WindowRow` each
COLUMNAR_DIMS = frozenset({"session"})


# a snapshot: this, the header's length (4 bytes, little-endian), the header (JSON), the columns
STATE_MAGIC = b"AFW2"


def row_id(log: str, partition: int, start_ns: int, key: Key, revision: int) -> str:
    """The id of a window row: the same row, published twice, has the same id."""
    raw = orjson.dumps([log, partition, start_ns, *key, revision])
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


def partition_key(dim: str, type_: str, name: str, philosophy: str) -> str:
    """See :attr:`WindowRow.partition_key` (every row of a key still meets in one partition)."""
    if dim == "resource":
        return f"resource|{type_}||{philosophy}"
    if type_.startswith("pool."):
        return f"pool|{name}"
    return f"{dim}|{type_}|{name}|{philosophy}"


@dataclass(slots=True)
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

    @property
    def partition_key(self) -> str:
        """What decides the row's KPI partition: its key, except where a consumer needs rows
        of several keys together: a philosophy's resource metrics (the predictor) and a pool's
        rows whatever their philosophy (the autoscaler)."""
        return partition_key(self.dim, self.type, self.name, self.philosophy)

    @property
    def rows(self) -> int:
        return 1

    def to_dict(self, worker: str = "") -> dict:
        """The row as published. A row without durations leaves out the duration fields and
        the sketch (readers take them as none: most rows, those of sessions and agents, have
        none, and the topic's volume is mostly theirs)."""
        d = {"kind": "kpi", "row_id": self.row_id, "worker": worker, "dim": self.dim,
             "window_start_ns": self.window_start_ns, "window_end_ns": self.window_end_ns,
             "type": self.type, "name": self.name, "philosophy": self.philosophy,
             "revision": self.revision, "source_partition": self.partition,
             "count": self.count, "errors": self.errors, "sums": self.sums, "maxes": self.maxes}
        s = self.sketch
        if s is not None and s.count:
            d.update({"duration_count": s.count, "duration_sum_ms": s.sum,
                      "duration_min_ms": s.min, "duration_max_ms": s.max,
                      **{f"p{int(x * 100)}_ms": s.quantile(x) for x in QUANTILES},
                      "sketch": s.to_dict()})
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "WindowRow":
        sketch = d.get("sketch")
        return cls(d["window_start_ns"], d["window_end_ns"], d["dim"], d["type"], d["name"],
                   d["philosophy"], d["revision"], d["count"], d["errors"],
                   DDSketch.from_dict(sketch) if sketch and sketch.get("count") else None,
                   d["sums"], d["maxes"], d["source_partition"], d["row_id"])


@dataclass(slots=True)
class WindowBatch:
    """The closed windows of one :data:`COLUMNAR_DIMS` dimension and type, of one partition,
    window start and close (revision), as columns: a row per key (sorted by name), none with
    a duration sketch. Published as ``kind: kpi_batch`` documents, a row whose per-key fields
    (``name``, ``philosophy``, ``count``, ``errors``, each of ``sums`` and ``maxes``) are
    arrays; the row at index ``i`` of a batch has the id ``<batch row_id>.<i>``
    (:meth:`explode` gives the rows as :class:`WindowRow`, as readers land them)."""

    window_start_ns: int
    window_end_ns: int
    dim: str
    type: str
    revision: int
    names: list[str]
    philosophies: list[str]
    count: np.ndarray  # int64, per row
    errors: np.ndarray
    sums: np.ndarray  # (rows, measures of the type)
    maxes: np.ndarray  # NaN: none
    partition: int = 0
    row_id: str = ""

    @property
    def rows(self) -> int:
        return len(self.names)

    def docs(self, worker: str, kpi_partitions: int) -> dict[int, dict]:
        """KPI partition -> the document of this batch's rows that go there. A row goes where
        every row of its key goes whoever publishes it (:func:`batch_partition` of its name);
        ``at`` holds each row's index in the whole batch, so its id does not depend on the
        split."""
        parts = [batch_partition(n, kpi_partitions) for n in self.names]
        measures = MEASURE_NAMES.get(self.type, ())
        out: dict[int, dict] = {}
        for q in sorted(set(parts)):
            at = [i for i, x in enumerate(parts) if x == q]
            idx = np.array(at, np.int64)
            sums, maxes = self.sums[idx], self.maxes[idx]
            out[q] = {
                "kind": "kpi_batch", "row_id": self.row_id, "worker": worker, "dim": self.dim,
                "window_start_ns": self.window_start_ns, "window_end_ns": self.window_end_ns,
                "type": self.type, "revision": self.revision,
                "source_partition": self.partition, "at": at,
                "name": [self.names[i] for i in at],
                "philosophy": [self.philosophies[i] for i in at],
                "count": self.count[idx].tolist(), "errors": self.errors[idx].tolist(),
                "sums": {m: sums[:, j].tolist() for j, m in enumerate(measures)},
                "maxes": {m: [None if v != v else v for v in maxes[:, j].tolist()]
                          for j, m in enumerate(measures)}}
        return out

    def explode(self) -> list[WindowRow]:
        """The batch's rows, one :class:`WindowRow` each (ids as readers derive them)."""
        measures = MEASURE_NAMES.get(self.type, ())
        sums, maxes = self.sums.tolist(), self.maxes.tolist()
        return [WindowRow(self.window_start_ns, self.window_end_ns, self.dim, self.type, name,
                          phil, self.revision, int(c), int(e), None, dict(zip(measures, s)),
                          {m: None if v != v else v for m, v in zip(measures, x)},
                          self.partition, f"{self.row_id}.{i}")
                for i, (name, phil, c, e, s, x) in enumerate(zip(
                    self.names, self.philosophies, self.count.tolist(), self.errors.tolist(),
                    sums, maxes))]

    @classmethod
    def from_doc(cls, d: dict, log: str) -> "WindowBatch":
        """A batch from its whole document (``docs(worker, 1)``: a snapshot's outbox keeps a
        batch so)."""
        t, n = d["type"], len(d["name"])
        measures = MEASURE_NAMES.get(t, ())

        def columns(values: dict, missing: float) -> np.ndarray:
            return np.array([[missing if v is None else v for v in values[m]] for m in measures],
                            np.float64).T.reshape(n, len(measures))
        start, p, rev = d["window_start_ns"], d["source_partition"], d["revision"]
        return cls(start, d["window_end_ns"], d["dim"], t, rev, d["name"], d["philosophy"],
                   np.array(d["count"], np.int64), np.array(d["errors"], np.int64),
                   columns(d["sums"], 0.0), columns(d["maxes"], np.nan), p,
                   batch_id(log, p, start, d["dim"], t, rev))


def batch_id(log: str, partition: int, start_ns: int, dim: str, type: str, revision: int) -> str:
    """The id of a :class:`WindowBatch` (its rows': this, a dot and their index)."""
    return row_id(log, partition, start_ns, (dim, type, "", ""), revision) + "b"


def batch_partition(name: str, partitions: int) -> int:
    """The KPI partition of the batched rows of key ``name`` (zlib's CRC-32: in C, unlike
    murmur2, and the same in every worker)."""
    return zlib.crc32(name.encode()) % partitions if partitions > 1 else 0


def explode(closed: Iterable["WindowRow | WindowBatch"]) -> list[WindowRow]:
    """Closed windows as rows, a batch's one by one."""
    return [x for c in closed for x in (c.explode() if isinstance(c, WindowBatch) else (c,))]


class PartitionWindows:
    """The window state of one source partition. Its open windows are columns, one *slot* per
    (window start, key): count, errors, the measures' sums and maxes, the wall-clock time of
    the last update, and a duration sketch for the keys of :data:`SKETCHED` dimensions. Also:
    the rows closed but not published (the *outbox*), the watermark, and how many closes have
    closed something (the revision of the rows the next close makes: unique per partition, so
    a window closed again after a late event gets a new row id without remembering every
    closed window)."""

    def __init__(self) -> None:
        self.slots: dict[tuple[int, Key], int] = {}  # (start, key) -> slot of an open window
        self.codes: list[tuple[int, Key] | None] = []  # slot -> (start, key); None: free
        self.encoded: list[bytes] = []  # slot -> its (start, key) as JSON, for snapshots
        self.free: list[int] = []
        self.open = 0
        self.alive = np.zeros(0, bool)
        self.start = np.zeros(0, np.int64)
        self.count = np.zeros(0, np.int64)
        self.errors = np.zeros(0, np.int64)
        self.wall = np.zeros(0, np.int64)
        self.sums = np.zeros((0, MAX_MEASURES))
        self.maxes = np.full((0, MAX_MEASURES), np.nan)
        self.sketches: dict[int, DDSketch] = {}  # slot -> durations (SKETCHED keys only)
        self.outbox: list[WindowRow | WindowBatch] = []  # closed, not published yet
        self.watermark_ns = 0
        self.closes = 0

    def slot_of(self, code: tuple[int, Key]) -> int:
        """The slot of an open window, opened if it is not."""
        slot = self.slots.get(code)
        if slot is not None:
            return slot
        # (a copy: orjson's bytes keep the 4 KiB buffer they were written into, and a slot per
        # open session window kept 100 MB of them in a backlog drain)
        encoded = memoryview(orjson.dumps([code[0], *code[1]])).tobytes()
        if self.free:
            slot = self.free.pop()
            self.codes[slot] = code
            self.encoded[slot] = encoded
        else:
            slot = len(self.codes)
            if slot == len(self.alive):
                self._grow(max(64, 2 * slot))
            self.codes.append(code)
            self.encoded.append(encoded)
        self.slots[code] = slot
        self.start[slot] = code[0]
        self.alive[slot] = True
        self.open += 1
        return slot

    def _grow(self, n: int) -> None:
        def grown(a: np.ndarray, fill: float) -> np.ndarray:
            out = np.full((n, *a.shape[1:]), fill, a.dtype)
            out[:len(a)] = a
            return out
        self.alive = grown(self.alive, False)
        self.start, self.count = grown(self.start, 0), grown(self.count, 0)
        self.errors, self.wall = grown(self.errors, 0), grown(self.wall, 0)
        self.sums, self.maxes = grown(self.sums, 0.0), grown(self.maxes, np.nan)

    def release(self, slots: np.ndarray) -> None:
        """Close these slots: free for the next windows opened."""
        for slot in slots.tolist():
            del self.slots[self.codes[slot]]  # type: ignore[index]
            self.codes[slot] = None
            self.sketches.pop(slot, None)
            self.free.append(slot)
        self.alive[slots] = False
        self.count[slots] = 0
        self.errors[slots] = 0
        self.sums[slots] = 0.0
        self.maxes[slots] = np.nan
        self.open -= len(slots)

    def live(self) -> np.ndarray:
        """The open slots, in slot order."""
        return np.flatnonzero(self.alive)

    def open_keys(self) -> list[tuple[int, Key]]:
        """``(window start, key)`` of every open window."""
        return [self.codes[i] for i in self.live().tolist()]  # type: ignore[misc]

    def earliest_start(self) -> int | None:
        """The start of the earliest window open or in the outbox."""
        starts = [r.window_start_ns for r in self.outbox]
        if self.open:
            starts.append(int(self.start[self.alive].min()))
        return min(starts, default=None)


class TumblingWindows:
    """Aggregates frames of validated events into tumbling windows per partition; no I/O."""

    def __init__(self, size_s: float = 10.0, grace_s: float = 2.0,
                 wall_clock_ns: Callable[[], int] = time.time_ns,
                 max_future_skew_s: float = 10.0, log: str = "",
                 dimensions: Iterable[str] = DIMENSIONS):
        """``dimensions``: those kept (``name`` always; see :data:`DIMENSIONS`)."""
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
        self.dimensions = frozenset(dimensions) | {"name"}
        self.early_events = 0
        # events that came after their partition's watermark had passed their window's end +
        # grace (their window was closed, or is about to be: they make a new revision)
        self.late_events = 0
        self._wall = wall_clock_ns
        self.partitions: dict[int, PartitionWindows] = {}

    # --- adding -------------------------------------------------------------------------------

    def add(self, events: Sequence[dict], partition: int = 0,
            on_durations: Callable[[list[SpanKey], np.ndarray, np.ndarray], None] | None = None
            ) -> None:
        """Add a batch of wire events (dicts, not validated: for tests and peers); the worker
        adds frames (:meth:`add_frame`)."""
        from agentflux.streams.frame import EventFrame
        self.add_frame(EventFrame.from_wire(events, partition), on_durations)

    def add_frame(self, frame: "EventFrame", on_durations: Callable[
            [list[SpanKey], np.ndarray, np.ndarray], None] | None = None) -> None:
        """Add a frame. ``on_durations(spans, durations_ms, groups)`` sees the ``name`` keys' new
        durations once per call, ``groups`` indexing ``spans`` (the Prometheus histograms).
        Vectorised: one grouping of the
        frame's (event, dimension) pairs by (partition, window, key), one dictionary lookup per
        group for its slot, then per partition one array update of counts, errors, sums and
        maxes; a sketch insert per group of a sketched dimension."""
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
        win = ts - ts % self.size_ns
        # late: the partition's watermark (before this frame) has passed the window's end + grace
        parts, inverse = np.unique(frame.partition, return_inverse=True)
        states = [self.partitions.setdefault(p, PartitionWindows()) for p in parts.tolist()]
        before = np.array([s.watermark_ns for s in states], np.int64)[inverse.reshape(-1)]
        self.late_events += int((win + (self.size_ns + self.grace_ns) <= before).sum())
        for i, state in enumerate(states):
            state.watermark_ns = max(state.watermark_ns, int(ts[inverse.reshape(-1) == i].max()))

        rows, key_index, keys, sketch_values = _dimension_rows(frame, self.dimensions)
        sums, maxes = _measures(frame)
        part = frame.partition[rows]
        start = win[rows]
        order = np.lexsort((key_index, start, part))
        part, start, key_index, rows = part[order], start[order], key_index[order], rows[order]
        sketch_values = sketch_values[order]
        change = ((np.diff(part) != 0) | (np.diff(start) != 0) | (np.diff(key_index) != 0))
        firsts = np.concatenate(([0], np.flatnonzero(change) + 1))
        counts = np.diff(np.concatenate((firsts, [len(rows)])))
        errors = np.add.reduceat(frame.error[rows].astype(np.int64), firsts)
        g_sums = np.add.reduceat(sums[rows], firsts, axis=0)
        g_maxes = np.fmax.reduceat(maxes[rows], firsts, axis=0)
        g_part, g_start, g_key = part[firsts], start[firsts], key_index[firsts]
        g_slot = np.empty(len(firsts), np.int64)
        for p, state in zip(parts.tolist(), states):
            sel = np.flatnonzero(g_part == p)
            slot_of = state.slot_of
            slots = np.fromiter((slot_of((s, keys[k])) for s, k in
                                 zip(g_start[sel].tolist(), g_key[sel].tolist())),
                                np.int64, len(sel))
            g_slot[sel] = slots
            # (a frame's groups are distinct (partition, window, key): one slot each)
            state.count[slots] += counts[sel]
            state.errors[slots] += errors[sel]
            state.sums[slots] += g_sums[sel]
            state.maxes[slots] = np.fmax(state.maxes[slots], g_maxes[sel])
            state.wall[slots] = wall
        # durations: into the sketches of the sketched dimensions' windows, all groups at once
        sketched = np.fromiter((k[0] in SKETCHED for k in keys), bool, len(keys))
        dur = sketch_values
        take = sketched[key_index] & ~np.isnan(dur)
        if not take.any():
            return
        groups = np.repeat(np.arange(len(firsts)), counts)[take]  # (sorted)
        values = dur[take]
        present = np.unique(groups)
        local = np.zeros(len(firsts), np.int64)
        local[present] = np.arange(len(present))
        sketches = []
        for p, slot in zip(g_part[present].tolist(), g_slot[present].tolist()):
            state = self.partitions[p]
            sketch = state.sketches.get(slot)
            if sketch is None:
                sketch = state.sketches[slot] = DDSketch()
            sketches.append(sketch)
        add_grouped(sketches, values, local[groups])
        if on_durations is not None:  # the name dimension's spans
            spans = [keys[k] for k in g_key[present].tolist()]
            named = np.array([s[0] == "name" for s in spans])
            sel = named[local[groups]]
            remap = np.cumsum(named) - 1
            on_durations([s[1:] for s in spans if s[0] == "name"], values[sel],
                         remap[local[groups][sel]])

    # --- closing ------------------------------------------------------------------------------

    def close_due(self, flush_all: bool = False,
                  partitions: Iterable[int] | None = None) -> list[WindowRow | WindowBatch]:
        """Close the windows that are due (all of them with ``flush_all``) of ``partitions``
        (default: every partition), put their rows in the partitions' outboxes and return
        them."""
        wall = self._wall()
        size, grace = self.size_ns, self.grace_ns
        due_rows = []
        for p in (list(self.partitions) if partitions is None else partitions):
            state = self.partitions.get(p)
            if state is None or not state.open:
                continue
            end = state.start + size
            due = state.alive.copy()
            if not flush_all:
                due &= ((state.watermark_ns >= end + grace)
                        | ((wall >= end + grace) & (wall - state.wall >= grace)))
            slots = np.flatnonzero(due)
            if not slots.size:
                continue
            rows = self._rows(p, state, slots, state.closes)
            state.closes += 1
            state.release(slots)
            state.outbox += rows
            due_rows += rows
        return due_rows

    def _rows(self, p: int, state: PartitionWindows, slots: np.ndarray,
              revision: int) -> list[WindowRow | WindowBatch]:
        counts = state.count[slots].tolist()
        errors = state.errors[slots].tolist()
        sums = state.sums[slots].tolist()
        maxes = state.maxes[slots].tolist()
        sketches = state.sketches
        out: list[WindowRow | WindowBatch] = []
        batched: dict[tuple[int, str, str], list[int]] = {}
        codes = state.codes
        for i, slot in enumerate(slots.tolist()):
            start, key = codes[slot]  # type: ignore[misc]
            if key[0] in COLUMNAR_DIMS:
                batched.setdefault((start, key[0], key[1]), []).append(i)
                continue
            names = MEASURE_NAMES.get(key[1], ())
            out.append(WindowRow(
                start, start + self.size_ns, *key, revision, counts[i], errors[i],
                sketches.get(slot), dict(zip(names, sums[i])),
                {m: None if v != v else v for m, v in zip(names, maxes[i])},  # NaN: none
                p, row_id(self.log, p, start, key, revision)))
        for (start, dim, t), at in batched.items():
            at.sort(key=lambda i: codes[slots[i]][1][2:])  # type: ignore[index]
            idx = slots[at]
            keys = [codes[s][1] for s in idx.tolist()]  # type: ignore[index]
            k = len(MEASURE_NAMES.get(t, ()))
            out.append(WindowBatch(
                start, start + self.size_ns, dim, t, revision, [key[2] for key in keys],
                [key[3] for key in keys], state.count[idx], state.errors[idx],
                state.sums[idx, :k], state.maxes[idx, :k], p,
                batch_id(self.log, p, start, dim, t, revision)))
        return out

    def published(self, rows: Iterable[WindowRow | WindowBatch]) -> None:
        """``rows`` reached the KPI topic: take them out of their partitions' outboxes."""
        ids = {r.row_id for r in rows}
        for state in self.partitions.values():
            if state.outbox:
                state.outbox = [r for r in state.outbox if r.row_id not in ids]

    def outbox(self, partitions: Iterable[int] | None = None
               ) -> list[WindowRow | WindowBatch]:
        ps = list(self.partitions) if partitions is None else partitions
        return [r for p in ps if p in self.partitions for r in self.partitions[p].outbox]

    # --- state that moves with a partition ----------------------------------------------------

    def snapshot(self, partition: int) -> bytes:
        """One partition's state (open windows, closes so far, outbox) as bytes: a JSON header
        (keys, sketches, outbox) and the open windows' columns as raw arrays."""
        state = self.partitions.get(partition, PartitionWindows())
        live = state.live()
        pos = {slot: i for i, slot in enumerate(live.tolist()) if slot in state.sketches}
        encoded = state.encoded
        # the open windows' keys, each serialised once when its window opened
        keys = b"[" + b",".join([encoded[i] for i in live.tolist()]) + b"]"
        header = b'{"open":' + keys + b"," + orjson.dumps({
            "size_ns": self.size_ns, "watermark_ns": state.watermark_ns,
            "closes": state.closes, "measures": MAX_MEASURES,
            "sketches": [[i, state.sketches[slot].to_state()] for slot, i in pos.items()],
            # closed rows as their accumulators (their ids and quantiles are derived again)
            "outbox": [r.docs("", 1)[0] if isinstance(r, WindowBatch) else
                       [r.window_start_ns, r.dim, r.type, r.name, r.philosophy, r.revision,
                        r.count, r.errors, None if r.sketch is None else r.sketch.to_dict(),
                        list(r.sums.values()), list(r.maxes.values())] for r in state.outbox]
        })[1:]
        columns = [state.count[live], state.errors[live], state.wall[live], state.sums[live],
                   state.maxes[live]]
        return b"".join([STATE_MAGIC, len(header).to_bytes(4, "little"), header,
                         *(c.tobytes() for c in columns)])

    def restore(self, partition: int, data: bytes | None) -> None:
        """Take over a partition's state from :meth:`snapshot` (None: start empty). A snapshot
        of another window size is not used (the windows would not line up)."""
        state = self.partitions[partition] = PartitionWindows()
        if data is None:
            return
        if data[:4] == STATE_MAGIC:
            size = int.from_bytes(data[4:8], "little")
            d = orjson.loads(data[8:8 + size])
            if d.get("size_ns") != self.size_ns or d.get("measures") != MAX_MEASURES:
                return
            n = len(d["open"])
            body = memoryview(data)[8 + size:]
            cols = []
            at = 0
            for dtype, width in ((np.int64, 1), (np.int64, 1), (np.int64, 1),
                                 (np.float64, MAX_MEASURES), (np.float64, MAX_MEASURES)):
                a = np.frombuffer(body, dtype, n * width, at)
                cols.append(a.reshape(n, width) if width > 1 else a)
                at += a.nbytes
            count, errors, wall, sums, maxes = cols
            sketches = {i: DDSketch.from_state(s) for i, s in d["sketches"]}
            closes = d["closes"]
        else:  # the JSON snapshot of agentflux before columnar windows
            d = orjson.loads(data)
            if d.get("size_ns") != self.size_ns:
                return
            acc = [o[5:] for o in d["open"]]
            count = np.array([a[0] for a in acc], np.int64)
            errors = np.array([a[1] for a in acc], np.int64)
            wall = np.array([a[5] for a in acc], np.int64)
            sums = np.array([a[3] for a in acc], np.float64).reshape(len(acc), MAX_MEASURES)
            maxes = np.array([[np.nan if x is None else x for x in a[4]] for a in acc],
                             np.float64).reshape(len(acc), MAX_MEASURES)
            sketches = {i: DDSketch.from_dict(a[2]) for i, a in enumerate(acc) if a[2]}
            # past every revision it published (row ids must not repeat)
            closes = 1 + max((r[-1] for r in d["revisions"]), default=-1)
            closes = max([closes] + [o[5] + 1 for o in d["outbox"]])
        state.watermark_ns = d["watermark_ns"]
        state.closes = closes
        for i, (start, dim, t, name, phil, *_) in enumerate(d["open"]):
            slot = state.slot_of((start, (dim, t, name, phil)))
            state.count[slot], state.errors[slot], state.wall[slot] = count[i], errors[i], wall[i]
            state.sums[slot], state.maxes[slot] = sums[i], maxes[i]
            if i in sketches:
                state.sketches[slot] = sketches[i]
        for entry in d["outbox"]:
            if isinstance(entry, dict):  # a batch, as its document
                state.outbox.append(WindowBatch.from_doc(entry, self.log))
                continue
            start, dim, t, name, phil, rev, count_, errors_, sketch, sums_, maxes_ = entry
            key = (dim, t, name, phil)
            names = MEASURE_NAMES.get(t, ())
            state.outbox.append(WindowRow(
                start, start + self.size_ns, *key, rev, count_, errors_,
                None if sketch is None else DDSketch.from_dict(sketch), dict(zip(names, sums_)),
                dict(zip(names, maxes_)), partition, row_id(self.log, partition, start, key, rev)))

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.partitions.pop(p, None)

    def wall_ns(self) -> int:
        return self._wall()

    @property
    def open_windows(self) -> int:
        return sum(s.open for s in self.partitions.values())

    @property
    def watermark_ns(self) -> int:
        return max((s.watermark_ns for s in self.partitions.values()), default=0)


def _dimension_rows(frame: "EventFrame", dimensions: frozenset[str] = frozenset(DIMENSIONS)
                    ) -> tuple[np.ndarray, np.ndarray, list[Key], np.ndarray]:
    """Every (event, dimension) pair of the frame: the event's row, a key index, the keys
    (two indexes may name the same key) and the value each pair adds to its key's sketch (the
    duration; for the resource dimension, the metric)."""
    from agentflux.streams.frame import TYPE_NAMES
    idx, base_keys = frame.spans()
    rows = [np.arange(frame.n)]
    key_index = [idx]
    keys: list[Key] = [("name", *k) for k in base_keys]
    values = [frame.duration_ms]
    type_code = frame.type_code
    for dim, (types, column) in EXTRA_DIMS.items():
        if dim not in dimensions:
            continue
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
        keys += [(dim, TYPE_NAMES[t], nd[nm], pd[ph]) for t, nm, ph in zip(
            (uniq // (nn * npp)).tolist(), (uniq // npp % nn).tolist(), (uniq % npp).tolist())]
        rows.append(sel)
        key_index.append(inverse.reshape(-1) + base)
        values.append(frame.duration_ms[sel])
    cold = _cold_rows(frame) if "cold" in dimensions else np.zeros(0, np.int64)
    if cold.size:
        # the cold starts of a pool: the same name as the pool's acquire key
        base = len(keys)
        sub_idx = idx[cold]
        uniq, inverse = np.unique(sub_idx, return_inverse=True)
        keys += [("cold", *base_keys[u]) for u in uniq.tolist()]
        rows.append(cold)
        key_index.append(inverse.reshape(-1) + base)
        values.append(frame.duration_ms[cold])
    if "resource" in dimensions:
        samples = np.flatnonzero(frame.type_code == TYPE_NAMES.index("resource.sample"))
        if samples.size:
            phils = pc.dictionary_encode(frame.strings["philosophy"].take(pa.array(samples)))
            ph_index = phils.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            ph_names = phils.dictionary.to_pylist()
            slots = MEASURE_FIELDS["resource.sample"]
            for metric in RESOURCE_METRICS:
                base = len(keys)
                keys += [("resource", "resource.sample", metric, ph) for ph in ph_names]
                rows.append(samples)
                key_index.append(ph_index + base)
                values.append(frame.measures[samples, slots.index(metric)])
    return (np.concatenate(rows), np.concatenate(key_index), keys,
            np.concatenate(values).astype(np.float64, copy=False))


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
