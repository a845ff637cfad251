"""The hot path: one Faust agent consumes ``agentflux.events`` and runs every processor on it.

Each batch of records (bounded by events, see :mod:`agentflux.streams.batching`) is decoded and
validated whole by the native decoder into one columnar :class:`~agentflux.streams.frame.EventFrame`
(a record it refuses is re-read event by event by the codec, for exact dead-letter reasons),
de-duplicated, and then handed to the processors: the history holds its rows per partition until
they are due as segments (``segment_rows`` events or ``segment_age_s``), then writes them in its
own thread while the next batches are prepared; the timing windows and Prometheus histograms are
updated on the event loop. Later processors (KPIs, failure patterns, predictor) take the same
frame.

Only records the history has not landed yet are processed, so after a kill -9 and restart, or a
rebalance, a record redelivered by Kafka neither lands nor counts in a window twice. Records are
acked only once their segments are in place. A revoked partition is flushed before the
rebalance completes, so its new owner resumes after everything this worker landed. Any failure
of the worker itself stops the process before the batch is acked (see ``fail_stop``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Sequence

import numpy as np

from agentflux.agents.history import EventHistory
from agentflux.agents.kpis import Kpis
from agentflux.streams.batching import take_bounded
from agentflux.streams.codec import decode_record
from agentflux.streams.context import PipelineContext, fail_stop
from agentflux.streams.frame import EventFrame

log = logging.getLogger("agentflux.events")


def _events_in(value: bytes | None) -> int:
    """About how many events a record holds, for batch bounds (one ``"id"`` key per event;
    attrs of the same name make it an overestimate)."""
    return max(1, value.count(b'"id"')) if value else 1


def decode(records: Sequence[Any], max_bytes: int) -> tuple[EventFrame, list[tuple]]:
    """The valid events of ``records`` (Faust events of raw record values) as one frame, and
    their dead letters ``(rejected, topic, partition, offset)``. The native decoder takes whole
    records; one it refuses is re-read event by event (exact reasons; its valid events still
    land)."""
    values = [fe.value for fe in records]
    parts = np.fromiter((fe.message.partition for fe in records), np.int32, len(records))
    offsets = np.fromiter((fe.message.offset for fe in records), np.int64, len(records))
    frame, failed = EventFrame.decode(values, parts, offsets, max_bytes)
    if not failed:
        return frame, []
    slow, deadletters = [], []
    for i in failed:
        d, m = decode_record(values[i], max_bytes), records[i].message
        if d.events:
            slow.append((d, m.partition, m.offset))
        deadletters += [(r, m.topic, m.partition, m.offset) for r in d.rejected]
    frame = EventFrame.concat([frame, EventFrame.from_structs(slow)])
    # record order again (within a partition, the first of two events with one id lands)
    return frame.select(np.lexsort((frame.offset, frame.partition))), deadletters


class EventPipeline:
    """Prepares batches (decode, frame, de-duplicate, timing) while earlier ones land.

    One flush is in flight at a time; a batch's events are acked only once the segments holding
    them are in place, so Kafka's committed offsets never pass the history's.
    """

    def __init__(self, ctx: PipelineContext, kpis: Kpis, stream: Any,
                 assigned: Callable[[], set],
                 seek: Callable[[int, int], Awaitable[None]] | None = None):
        self.ctx = ctx
        self.history = EventHistory(ctx, kpis)
        self.kpis = kpis
        self.stream = stream
        self.assigned = assigned  # the (topic, partition)s this worker owns now
        self.inflight: asyncio.Future | None = None
        self.unacked: list[Sequence[Any]] = []  # batches held in the sinks, in order
        self._flush_lock = asyncio.Lock()
        self.revocations = 0
        self.seek = seek  # (partition, offset): where the consumer reads a partition next
        self._rewound: set[int] = set()  # partitions read again from their landed offset
        # partition -> last offset dropped when it was sent back: records after it that were
        # fetched before the seek are dropped too, until the re-read arrives
        self._awaiting: dict[int, int] = {}

    async def handle(self, batch: Sequence[Any]) -> None:
        ctx, history = self.ctx, self.history
        owned = self.assigned()
        # a take() buffer may still hold records of a partition revoked meanwhile: its new
        # owner processes them
        batch = [fe for fe in batch if (fe.message.topic, fe.message.partition) in owned]
        if not batch:
            return
        for fe in batch:
            m = fe.message
            ctx.processed[(m.topic, m.partition)] = m.offset
        revocations = self.revocations
        if self._awaiting:
            batch = self._drop_stale(batch)
            if not batch:
                return
        parts = {fe.message.partition for fe in batch}
        new = [p for p in parts if (history.topic, p) not in history.landed.offsets]
        await history.landed.load(parts)
        if new and self.seek is not None:
            batch = await self._resume_at_landed(batch, new)
            if not batch:
                return
            parts = {fe.message.partition for fe in batch}
        await self.kpis.load(parts)  # (the window state as of the landed offsets)
        fresh, ranges = history.landed.fresh(batch)
        frame, deadletters = decode(fresh, ctx.settings.max_record_bytes)
        frame, duplicates = await history.deduplicate(frame)
        if self.revocations != revocations:
            # A rebalance happened while this was prepared: what preparing read or remembered
            # of these partitions (landed offsets, recent ids, window state) may predate the
            # previous owner's last landing. Nothing of the batch is landed or acked: after the
            # rebalance the consumer reads these partitions again from the committed offsets
            # (and its owner from the history's), with state read afresh.
            history.forget(parts)
            self.kpis.forget(parts)
            return
        if ranges:
            history.add(frame, len(fresh), deadletters, duplicates, ranges)
            self.kpis.add(frame)
        self.unacked.append(batch)
        if history.due():
            await self.start_flush()
        elif not history.pending() and self._idle():
            await self.wait()  # (a finished flush: raise its failure, if any)
            await self._ack_unacked()  # nothing held: everything seen has landed

    async def _resume_at_landed(self, batch: Sequence[Any], new: list[int]) -> list[Any]:
        """The history's offsets decide where a partition resumes, not Kafka's committed offset:
        if a newly assigned partition's first record is past the offset after its last landed
        one, the committed offset skipped records nobody landed (Faust can commit past an
        offset it never saw acked, when later ones are). The consumer is sent back to the
        landed offset once per assignment, and the partition's records of this batch are read
        again from there. A gap that is still there on the second read is a real one (records
        deleted by retention, transaction markers)."""
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for fe in batch:
            m = fe.message
            if m.partition in new:
                first[m.partition] = min(m.offset, first.get(m.partition, m.offset))
                last[m.partition] = max(m.offset, last.get(m.partition, m.offset))
        back = {}
        for p, offset in first.items():
            resume = self.history.landed.offsets.get((self.history.topic, p), -1) + 1
            if offset > resume and p not in self._rewound:
                back[p] = resume
            self._rewound.add(p)
        for p, resume in back.items():
            log.warning("partition %d: the consumer resumed at offset %d but the history has "
                        "landed only up to %d: reading it again from %d", p, first[p],
                        resume - 1, resume)
            await self.seek(p, resume)
            self._awaiting[p] = last[p]
        return [fe for fe in batch if fe.message.partition not in back]

    async def check_position(self, partition: int, position: int | None) -> None:
        """For an assigned partition that has brought no record yet: if the consumer sits past
        the offset after the last landed one (nothing more may come to trigger the check in
        :meth:`handle`), send it back there."""
        history = self.history
        if (self.seek is None or position is None or partition in self._rewound
                or (history.topic, partition) in history.landed.offsets):
            return
        stored = await asyncio.get_running_loop().run_in_executor(
            self.ctx.history_executor, self.ctx.history.landed_offsets, history.landed.table,
            history.landed.log)
        if partition in self._rewound or (history.topic, partition) in history.landed.offsets:
            return  # records came meanwhile: handle() checked
        self._rewound.add(partition)
        resume = stored.get(partition, -1) + 1
        if position > resume:
            log.warning("partition %d: the consumer sits at offset %d but the history has "
                        "landed only up to %d: reading it again from %d", partition, position,
                        resume - 1, resume)
            self._awaiting[partition] = position - 1  # anything fetched before the seek
            await self.seek(partition, resume)

    def _drop_stale(self, batch: Sequence[Any]) -> list[Any]:
        """Records of a partition sent back that were fetched before the seek (offsets after
        the last one dropped) are dropped; the first record at or before it is the re-read."""
        out = []
        for fe in batch:
            m = fe.message
            stale = self._awaiting.get(m.partition)
            if stale is not None:
                if m.offset > stale:
                    continue
                del self._awaiting[m.partition]
            out.append(fe)
        return out

    async def start_flush(self) -> None:
        """Start landing everything held (after the flush in flight, if any)."""
        async with self._flush_lock:
            await self.wait()
            if not self.history.pending():
                await self._ack_unacked()
                return
            batches, self.unacked = self.unacked, []
            self.inflight = asyncio.ensure_future(self._flush(batches))

    async def _flush(self, batches: list) -> None:
        await self.history.flush()
        for batch in batches:
            await self._ack(batch)
        await self.kpis.publish()

    async def _ack_unacked(self) -> None:
        batches, self.unacked = self.unacked, []
        for batch in batches:
            await self._ack(batch)

    async def _ack(self, batch: Sequence[Any]) -> None:
        for fe in batch:
            await self.stream.ack(fe)

    def _idle(self) -> bool:
        return self.inflight is None or self.inflight.done()

    async def wait(self) -> None:
        """Wait for the flush in flight (its failure stops the worker)."""
        if self.inflight is not None:
            inflight, self.inflight = self.inflight, None
            await inflight

    async def tick(self) -> None:
        """Land what is held once it is due by age (a quiet stream brings no batch to do it);
        raise the failure of a flush that ended with one (no later batch may come to)."""
        f = self.inflight
        if f is not None and f.done() and (f.cancelled() or f.exception() is not None):
            await self.wait()
        if self._idle() and self.history.due():
            await self.start_flush()

    async def drain(self) -> None:
        """Land everything held and wait for it."""
        await self.start_flush()
        await self.wait()

    async def on_revoked(self, partitions: set[int]) -> None:
        """Land everything held before the rebalance completes, then forget the revoked
        partitions: their next owner resumes after what this worker landed."""
        self.revocations += 1
        await self.drain()
        # and the window state a timer may still be writing: the next owner reads it
        await asyncio.get_running_loop().run_in_executor(self.ctx.history_executor, int)
        self.history.forget(partitions)
        self.kpis.forget(partitions)
        self._rewound -= set(partitions)
        for p in partitions:
            self._awaiting.pop(p, None)


def register(app: Any, ctx: PipelineContext, kpis: Kpis) -> Callable[[], set[int]]:
    """The events agent; returns ``held()``: the partitions with events held for landing."""
    pipelines: list[EventPipeline] = []
    topic = ctx.settings.topics.events

    def assigned() -> set:
        return {(tp.topic, tp.partition) for tp in app.consumer.assignment()}

    async def seek(partition: int, offset: int) -> None:
        from faust.types import TP
        await app.consumer.seek(TP(topic, partition), offset)

    @app.agent(ctx.topics.events, name="agentflux.events")
    async def events(stream: Any) -> None:
        # built when the agent (re)starts, so the history's landed offsets are read then
        # (a replay starts where it was told to, not at its new history's offsets)
        pipeline = EventPipeline(ctx, kpis, stream, assigned,
                                 None if ctx.settings.replay else seek)
        pipelines[:] = [pipeline]
        batches = take_bounded(stream, max_events=ctx.batch_events,
                               max_records=ctx.batch_records, within=ctx.batch_within_s,
                               size=_events_in, ack=False)
        stream._active_agens.add(batches)  # Faust closes it when the stream stops
        try:
            async for batch in batches:
                await pipeline.handle(batch)
        except Exception as exc:
            fail_stop("events", exc)
        finally:
            # stopped or cancelled: what is held lands before a new pipeline reads the offsets
            try:
                await asyncio.shield(pipeline.drain())
            except Exception as exc:
                fail_stop("events", exc)

    @app.timer(interval=0.1)
    async def land_due() -> None:
        for pipeline in pipelines:
            try:
                await pipeline.tick()
            except Exception as exc:
                fail_stop("events", exc)

    @app.timer(interval=1.0)
    async def resume_at_landed() -> None:
        if app.should_stop:
            return
        from faust.types import TP
        for pipeline in pipelines:
            for t, p in assigned():
                if t == topic:
                    try:
                        position = await app.consumer.position(TP(topic, p))
                        await pipeline.check_position(p, position)
                    except Exception as exc:  # a rebalance in progress: checked again later
                        log.debug("position of partition %d not checked: %r", p, exc)

    @app.on_partitions_revoked.connect
    async def land_before_revocation(sender: Any, revoked: Any, **kwargs: Any) -> None:
        for pipeline in pipelines:
            try:
                await pipeline.on_revoked({tp.partition for tp in revoked if tp.topic == topic})
            except Exception as exc:
                fail_stop("events", exc)

    kpis.assigned = lambda: {p for t, p in assigned() if t == topic}

    def held() -> set[int]:
        return {p for pipeline in pipelines for p in pipeline.history.events.partitions()}

    return held
