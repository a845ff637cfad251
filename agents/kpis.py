"""KPIs: windowed aggregates of every event type, published exactly once per window revision.

Every frame of landed events updates the open windows of :mod:`agentflux.streams.windows` (count,
errors, a duration sketch and the type's measures per window and dimension) and the Prometheus
span histograms. Closed windows are published as rows to ``agentflux.kpis`` (key
``dim|type|name|philosophy``; the KPI lander puts them in the history's ``kpis`` table) and
their measures are added to the Prometheus KPI series; the KPIs themselves (hit rates, ratios,
cost saved ...) are :data:`agentflux.schemas.kpis.KPIS` of those measures, computed the same way
in Python, in the history's ``kpi_values`` view and by the failure detector.

Exactness across a kill -9 and a rebalance. The window state of each events partition is stored
with the history's offsets: when a flush lands a partition's offsets up to ``b``, the state as of
``b`` (open windows, revision counters, rows closed but not published: the *outbox*) is written
first (``<history>/_state/windows/<log>/p<partition>/<b>.state``), and the events segment that
commits ``b`` after it. A partition's next owner, this worker restarted or another one, restores
the state at the last landed offset and consumes from there, so an event is counted in a window
exactly once. A closed row is published only once the state that holds it in its outbox is
committed, and leaves the outbox at the next state written after publishing; a crash in between
publishes it again, with the same ``row_id`` (readers keep one row per id). Windows close when a
partition's flush runs, and on a timer for partitions with nothing held (the state written under
the landed offset again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import orjson
from aiokafka.partitioner import murmur2

from agentflux.streams.context import PipelineContext
from agentflux.streams.frame import EventFrame
from agentflux.streams.windows import PartitionWindows, WindowBatch, WindowRow

log = logging.getLogger("agentflux.kpis")

STATE_KIND = "windows"
# a record of the KPI topic holds a JSON array of rows (as the events topic's do), at most this
# many, and at most this many bytes unless one row is larger (the broker's default limit on a
# record batch is 1 MiB)
RECORD_ROWS = 1000
RECORD_BYTES = 512 * 1024
# the longest a publication waits for the broker's acks before it gives up and retries
PUBLISH_TIMEOUT_S = 60.0


def kpi_partition(key: bytes, partitions: int) -> int:
    """The partition of the KPI topic a row with this key goes to: Kafka's default partitioner
    (murmur2, as the Java client's), so every row of a key meets in one partition whoever
    publishes it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions if partitions > 1 else 0


def json_arrays(docs: list[dict], max_items: int = RECORD_ROWS,
                max_bytes: int = RECORD_BYTES) -> list[bytes]:
    """Documents -> JSON arrays of at most ``max_items`` of them and at most ``max_bytes`` (a
    larger single document gets an array of its own). One ``orjson.dumps`` per array: a call
    per document costs several times more."""
    out: list[bytes] = []
    for i in range(0, len(docs), max_items):
        chunk = docs[i:i + max_items]
        value = orjson.dumps(chunk)
        if len(value) > max_bytes and len(chunk) > 1:
            half = len(chunk) // 2
            out += json_arrays(chunk[:half], max_items, max_bytes)
            out += json_arrays(chunk[half:], max_items, max_bytes)
        else:
            out.append(value)
    return out


@dataclass
class Checkpoint:
    """What a flush stores with its segments: ``(partition, offset, state)`` per partition it
    lands, and the rows it closed (published once the flush is committed)."""

    states: list[tuple[int, int, bytes]]
    rows: list[WindowRow | WindowBatch]


class Kpis:
    """The windows of one worker, their state in the history, and the publication of rows."""

    def __init__(self, ctx: PipelineContext):
        self.ctx = ctx
        self.windows = ctx.windows
        self.topic = ctx.settings.topics.events
        self.log = ctx.log_of(self.topic)
        self.windows.log = self.log
        self._reported = {"early": 0, "late": 0}
        self.closed = False  # after the final flush at shutdown: the producer is stopping
        self._ready: list[WindowRow | WindowBatch] = []  # committed rows not sent yet
        self._stored: dict[int, int] = {}  # partition -> offset of its last committed state
        self._busy: set[int] = set()  # partitions whose state is being written by a flush
        self._progress: dict[int, int] = {}  # partition -> last progress marker sent
        self.assigned: Any = lambda: ()  # -> the events partitions this worker owns now
        self._epoch = 0  # counts revocations: state read before one is not used after it

    # --- the hot path -----------------------------------------------------------------------

    def add(self, frame: EventFrame) -> None:
        if not frame.n:
            return
        metrics = self.ctx.metrics

        def on_durations(spans: list, durations_ms: np.ndarray, groups: np.ndarray) -> None:
            metrics.observe_grouped(spans, durations_ms / 1000.0, groups)
            # exemplars (trace ids) of the same histogram: one per (series, bucket), vectorised
            key_index, keys = frame.spans()
            metrics.observe_exemplars(keys, key_index, frame.duration_ms,
                                      frame.strings["trace_id"], frame.ts)

        self.windows.add_frame(frame, on_durations)

    # --- state ------------------------------------------------------------------------------

    async def load(self, partitions: Iterable[int]) -> None:
        """Restore the state of newly assigned partitions as of their landed offsets (call
        after the history's :meth:`Landed.load`); rows left in a restored outbox are sent
        again (same ids)."""
        new = [p for p in partitions if p not in self.windows.partitions]
        if not new:
            return
        ctx = self.ctx
        loop = asyncio.get_running_loop()
        epoch = self._epoch
        for p in new:
            landed = ctx.landed.get((self.topic, p), -1)
            data = None
            if landed >= 0:
                data = await loop.run_in_executor(
                    ctx.history_executor, ctx.history.get_state, STATE_KIND, self.log, p, landed)
                if data is None:
                    log.warning("no window state for partition %d at offset %d (a history "
                                "written before window state was kept?): its open windows "
                                "start empty", p, landed)
            if self._epoch != epoch:  # revoked while reading: the next owner has it now
                return
            self.windows.restore(p, data)
            self._stored[p] = landed
            self._ready += self.windows.outbox([p])

    def checkpoint(self, landing: Mapping[int, int]) -> "Checkpoint":
        """At the start of a flush that lands ``partition -> last offset``: close their due
        windows and serialise their state as of those offsets (synchronous, on the event loop,
        while the windows hold exactly the events being landed). Write its states before the
        events segments (:meth:`write_states`), then call :meth:`committed`."""
        rows = self.windows.close_due(partitions=landing)
        self._busy.update(landing)
        return Checkpoint([(p, last, self.windows.snapshot(p)) for p, last in landing.items()],
                          rows)

    def write_states(self, states: list[tuple[int, int, bytes]]) -> None:
        """(In the history's thread.) Write states returned by :meth:`checkpoint`."""
        h = self.ctx.history
        for p, offset, data in states:
            h.put_state(STATE_KIND, self.log, p, offset, data)

    def committed(self, cp: "Checkpoint") -> None:
        """The flush that wrote ``cp``'s states landed its events segments: the rows it closed
        may be published; earlier states are not needed any more."""
        old = []
        for p, offset, _ in cp.states:
            self._busy.discard(p)
            prev = self._stored.get(p)
            if prev is not None and prev != offset and prev >= 0:
                old.append((p, prev))
            self._stored[p] = offset
        self._ready += cp.rows
        if old:
            h, lg = self.ctx.history, self.log
            self.ctx.upkeep_executor.submit(
                lambda: [h.drop_state(STATE_KIND, lg, p, [o]) for p, o in old])

    async def close_idle(self, flush_all: bool = False, held: Iterable[int] = ()) -> None:
        """Close the due windows (all with ``flush_all``) of partitions with nothing held or
        being landed, and store their state again under their landed offset before the rows
        may be published."""
        held = set(held) | self._busy
        idle = [p for p in self.windows.partitions
                if p not in held and self._stored.get(p, -1) >= 0]
        if not idle:
            return
        closed = self.windows.close_due(flush_all=flush_all, partitions=idle)
        if not closed:
            return
        parts = sorted({r.partition for r in closed})
        states = [(p, self._stored[p], self.windows.snapshot(p)) for p in parts]
        await asyncio.get_running_loop().run_in_executor(
            self.ctx.history_executor, self.write_states, states)
        self._ready += closed

    def forget(self, partitions: Iterable[int]) -> None:
        self._epoch += 1
        parts = set(partitions)
        self.windows.forget(parts)
        for p in parts:
            self._stored.pop(p, None)
            self._busy.discard(p)
            self._progress.pop(p, None)

    # --- publication ------------------------------------------------------------------------

    async def publish(self) -> None:
        """Send the committed rows not sent yet. A row that cannot be sent is kept and sent at
        the next call, not dropped and not a crash of the app: Faust marks its producer service
        started before the Kafka producer exists (a restarted worker's agents may already be
        processing then), and sends in that gap, or while it closes, raise."""
        ctx, windows, metrics = self.ctx, self.windows, self.ctx.metrics
        for kind, before in self._reported.items():
            n = getattr(windows, f"{kind}_events")
            if n != before:
                metrics.count_event_time(kind, n - before)
                self._reported[kind] = n
        if self.closed or ctx.settings.replay:  # a replay's windows are on the topic already
            self._ready = []
            return
        # taken out of the shared list before any await: the timer and the landing both call
        # this, and a row must go out once
        rows, self._ready = self._ready, []
        sent: list[WindowRow | WindowBatch] = []
        docs: list[dict] = []
        try:
            n = self.kpi_partitions
            groups: dict[int, list[dict]] = {}
            for i, row in enumerate(rows):
                if i and not i % RECORD_ROWS:  # (the events keep landing meanwhile)
                    await asyncio.sleep(0)
                if isinstance(row, WindowBatch):
                    for q, doc in row.docs(ctx.worker, n).items():
                        docs.append(doc)
                        groups.setdefault(q, []).append(doc)
                    continue
                doc = row.to_dict(ctx.worker)
                docs.append(doc)
                groups.setdefault(kpi_partition(row.partition_key.encode(), n), []).append(doc)

            async def send_all() -> None:
                futures = [await ctx.topics.kpis.send(value=value, partition=p)
                           for p, group in groups.items() for value in json_arrays(group)]
                for f in futures:
                    await f
            # bounded: a send that never completes must not stop the publication for good
            # (this runs on the timer that closes idle windows, too)
            await asyncio.wait_for(send_all(), PUBLISH_TIMEOUT_S)
            sent = rows
        except Exception as exc:  # NotReady / ProducerSendError around a start or a stop
            log.warning("%d KPI rows not published yet (%r); retrying", len(rows), exc)
            self._ready[:0] = rows  # all of them again: a row sent twice has one id
            sent = []
        except asyncio.CancelledError:  # stopping: kept for the final flush
            self._ready[:0] = rows
            raise
        finally:
            if sent:
                windows.published(sent)
                metrics.count_kpi_windows(sum(r.rows for r in sent))
                metrics.add_kpi_rows(docs)
            # (closed windows count until published)
            metrics.set_open_windows(windows.open_windows + sum(r.rows for r in windows.outbox()))
        if rows and not sent:
            return
        await self._send_progress()

    @property
    def kpi_partitions(self) -> int:
        """The KPI topic's partition count, as the broker reported it at start (the configured
        count where it was not asked)."""
        t = self.ctx.settings.topics
        return self.ctx.partitions.get(t.kpis) or t.partitions

    async def _send_progress(self) -> None:
        """After the rows: one progress marker per partition, saying up to which window end
        every row of that partition's windows is published (revisions of late events aside):
        the start of its earliest window still open or unpublished, and no later than what its
        watermark has closed; a partition read to the end of its log with nothing open is done
        up to the current wall-clock window. The failure detector judges a window once every
        partition's marker has passed it, whatever order the partitions' rows arrive in (a
        backlog or an accelerated replay runs partitions minutes of event time apart). The
        markers go to every partition of the KPI topic, in one record each."""
        ctx = self.ctx
        now = self.windows.wall_ns()
        size, grace = self.windows.size_ns, self.windows.grace_ns
        pending = {r.partition for r in self._ready}
        markers: dict[int, int] = {}
        for p in sorted(set(self.windows.partitions) | set(self.assigned())):
            state = self.windows.partitions.get(p)
            key = (self.topic, p)
            caught_up = ctx.processed.get(key, -1) + 1 >= ctx.log_ends.get(key, 1 << 62)
            if state is None:  # assigned, nothing read: done up to now once at the log's end
                state = PartitionWindows()
                if not caught_up:
                    continue
            elif p in pending or p in self._busy or self._stored.get(p, -1) < 0:
                continue
            earliest = state.earliest_start()
            closed = state.watermark_ns - grace
            closed -= closed % size
            if earliest is not None:
                done = earliest
            else:
                done = now - now % size if caught_up else closed
            if not caught_up:
                done = min(done, closed)
            if done > self._progress.get(p, -1):
                markers[p] = done
        if not markers:
            return
        # the assigned partitions not read to their log's end yet: a backlog this worker is
        # reading (the detector waits for them even when they run far behind the others)
        behind = sorted(p for p in self.assigned()
                        if ctx.processed.get((self.topic, p), -1) + 1
                        < ctx.log_ends.get((self.topic, p), 1 << 62))
        value = orjson.dumps([{"kind": "progress", "source_partition": p, "log": self.log,
                               "done_before_ns": done,
                               "partitions": ctx.settings.topics.events_partitions,
                               "behind": behind}
                              for p, done in markers.items()])
        try:
            for q in range(self.kpi_partitions):
                await ctx.topics.kpis.send(value=value, partition=q)
        except Exception:  # sent again at the next call
            return
        self._progress.update(markers)


def register(app: Any, ctx: PipelineContext, kpis: Kpis, held: Any) -> None:
    """The timers: close the windows of idle partitions every 0.5 s; at shutdown, close and
    publish every open window as a partial row (a later revision of the same window adds to it).
    ``held()``: the partitions with events held or being landed."""

    @app.timer(interval=0.5)
    async def close_windows() -> None:
        if app.should_stop:  # stopping: the final flush below publishes what is open
            return
        t0 = time.monotonic()
        await kpis.close_idle(held=held())
        await kpis.publish()
        if time.monotonic() - t0 > 10:  # (the windows of quiet partitions wait meanwhile)
            log.warning("closing idle windows and publishing took %.1f s",
                        time.monotonic() - t0)

    @app.on_before_shutdown.connect
    async def publish_open_windows(sender: Any, **kwargs: Any) -> None:
        # after the consumer stopped (and the events pipeline landed what it held) and before
        # the producer flushes
        await kpis.close_idle(flush_all=True, held=held())
        await kpis.publish()
        kpis.closed = True
