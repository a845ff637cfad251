"""The hot path: one Faust agent consumes ``agentflux.events`` and runs every processor on it.

Each batch of records (bounded by events, see :mod:`agentflux.streams.batching`) is decoded and
validated whole by the native decoder into one columnar :class:`~agentflux.streams.frame.EventFrame`
(a record it refuses is re-read event by event by the codec, for exact dead-letter reasons),
de-duplicated, and then handed to the processors: the history holds its rows per partition until
they are due as segments (``segment_rows`` events or ``segment_age_s``), then writes them in its
own thread while the next batches are prepared; the timing windows and Prometheus histograms are
updated on the event loop. Later processors (KPIs, failure patterns, predictor) take the same
frame. Three stages overlap: the next batch fills while the batches taken in are decoded in
the decoder's thread (which releases the GIL) and the oldest of them is applied on the event
loop (at most :data:`IN_FLIGHT` taken in and not applied).

Each offset is taken in once per assignment: a partition's records are processed from the offset
after its last landed one (the history's, read when the partition is assigned) and a record at
or below the last offset taken in (landed, held, or being landed) is not processed again, so a
record redelivered by Kafka (after a kill -9 and restart, or a rebalance) neither lands nor
counts in a window twice. If the consumer starts a partition past that offset (Faust commits
past an offset it never saw acked when later ones are), the records in between are read with a
consumer of the worker's own (:class:`GapReader`) before the first one Faust delivered: Faust's
consumer is never sent back (records it had fetched before a seek would still arrive, and its
own filter drops a re-read below them). Records are acked only once their segments are in
place. A revoked partition is flushed before the rebalance completes, so its new owner resumes
after everything this worker landed. Any failure of the worker itself stops the process before
the batch is acked (see ``fail_stop``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from agentflux.agents.history import EventHistory
from agentflux.agents.kpis import Kpis
from agentflux.streams.batching import take_bounded
from agentflux.streams.codec import decode_record
from agentflux.streams.context import PipelineContext, fail_stop
from agentflux.streams.frame import EventFrame

log = logging.getLogger("agentflux.events")

# batches taken in and not applied yet, at most: one being applied, the others decoding ahead
IN_FLIGHT = 3


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


@dataclass(slots=True)
class _Prepared:
    """A batch taken in, its records decoding in the decoder's thread."""

    batch: Sequence[Any]
    fresh: list[Any]  # its records to process (not taken in before)
    ranges: dict[int, list[int]]  # partition -> first and last offset taken in
    parts: set[int]
    revocations: int  # the pipeline's counts of revocations and forget() calls when it
    forgets: int  # was prepared
    decoded: asyncio.Future  # -> (frame, dead letters)


