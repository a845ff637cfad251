"""History: raw events, dead letters and KPI rows as Parquet segments, exactly once.

Rows are batched per Kafka partition with the offset range of the records they came from and
land as segments named by that range (:mod:`agentflux.sinks.history`). The highest offset in a
partition's ``events`` segments is where that partition resumes: records at or below it landed
before (a kill -9, a rebalance to another worker) and are skipped, so nothing lands twice and,
because Kafka offsets are acked only after their segments are in place, nothing is lost. A
flush writes the dead-letter and duplicate segments of a range before its events segment (an
empty one if the range held no valid event), so the events segment is the range's commit.
Offsets count in the log of the cluster and topic id they were read from
(:mod:`agentflux.streams.kafkameta`): a recreated topic starts a new offset space.

Events that failed decoding or validation land in the ``deadletters`` table. Before that they
are published to ``agentflux.deadletter`` (and the publication awaited), with the reason and
source position in headers and the record's original bytes, sliced to the rejected event, as the
value: the topic is at-least-once (a crash between the two re-publishes), the table is exact. A dead letter larger than ``deadletter_max_bytes`` (or
refused by the broker as too large) is published by reference: an empty value and the source
topic, partition and offset, where the bytes still are (and the history's table has them).

An event whose id was landed recently from the same partition is a duplicate (see
:mod:`agentflux.streams.dedup`): it is recorded in the ``duplicates`` table and counted, not landed
twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Sequence

import numpy as np
import orjson
import pyarrow as pa

from agentflux.sinks.sink import BatchingSink, ParquetSink
from agentflux.sinks.tables import (ALERTS, DEADLETTERS, DUPLICATES, EVENTS, KPIS,
                                    POOL_COMMANDS, PREDICTIONS, alert_row, check_kpi_batch,
                                    check_kpi_row, command_row, kpi_batch_table, kpi_table,
                                    prediction_row)
from agentflux.streams.context import PipelineContext, fail_stop
from agentflux.streams.dedup import RecentIds
from agentflux.streams.frame import EventFrame

if TYPE_CHECKING:
    from agentflux.agents.alerting import Alerting
    from agentflux.agents.kpis import Kpis
    from agentflux.agents.loop import ClosedLoop

log = logging.getLogger("agentflux.history")


def deadletter_headers(reason: str, detail: str, topic: str, partition: int, offset: int,
                       index: int | None, event_id: str | None) -> list[tuple[str, bytes]]:
    h = [("agentflux.reason", reason.encode()),
         ("agentflux.detail", detail.encode(errors="replace")[:1000]),
         ("agentflux.source.topic", topic.encode()),
         ("agentflux.source.partition", str(partition).encode()),
         ("agentflux.source.offset", str(offset).encode())]
    if index is not None:
        h.append(("agentflux.source.index", str(index).encode()))
    if event_id:
        h.append(("agentflux.event_id", event_id.encode(errors="replace")[:200]))
    return h


def _too_large(exc: BaseException | None) -> bool:
    """The broker or the client refused a record as too large (Faust wraps the client's error
    in a ProducerSendError)."""
    from aiokafka.errors import MessageSizeTooLargeError
    while exc is not None:
        if isinstance(exc, MessageSizeTooLargeError) or "TooLarge" in type(exc).__name__:
            return True
        exc = exc.__cause__
    return False


async def publish_deadletters(ctx: PipelineContext, items: Sequence[tuple]) -> None:
    """Publish ``(key, raw, headers)`` dead letters and wait until the broker has them.

    Oversize ones (over ``deadletter_max_bytes``, or refused by the client or the broker as too
    large) go by reference: an empty value, ``agentflux.raw=reference`` and the size; the source
    topic, partition and offset headers say where the original bytes are."""
    topic = ctx.topics.deadletter
    limit = ctx.settings.deadletter_max_bytes

    def by_reference(raw: bytes, headers: list) -> list:
        return [*headers, ("agentflux.raw", b"reference"),
                ("agentflux.raw.bytes", str(len(raw)).encode())]

    async def send(key: bytes, raw: bytes, headers: list) -> Any:
        if len(raw) > limit:
            return await topic.send(key=key, value=b"", headers=by_reference(raw, headers))
        try:
            return await topic.send(key=key, value=raw, headers=headers)
        except Exception as exc:
            if not _too_large(exc):
                raise
            return await topic.send(key=key, value=b"", headers=by_reference(raw, headers))

    sent = [(await send(key, raw, headers), key, raw, headers) for key, raw, headers in items]
    for fut, key, raw, headers in sent:
        try:
            await fut
        except Exception as exc:
            if not _too_large(exc) or not raw:
                raise
            await (await topic.send(key=key, value=b"", headers=by_reference(raw, headers)))


class Landed:
    """The last offset landed per partition of one topic, as the history's segments say.

    Read from the segments the first time a partition is seen (at start, and after a rebalance
    assigned it: another worker may have landed more of it meanwhile), advanced by this worker's
    own landings, forgotten when the partition is revoked."""

    def __init__(self, ctx: PipelineContext, topic: str, table: str, offsets: dict | None = None):
        self.ctx, self.topic, self.table = ctx, topic, table
        self.log = ctx.log_of(topic)
        self.offsets: dict[tuple[str, int], int] = {} if offsets is None else offsets

    async def load(self, partitions: Iterable[int]) -> None:
        missing = [p for p in partitions if (self.topic, p) not in self.offsets]
        if not missing:
            return
        loop = asyncio.get_running_loop()
        stored = await loop.run_in_executor(self.ctx.history_executor,
                                            self.ctx.history.landed_offsets, self.table, self.log)
        for p in missing:
            self.offsets.setdefault((self.topic, p), stored.get(p, -1))

    def fresh(self, faust_events: Sequence[Any]) -> tuple[list[Any], dict[int, list[int]]]:
        """The events not landed yet, and the offset range per partition they span (call
        :meth:`load` for their partitions first)."""
        out, ranges = [], {}
        for fe in faust_events:
            m = fe.message
            # (a partition forgotten meanwhile, i.e. revoked, is filtered out by the caller)
            if m.offset <= self.offsets.get((m.topic, m.partition), -1):
                continue
            out.append(fe)
            r = ranges.get(m.partition)
            if r is None:
                ranges[m.partition] = [m.offset, m.offset]
            else:
                r[1] = m.offset
        return out, ranges

    def advance(self, partition: int, offset: int) -> None:
        key = (self.topic, partition)
        self.offsets[key] = max(self.offsets.get(key, -1), offset)

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.offsets.pop((self.topic, p), None)


# records of agentflux.kpis landed at once
KPI_BATCH_RECORDS = 16


async def _consume(stream: Any, ctx: PipelineContext, where: str,
                   handle: Callable[[Sequence[Any]], Awaitable[None]], within: float,
                   records: int | None = None) -> None:
    """take() batches of Faust events (at most ``records``, default the context's batch) and
    hand them to ``handle``; fail-stop on its failure."""
    async for batch in stream.take_events(records or ctx.batch_records, within=within):
        try:
            await handle(batch)
        except Exception as exc:
            fail_stop(where, exc)


def take_all(sinks: Sequence[BatchingSink]) -> list[tuple[BatchingSink, Any]]:
    """Detach what each sink holds, sink by sink in the order given (on the event loop)."""
    return [(s, b) for s in sinks for b in s.take()]


async def write_in_order(ctx: PipelineContext, batches: list[tuple[BatchingSink, Any]],
                         before: Callable[[], Any] | None = None) -> list:
    """Write :func:`take_all`'s batches in the history's thread, in order, after ``before()``
    (the window state that goes with them); returns them."""
    def write() -> None:
        if before is not None:
            before()
        for s, b in batches:
            s.write(b)

    if batches:
        await asyncio.get_running_loop().run_in_executor(ctx.history_executor, write)
    return [b for _, b in batches]


class EventHistory:
    """Batches frames of validated events, their dead letters and duplicates per partition, and
    lands them as segments (:meth:`flush`)."""

    def __init__(self, ctx: PipelineContext, kpis: "Kpis | None" = None):
        self.ctx = ctx
        self.kpis = kpis  # its window state is stored with each landing (before the events)
        topic = ctx.settings.topics.events
        self.topic = topic
        self.landed = Landed(ctx, topic, EVENTS.name, ctx.landed)  # the lag gauge reads it too
        log_ = self.landed.log
        self.recent = RecentIds(ctx.settings.dedup_events)
        # written in this order: a range's events segment (empty if it has no valid event) is
        # its commit, so it goes last
        self.sinks = [ParquetSink(DEADLETTERS, log_, ctx.history),
                      ParquetSink(DUPLICATES, log_, ctx.history),
                      ParquetSink(EVENTS, log_, ctx.history, empty_segments=True)]
        self.deadletters, self.duplicates, self.events = self.sinks
        self._to_publish: list[tuple] = []  # dead letters to publish before their rows land
        self._notes: list[tuple] = []  # per added frame: what to count once it has landed

    def pending(self) -> bool:
        return bool(self.events)

    def due(self) -> bool:
        s = self.ctx.settings
        return bool(self.events) and (self.events.rows >= s.segment_rows
                                      or self.events.age() >= s.segment_age_s)

    async def _warm(self, partitions: list) -> None:
        loop = asyncio.get_running_loop()
        for p in partitions:
            if not self.recent.known(p):
                # the horizon as of the offset this worker resumes after (see recent_ids)
                upto = self.landed.offsets.get((self.topic, p), -1)
                ids = await loop.run_in_executor(self.ctx.history_executor,
                                                 self.ctx.history.recent_ids, self.landed.log, p,
                                                 self.recent.capacity, upto)
                self.recent.warm(p, ids)

    async def deduplicate(self, frame: EventFrame) -> tuple[EventFrame, list[tuple]]:
        """Drop events whose id landed recently from the same partition (or earlier in this
        frame), and remember the ids of the rest at once: the next frame is de-duplicated while
        this one lands (if that landing fails, the worker stops and rebuilds the horizon from
        the history). Returns the kept events and ``(id, topic, partition, offset)`` of the
        duplicates."""
        if not frame.n:
            return frame, []
        parts = np.unique(frame.partition).tolist()
        await self._warm(parts)
        hashes = frame.id_hash
        dup = np.zeros(frame.n, dtype=bool)
        for p in parts:
            idx = np.flatnonzero(frame.partition == p) if len(parts) > 1 else slice(None)
            d = self.recent.duplicates(p, hashes[idx])
            dup[idx] = d
            self.recent.remember(p, hashes[idx][~d])
        if not dup.any():
            return frame, []
        at = np.flatnonzero(dup).tolist()
        ids = frame.ids.take(pa.array(at, pa.int64())).to_pylist()
        dups = [(i, self.topic, int(frame.partition[a]), int(frame.offset[a]))
                for i, a in zip(ids, at)]
        return frame.select(np.flatnonzero(~dup)), dups

    def add(self, frame: EventFrame, records: int, deadletters: list, duplicates: list,
            ranges: dict[int, list[int]]) -> None:
        """Hold a prepared batch for the next :meth:`flush`: rows per partition, each with the
        offset range of the records it came from."""
        self.events.add_ranges(ranges, frame)
        self.deadletters.add_ranges(ranges, deadletters)
        self.duplicates.add_ranges(ranges, duplicates)
        self._to_publish += deadletters
        self._notes.append((records, frame.type_counts(), frame.n, [r.reason for r, *_ in
                            deadletters], len(duplicates), frame.ts if frame.n else None))

    def forget(self, partitions: set[int]) -> None:
        """Drop what is held for ``partitions`` (revoked, already flushed) and what is known
        about them: a new assignment reads them again from the history."""
        for s in self.sinks:
            s.forget(partitions)
        self.landed.forget(partitions)
        for p in partitions:
            self.recent.forget(p)

    async def flush(self) -> None:
        """Publish the held dead letters (awaited: at-least-once on the topic), then write the
        held rows: dead letters, duplicates, then the events segments that commit each range."""
        ctx = self.ctx
        # detached together, before any await: rows added meanwhile go with their own dead
        # letters into the next flush
        batches = take_all(self.sinks)
        dead, self._to_publish = self._to_publish, []
        notes, self._notes = self._notes, []
        cp = None
        if self.kpis is not None:
            cp = self.kpis.checkpoint({b.partition: b.last for s, b in batches
                                       if s is self.events})
        if dead and not ctx.settings.replay:  # a replay's dead letters are on the topic already
            await publish_deadletters(ctx, [
                ((r.event_id or f"{t}/{p}/{o}").encode(), r.raw,
                 deadletter_headers(r.reason, r.detail, t, p, o, r.index, r.event_id))
                for r, t, p, o in dead])
        written = await write_in_order(
            ctx, batches, before=None if cp is None else lambda: self.kpis.write_states(cp.states))
        for b in written:
            if b.table is EVENTS:
                self.landed.advance(b.partition, b.last)
        if cp is not None:
            self.kpis.committed(cp)
        self._count(notes, written)

    def _count(self, notes: list, written: list) -> None:
        metrics = self.ctx.metrics
        now = time.time_ns()
        for records, type_counts, n, reasons, dups, ts in notes:
            metrics.count_records(records)
            metrics.count_events(type_counts)
            for reason in reasons:
                metrics.count_deadletters(reason)
            if dups:
                metrics.count_duplicates(dups)
            if ts is not None:
                metrics.observe_freshness(np.maximum(now - ts, 0) / 1e9)
        for b in written:
            metrics.add_rows(b.table.name, b.rows)


class KpiHistory:
    """Lands the KPI rows the windows publish, and runs the failure detector on them (its state
    and alerts land with each batch, :mod:`agentflux.agents.alerting`); an unreadable row is
    dead-lettered."""

    def __init__(self, ctx: PipelineContext, alerting: "Alerting | None" = None,
                 loop: "ClosedLoop | None" = None):
        self.ctx = ctx
        self.alerting = alerting
        self.loop = loop
        self.landed = Landed(ctx, ctx.settings.topics.kpis, KPIS.name)
        # a range of only unreadable rows lands too (empty): it is not read again after a restart
        self.sink = ParquetSink(KPIS, self.landed.log, ctx.history, empty_segments=True)
        self.alerts = ParquetSink(ALERTS, self.landed.log, ctx.history)
        self.predictions = ParquetSink(PREDICTIONS, self.landed.log, ctx.history)
        self.commands = ParquetSink(POOL_COMMANDS, self.landed.log, ctx.history)

    async def land(self, batch: Sequence[Any]) -> None:
        ctx = self.ctx
        parts = {fe.message.partition for fe in batch}
        await self.landed.load(parts)
        if self.alerting is not None:
            await self.alerting.load(parts, self.landed.offsets)
        if self.loop is not None:
            await self.loop.load(parts, self.landed.offsets)
        fresh, ranges = self.landed.fresh(batch)
        if not fresh:
            return
        rows: dict[int, list] = {}
        offsets: dict[int, list] = {}
        docs: dict[int, list] = {}
        batches: dict[int, list[pa.Table]] = {}
        dead = []
        for fe in fresh:
            m = fe.message
            raw = fe.value if isinstance(fe.value, bytes) else b""
            try:
                value = orjson.loads(raw)
            except ValueError as exc:
                dead.append((f"{m.topic}/{m.partition}/{m.offset}".encode(), raw,
                             deadletter_headers("invalid_kpi", repr(exc), m.topic, m.partition,
                                                m.offset, None, None)))
                continue
            # a record holds one row or a JSON array of rows (the worker sends arrays)
            many = isinstance(value, list)
            for i, doc in enumerate(value if many else [value]):
                try:
                    if not isinstance(doc, dict):
                        raise TypeError(f"a KPI row is a JSON object, got {type(doc).__name__}")
                    kind = doc.get("kind")
                    if kind == "kpi_batch":  # rows as columns (sessions)
                        check_kpi_batch(doc)
                        batches.setdefault(m.partition, []).append(
                            kpi_batch_table(doc, m.partition, m.offset))
                    elif kind != "progress":  # (a marker for the detector, not a row)
                        check_kpi_row(doc)
                        rows.setdefault(m.partition, []).append(doc)
                        offsets.setdefault(m.partition, []).append(m.offset)
                    docs.setdefault(m.partition, []).append(doc)
                except (ValueError, KeyError, TypeError) as exc:
                    at = f"{m.topic}/{m.partition}/{m.offset}" + (f"/{i}" if many else "")
                    dead.append((at.encode(),
                                 orjson.dumps(doc) if many else raw,
                                 deadletter_headers("invalid_kpi", repr(exc), m.topic,
                                                    m.partition, m.offset,
                                                    i if many else None, None)))
        if dead:
            ctx.metrics.count_deadletters("invalid_kpi", len(dead))
            await publish_deadletters(ctx, dead)
        raised: dict[int, list[dict]] = {}
        decided: dict[int, tuple[list, list]] = {}
        states = []
        for p, (first, last) in ranges.items():
            if self.alerting is not None:
                raised[p] = self.alerting.observe(p, docs.get(p, []))
                self.alerts.add(p, first, last, [alert_row(t, p, last) for t in raised[p]])
                states.append((p, last, self.alerting.state(p, last)))
            if self.loop is not None:
                predictions, commands = decided[p] = self.loop.observe(p, docs.get(p, []))
                self.predictions.add(p, first, last,
                                     [prediction_row(d, p, last) for d in predictions])
                self.commands.add(p, first, last,
                                  [command_row(c, send, p, last) for c, send, _ in commands])
            tables = batches.get(p, []) + ([kpi_table(rows[p], p, offsets[p])] if p in rows
                                           else [])
            self.sink.add(p, first, last, pa.concat_tables(tables) if tables else ())
        loop_states = self.loop.states_due({p: last for p, (_, last) in ranges.items()}) \
            if self.loop is not None else []

        def write_states() -> None:
            if states:
                self.alerting.write_states(states)
            if loop_states:
                self.loop.write_states(loop_states)

        # the detector's and predictor's state and the alerts before the KPI segment that
        # commits the range
        for b in await write_in_order(
                ctx, take_all([self.alerts, self.predictions, self.commands, self.sink]),
                before=None if not (states or loop_states) else write_states):
            ctx.metrics.add_rows(b.table.name, b.rows)
            if b.table is KPIS:
                self.landed.advance(b.partition, b.last)
                if self.alerting is not None:
                    self.alerting.committed(b.partition, raised.get(b.partition, []))
                if b.partition in decided:
                    self.loop.committed(*decided[b.partition])
        if self.alerting is not None:
            await self.alerting.publish()
        if self.loop is not None:
            await self.loop.publish()

    def forget(self, partitions: set[int]) -> None:
        self.landed.forget(partitions)
        if self.alerting is not None:
            self.alerting.forget(partitions)
        if self.loop is not None:
            self.loop.forget(partitions)


def register(app: Any, ctx: PipelineContext, alerting: "Alerting | None" = None,
             loop: "ClosedLoop | None" = None) -> None:
    """The KPI lander and the history's upkeep: compaction of the partitions this worker owns,
    retention (events land through :mod:`agentflux.agents.events`)."""
    kpis_topic = ctx.settings.topics.kpis
    landers: list[KpiHistory] = []

    @app.agent(ctx.topics.kpis, name="agentflux.history.kpis")
    async def land_kpis(stream: Any) -> None:
        lander = KpiHistory(ctx, alerting, loop)
        landers[:] = [lander]
        # (a KPI record holds up to 1,000 rows, and a batch is landed and judged on the event
        # loop in one go: a batch of 16 records keeps the events landing meanwhile)
        await _consume(stream, ctx, "history.kpis", lander.land, within=1.0,
                       records=KPI_BATCH_RECORDS)

    @app.timer(interval=1.0)
    async def restore_detectors() -> None:
        """The failure detectors of newly assigned KPI partitions, restored without waiting for
        a KPI row: their active alerts go back to Alertmanager before it expires them."""
        if alerting is None or app.should_stop:
            return
        parts = {tp.partition for tp in app.consumer.assignment() if tp.topic == kpis_topic}
        for lander in landers:
            if parts - set(alerting.detectors):
                try:
                    await lander.landed.load(parts)
                    await alerting.load(parts, lander.landed.offsets)
                except Exception as exc:  # retried at the next tick; the lander loads too
                    log.warning("failure detectors not restored yet: %r", exc)

    @app.on_partitions_revoked.connect
    async def forget_kpi_partitions(sender: Any, revoked: Any, **kwargs: Any) -> None:
        for lander in landers:
            lander.forget({tp.partition for tp in revoked if tp.topic == kpis_topic})

    @app.timer(interval=ctx.settings.compact_interval_s)
    async def compact() -> None:
        if app.should_stop:
            return
        owned = {}
        for tp in app.consumer.assignment():
            owned.setdefault(tp.topic, set()).add(tp.partition)
        loop = asyncio.get_running_loop()
        s = ctx.settings
        for table, topic in ((EVENTS, s.topics.events), (DEADLETTERS, s.topics.events),
                             (DUPLICATES, s.topics.events), (KPIS, kpis_topic),
                             (ALERTS, kpis_topic), (PREDICTIONS, kpis_topic),
                             (POOL_COMMANDS, kpis_topic)):
            parts = owned.get(topic)
            if not parts:
                continue
            try:
                stats = await loop.run_in_executor(
                    ctx.upkeep_executor, lambda: ctx.history.compact(
                        table, partitions=parts, min_files=s.compact_min_files,
                        target_rows=s.compact_target_rows, grace_s=s.compact_grace_s,
                        settle_s=5 * s.compact_interval_s))
            except Exception as exc:  # upkeep: retried at the next interval, never a stop
                log.warning("compaction of %s failed: %r", table.name, exc)
                continue
            if stats["written"] or stats["deleted"]:
                log.info("compacted %s: %s", table.name, stats)

    @app.timer(interval=3600.0)
    async def apply_retention() -> None:
        loop = asyncio.get_running_loop()
        try:
            gone = await loop.run_in_executor(ctx.upkeep_executor, ctx.history.apply_retention,
                                              ctx.settings.retention_days)
        except Exception as exc:
            log.warning("retention failed: %r", exc)
            return
        if gone:
            log.info("retention deleted %d day partitions", len(gone))
