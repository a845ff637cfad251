"""History: raw events, dead letters and KPI rows into DuckDB, exactly once.

Each take() of records becomes one DuckDB transaction holding the rows and the last offset per
partition. Records at or below a stored offset were landed before a crash and are skipped, so a
kill -9 and restart neither loses nor duplicates rows. Stored offsets are bound to the cluster
and topic id they count in (see :mod:`agentflux.streams.kafkameta`).

Events that failed decoding or validation land in the ``deadletters`` table in the same
transaction. Before that transaction they are published to ``agentflux.deadletter`` (and the
publication awaited), with the reason and source position in headers and the record's original
bytes, sliced to the rejected event, as the value: the topic is at-least-once (a crash between
the two re-publishes), the table is exact. A dead letter larger than ``deadletter_max_bytes`` (or
refused by the broker as too large) is published by reference: an empty value and the source
topic, partition and offset, where the bytes still are (and the history's table has them).

An event whose id was landed recently from the same partition is a duplicate (see
:mod:`agentflux.streams.dedup`): it is recorded in the ``duplicates`` table and counted, not landed
twice.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Sequence

import numpy as np
import orjson
import pyarrow as pa

from agentflux.sinks.duckdb import (DEADLETTER_SCHEMA, DUPLICATE_SCHEMA, EVENT_SCHEMA,
                                    KPI_COLUMNS, KPI_SCHEMA)
from agentflux.streams.context import PipelineContext, fail_stop
from agentflux.streams.dedup import RecentIds, id_hashes
from agentflux.streams.frame import EventFrame

EVENTS_CONSUMER = "history.events"
KPIS_CONSUMER = "history.kpis"


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


class Lander:
    """Skips records a previous run already landed; tracks the offsets a write will store."""

    def __init__(self, ctx: PipelineContext, consumer: str):
        self.ctx = ctx
        self.consumer = consumer
        self.landed = ctx.history.landed_offsets(consumer)
        self.skipped = 0
        if consumer == EVENTS_CONSUMER:
            ctx.landed = self.landed  # the lag gauge counts from what has landed

    def fresh(self, faust_events: Sequence[Any]) -> tuple[list[Any], dict]:
        out, offsets = [], {}
        for fe in faust_events:
            m = fe.message
            key = (m.topic, m.partition)
            if m.offset <= self.landed.get(key, -1):
                self.skipped += 1
                continue
            out.append(fe)
            offsets[key] = m.offset
        return out, offsets

    async def write(self, offsets: dict, **tables: Any) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.ctx.db_executor,
                                   lambda: self.ctx.history.write(self.consumer, offsets, **tables))
        self.landed.update(offsets)


async def _consume(stream: Any, ctx: PipelineContext, where: str,
                   handle: Callable[[Sequence[Any]], Awaitable[None]]) -> None:
    """take() batches of Faust events and hand them to ``handle``; fail-stop on its failure."""
    async for batch in stream.take_events(ctx.batch_records, within=ctx.batch_within_s):
        try:
            await handle(batch)
        except Exception as exc:
            fail_stop(where, exc)


class EventHistory:
    """Lands a frame of validated events, its dead letters and duplicates, exactly once."""

    def __init__(self, ctx: PipelineContext):
        self.ctx = ctx
        self.lander = Lander(ctx, EVENTS_CONSUMER)
        self.recent = RecentIds(ctx.settings.dedup_events)
        for t in ("events", "deadletters", "duplicates"):
            ctx.metrics.set_rows(t, ctx.history.count(t))

    async def _warm(self, partitions: list) -> None:
        loop = asyncio.get_running_loop()
        for p in partitions:
            if not self.recent.known(p):
                ids = await loop.run_in_executor(self.ctx.db_executor, self.ctx.history.recent_ids,
                                                 p, self.recent.capacity)
                self.recent.warm(p, ids)

    async def deduplicate(self, frame: EventFrame) -> tuple[EventFrame, pa.Table | None]:
        """Drop events whose id landed recently from the same partition (or earlier in this
        frame), and remember the ids of the rest at once: the next frame is de-duplicated while
        this one lands (if that landing fails, the worker stops and rebuilds the horizon from
        the history). Returns the kept events and a table of the duplicates."""
        if not frame.n:
            return frame, None
        parts = np.unique(frame.partition).tolist()
        await self._warm(parts)
        hashes = id_hashes(frame.ids)
        dup = np.zeros(frame.n, dtype=bool)
        for p in parts:
            idx = np.flatnonzero(frame.partition == p) if len(parts) > 1 else slice(None)
            d = self.recent.duplicates(p, hashes[idx])
            dup[idx] = d
            self.recent.remember(p, hashes[idx][~d])
        if not dup.any():
            return frame, None
        at = np.flatnonzero(dup)
        dups = pa.table({"event_id": pa.array([frame.ids[i] for i in at.tolist()], pa.string()),
                         "topic": pa.array([self.ctx.settings.topics.events] * len(at)),
                         "kafka_partition": pa.array(frame.partition[at], pa.int32()),
                         "kafka_offset": pa.array(frame.offset[at], pa.int64())},
                        schema=DUPLICATE_SCHEMA)
        return frame.select(np.flatnonzero(~dup)), dups

    async def land(self, frame: EventFrame, deadletters: list, offsets: dict,
                   duplicates: pa.Table | None) -> None:
        """Publish the dead letters (awaited: at-least-once on the topic), then one transaction
        with the events, dead letters, duplicates and offsets."""
        ctx = self.ctx
        dl_table = pa.Table.from_pylist(
            [{"reason": r.reason, "detail": r.detail, "event_id": r.event_id, "topic": t,
              "kafka_partition": p, "kafka_offset": o, "batch_index": r.index, "raw": r.raw}
             for r, t, p, o in deadletters], schema=DEADLETTER_SCHEMA) if deadletters else None
        if deadletters:
            await publish_deadletters(ctx, [
                ((r.event_id or f"{t}/{p}/{o}").encode(), r.raw,
                 deadletter_headers(r.reason, r.detail, t, p, o, r.index, r.event_id))
                for r, t, p, o in deadletters])
        await self.lander.write(offsets, events=frame.table(EVENT_SCHEMA) if frame.n else None,
                                deadletters=dl_table, duplicates=duplicates)

    def landed(self, frame: EventFrame, records: int, deadletters: list,
               duplicates: pa.Table | None) -> None:
        """Bookkeeping once a landing transaction committed."""
        metrics = self.ctx.metrics
        metrics.count_records(records)
        metrics.count_events(frame.type_counts())
        metrics.add_rows("events", frame.n)
        metrics.add_rows("deadletters", len(deadletters))
        for r, *_ in deadletters:
            metrics.count_deadletters(r.reason)
        if duplicates is not None:
            metrics.count_duplicates(duplicates.num_rows)
            metrics.add_rows("duplicates", duplicates.num_rows)
        if frame.n:
            metrics.observe_freshness(np.maximum(time.time_ns() - frame.ts, 0) / 1e9)


class KpiHistory:
    """Lands the KPI rows the timing agent publishes; an unreadable row is dead-lettered."""

    def __init__(self, ctx: PipelineContext):
        self.ctx = ctx
        self.lander = Lander(ctx, KPIS_CONSUMER)
        ctx.metrics.set_rows("kpis", ctx.history.count("kpis"))

    async def land(self, batch: Sequence[Any]) -> None:
        ctx = self.ctx
        fresh, offsets = self.lander.fresh(batch)
        if not fresh:
            return
        rows = []
        for fe in fresh:
            m = fe.message
            try:
                row = orjson.loads(fe.value)
                row["window_start"] = int(row.pop("window_start_ns"))
                row["window_end"] = int(row.pop("window_end_ns"))
                row["sketch"] = orjson.dumps(row["sketch"]).decode()
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                ctx.metrics.count_deadletters("invalid_kpi")
                await publish_deadletters(ctx, [(
                    f"{m.topic}/{m.partition}/{m.offset}".encode(),
                    fe.value if isinstance(fe.value, bytes) else b"",
                    deadletter_headers("invalid_kpi", repr(exc), m.topic, m.partition,
                                       m.offset, None, None))])
                continue
            row["kafka_partition"] = m.partition
            row["kafka_offset"] = m.offset
            rows.append({c: row.get(c) for c in KPI_COLUMNS})
        table = pa.Table.from_pylist(rows, schema=KPI_SCHEMA) if rows else None
        await self.lander.write(offsets, kpis=table)
        ctx.metrics.add_rows("kpis", len(rows))


def register(app: Any, ctx: PipelineContext) -> None:
    """The KPI lander and the retention timer (events land through :mod:`agentflux.agents.events`)."""

    @app.agent(ctx.topics.kpis, name="agentflux.history.kpis")
    async def land_kpis(stream: Any) -> None:
        # built when the agent (re)starts, so it reads the stored offsets then
        await _consume(stream, ctx, "history.kpis", KpiHistory(ctx).land)

    @app.timer(interval=3600.0, on_leader=False)
    async def apply_retention() -> None:
        loop = asyncio.get_running_loop()
        days = ctx.settings.retention_days
        await loop.run_in_executor(ctx.db_executor, ctx.history.apply_retention, days)