@dataclass(slots=True)
class FetchedRecord:
    """A record the :class:`GapReader` read: what the pipeline reads of a Faust event (never
    acked through Faust: the records after it are)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None

    @property
    def message(self) -> "FetchedRecord":
        return self


class GapReader:
    """Reads a partition's records in an offset range with a consumer of its own (no group, no
    commits; ``read_committed`` like the worker's): the records between the history's last
    landed offset and the first one Faust's consumer delivered."""

    def __init__(self, settings: Any, topic: str, timeout_s: float = 300.0):
        self.settings, self.topic, self.timeout_s = settings, topic, timeout_s
        self._consumer: Any = None

    async def read(self, partition: int, first: int, end: int) -> list[FetchedRecord]:
        """The records at offsets ``first`` to ``end`` - 1, in order (none where the log has
        none: transaction markers, aborted transactions, records deleted by retention). Raises
        TimeoutError if the broker does not deliver them within ``timeout_s``."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        if self._consumer is None:
            c = AIOKafkaConsumer(**self.settings.kafka_client_kwargs(), group_id=None,
                                 enable_auto_commit=False, isolation_level="read_committed",
                                 auto_offset_reset="earliest",
                                 max_partition_fetch_bytes=self.settings.max_record_bytes + 65536)
            await c.start()
            self._consumer = c
        c = self._consumer
        tp = TopicPartition(self.topic, partition)
        c.assign([tp])
        c.seek(tp, first)
        out: list[FetchedRecord] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while await c.position(tp) < end:
            if loop.time() > deadline:
                raise TimeoutError(f"partition {partition}: offsets {first}..{end - 1} not read "
                                   f"within {self.timeout_s:.0f} s")
            got = await c.getmany(tp, timeout_ms=500)
            out += [FetchedRecord(self.topic, partition, r.offset, r.value)
                    for r in got.get(tp, ()) if r.offset < end]
        return out

    async def close(self) -> None:
        if self._consumer is not None:
            c, self._consumer = self._consumer, None
            await c.stop()


class EventPipeline:
    """Prepares batches (decode, frame, de-duplicate, timing) while earlier ones land.

    One flush is in flight at a time; a batch's events are acked only once the segments holding
    them are in place, so Kafka's committed offsets never pass the history's.
    """

    def __init__(self, ctx: PipelineContext, kpis: Kpis, stream: Any,
                 assigned: Callable[[], set], gaps: GapReader | None = None):
        self.ctx = ctx
        self.history = EventHistory(ctx, kpis)
        self.kpis = kpis
        self.stream = stream
        self.assigned = assigned  # the (topic, partition)s this worker owns now
        self.inflight: asyncio.Future | None = None
        self.unacked: list[Sequence[Any]] = []  # batches held in the sinks, in order
        self._flush_lock = asyncio.Lock()
        self._lock = asyncio.Lock()  # one batch prepared at a time (the agent, the timer)
        self.revocations = 0
        self.gaps = gaps  # None: a partition starts wherever the consumer does (a replay)
        # the batches taken in and not applied yet, oldest first (each applied after the one
        # before it)
        self._applies: collections.deque[asyncio.Future] = collections.deque()
        # partition -> the last offset taken in (landed, held or being landed)
        self.taken: dict[int, int] = {}
        # forget() calls so far; partition -> the count when it was last forgotten
        self._forgets = 0
        self._forgotten: dict[int, int] = {}

    async def handle(self, batch: Sequence[Any]) -> None:
        """Take ``batch`` in: prepared now (its decoding starts in the decoder's thread) and
        applied after the batches before it. Returns once at most :data:`IN_FLIGHT` batches
        are taken in and not applied: batches are decoded ahead while the one before them is
        de-duplicated, windowed and held for landing on the event loop."""
        async with self._lock:
            prepared = await self._prepare(batch)
        if prepared is None:
            return
        self._chain(prepared)
        while len(self._applies) > IN_FLIGHT - 1:
            await self._applies.popleft()

    def _chain(self, prepared: "_Prepared") -> None:
        """Apply ``prepared`` once the batch before it is applied."""
        before = self._applies[-1] if self._applies else None

        async def apply() -> None:
            if before is not None:
                await before  # (its failure is this one's too: nothing after it is applied)
            await self._apply(prepared)

        self._applies.append(asyncio.ensure_future(apply()))

    async def settle(self) -> None:
        """Wait until every batch taken in is applied (raises the failure of one that was not)."""
        while self._applies:
            await self._applies[-1]
            while self._applies and self._applies[0].done():
                self._applies.popleft().result()

    async def _prepare(self, batch: Sequence[Any]) -> "_Prepared | None":
        ctx, history = self.ctx, self.history
        owned = self.assigned()
        # a take() buffer may still hold records of a partition revoked meanwhile: its new
        # owner processes them
        batch = [fe for fe in batch if (fe.message.topic, fe.message.partition) in owned]
        if not batch:
            return None
        for fe in batch:
            m = fe.message
            ctx.processed[(m.topic, m.partition)] = m.offset
        revocations, forgets = self.revocations, self._forgets
        parts = {fe.message.partition for fe in batch}
        await history.landed.load(parts)
        fresh, ranges = await self._take(batch)
        await self.kpis.load(parts)  # (the window state as of the landed offsets)
        decoded = asyncio.get_running_loop().run_in_executor(
            ctx.decode_executor, decode, fresh, ctx.settings.max_record_bytes)
        return _Prepared(batch, fresh, ranges, parts, revocations, forgets, decoded)

    async def _apply(self, b: "_Prepared") -> None:
        history = self.history
        frame, deadletters = await b.decoded
        frame, duplicates = await history.deduplicate(frame)
        if self.revocations != b.revocations or any(
                self._forgotten.get(p, 0) > b.forgets for p in b.parts):
            # A rebalance happened while this was prepared, or what was known of one of its
            # partitions was dropped since (a batch before it met a rebalance): what preparing
            # read or remembered of these partitions (landed offsets, offsets taken in, recent
            # ids, window state) may predate the previous owner's last landing, or be gone.
            # Nothing of the batch is landed or acked: after the rebalance the consumer reads
            # these partitions again from the committed offsets (and its owner from the
            # history's), with state read afresh.
            self.forget(b.parts)
            return
        if b.ranges:
            history.add(frame, len(b.fresh), deadletters, duplicates, b.ranges)
            self.kpis.add(frame)
            if self.ctx.spans is not None:  # (sampling and a column take; built elsewhere)
                self.ctx.spans.offer(frame)
        # (redelivered records too: acked once what was taken in before them has landed; the
        # gap reader's records, a batch of their own, are not Faust's to ack)
        if not isinstance(b.batch[0], FetchedRecord):
            self.unacked.append(b.batch)
        if history.due():
            await self.start_flush()
        elif not history.pending() and self._idle():
            await self.wait()  # (a finished flush: raise its failure, if any)
            await self._ack_unacked()  # nothing held: everything seen has landed

    async def _take(self, batch: Sequence[Any]) -> tuple[list[Any], dict[int, list[int]]]:
        """The records of ``batch`` to process, in order, and the offset range per partition
        they span: each offset once (not at or below the partition's last offset taken in), and
        for a partition's first record since it was assigned, the records between the
        history's last landed offset and it, read by the gap reader."""
        landed = self.history.landed.offsets
        topic = self.history.topic
        out: list[Any] = []
        ranges: dict[int, list[int]] = {}

        def take(fe: Any) -> None:
            m = fe.message
            r = ranges.get(m.partition)
            if r is None:
                ranges[m.partition] = [m.offset, m.offset]
            else:
                r[1] = m.offset
            out.append(fe)
            self.taken[m.partition] = m.offset

        for fe in batch:
            m = fe.message
            p, offset = m.partition, m.offset
            last = self.taken.get(p)
            if last is None:
                last = landed.get((topic, p), -1)
                if offset > last + 1 and self.gaps is not None:
                    skipped = await self.gaps.read(p, last + 1, offset)
                    log.warning("partition %d: the consumer started at offset %d but the "
                                "history has landed only up to %d: read %d records in between",
                                p, offset, last, len(skipped))
                    for r in skipped:
                        take(r)
                self.taken.setdefault(p, last)
            if offset > self.taken[p]:
                take(fe)
        return out, ranges

    async def check_position(self, partition: int, position: int | None) -> None:
        """For an assigned partition that has brought no record yet: if the consumer sits past
        the offset after the last landed one (nothing more may come to trigger the check in
        :meth:`_take`), read the records in between now. (Records Faust fetched meanwhile are
        then redeliveries, not processed twice.)"""
        if self.gaps is None or position is None or partition in self.taken:
            return
        async with self._lock:
            history = self.history
            if partition in self.taken or (history.topic, partition) not in self.assigned():
                return
            revocations = self.revocations
            await history.landed.load([partition])
            last = history.landed.offsets[(history.topic, partition)]
            if position <= last + 1:
                return
            records = await self.gaps.read(partition, last + 1, position)
            if self.revocations != revocations:
                return  # read again by this partition's next owner
            log.warning("partition %d: the consumer sits at offset %d but the history has "
                        "landed only up to %d: read %d records in between", partition, position,
                        last, len(records))
            if records:
                try:
                    prepared = await self._prepare(records)
                    if prepared is not None:
                        self._chain(prepared)
                        await self.settle()
                except Exception as exc:
                    fail_stop("events", exc)
            if self.revocations == revocations:
                # the offsets in between that hold no record (transaction markers, records
                # deleted by retention) are taken in too
                self.taken[partition] = max(self.taken.get(partition, -1), position - 1)

    def forget(self, partitions: set[int]) -> None:
        """Drop what is held and known of ``partitions``: a new assignment reads them again
        from the history (and a batch of theirs prepared before is not applied)."""
        self._forgets += 1
        for p in partitions:
            self._forgotten[p] = self._forgets
        # (their held records are dropped, never acked: acks follow landing)
        self.unacked = [kept for kept in ([fe for fe in b if fe.message.partition not in
                                           partitions] for b in self.unacked) if kept]
        self.history.forget(partitions)
        self.kpis.forget(partitions)
        for p in partitions:
            self.taken.pop(p, None)

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
        for f in (self.inflight, *self._applies):
            if f is not None and f.done() and (f.cancelled() or f.exception() is not None):
                await f
        if self._idle() and self.history.due():
            await self.start_flush()

    async def drain(self) -> None:
        """Land everything taken in and wait for it."""
        await self.settle()
        await self.start_flush()
        await self.wait()

    async def on_revoked(self, partitions: set[int]) -> None:
        """Land everything held before the rebalance completes, then forget the revoked
        partitions: their next owner resumes after what this worker landed."""
        await self.settle()  # (the batches taken in before the rebalance land with the rest)
        self.revocations += 1
        await self.drain()
        # and the window state a timer may still be writing: the next owner reads it
        await asyncio.get_running_loop().run_in_executor(self.ctx.history_executor, int)
        self.forget(partitions)


def register(app: Any, ctx: PipelineContext, kpis: Kpis) -> Callable[[], set[int]]:
    """The events agent; returns ``held()``: the partitions with events held for landing."""
    pipelines: list[EventPipeline] = []
    topic = ctx.settings.topics.events

    def assigned() -> set:
        return {(tp.topic, tp.partition) for tp in app.consumer.assignment()}

    gaps = GapReader(ctx.settings, topic)

    @app.agent(ctx.topics.events, name="agentflux.events")
    async def events(stream: Any) -> None:
        # built when the agent (re)starts, so the history's landed offsets are read then
        # (a replay starts where it was told to, not at its new history's offsets)
        pipeline = EventPipeline(ctx, kpis, stream, assigned,
                                 None if ctx.settings.replay else gaps)
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
                    except Exception as exc:  # a rebalance in progress, the broker away:
                        # checked again at the next tick
                        log.debug("position of partition %d not checked: %r", p, exc)

    @app.on_partitions_revoked.connect
    async def land_before_revocation(sender: Any, revoked: Any, **kwargs: Any) -> None:
        for pipeline in pipelines:
            try:
                await pipeline.on_revoked({tp.partition for tp in revoked if tp.topic == topic})
            except Exception as exc:
                fail_stop("events", exc)

    @app.on_before_shutdown.connect
    async def close_gap_reader(sender: Any, **kwargs: Any) -> None:
        await gaps.close()

    kpis.assigned = lambda: {p for t, p in assigned() if t == topic}

    def held() -> set[int]:
        return {p for pipeline in pipelines for p in pipeline.history.events.partitions()}

    return held
