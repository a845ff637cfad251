"""History: raw events, dead letters and KPI rows into DuckDB, exactly once.

Each take() of records becomes one DuckDB transaction holding the rows and the last offset per
partition. Records at or below a stored offset were landed before a crash and are skipped, so a
kill -9 and restart neither loses nor duplicates rows. Events that failed decoding or validation
land in the ``deadletters`` table in the same transaction and are then published to
``agentflux.deadletter`` with the reason and source position in headers and the raw bytes as
the value (the topic is at-least-once; the table is exact).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Awaitable, Callable, Sequence

import orjson
import pyarrow as pa

from agentflux.sinks.duckdb import DEADLETTER_SCHEMA, KPI_COLUMNS, KPI_SCHEMA, events_table
from agentflux.streams.context import PipelineContext, fail_stop

EVENTS_CONSUMER = "history.events"
KPIS_CONSUMER = "history.kpis"


def deadletter_headers(reason: str, detail: str, topic: str, partition: int, offset: int,
                       index: int | None, event_id: str | None) -> list[tuple[str, bytes]]:
    h = [("agentflux.reason", reason.encode()), ("agentflux.detail", detail.encode()[:1000]),
         ("agentflux.source.topic", topic.encode()),
         ("agentflux.source.partition", str(partition).encode()),
         ("agentflux.source.offset", str(offset).encode())]
    if index is not None:
        h.append(("agentflux.source.index", str(index).encode()))
    if event_id:
        h.append(("agentflux.event_id", event_id.encode()))
    return h


class Lander:
    """Skips records a previous run already landed; tracks the offsets a write will store."""

    def __init__(self, ctx: PipelineContext, consumer: str):
        self.ctx = ctx
        self.consumer = consumer
        self.landed = ctx.history.landed_offsets(consumer)
        self.skipped = 0

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
    """Lands validated events and dead letters; publishes dead letters to their topic."""

    def __init__(self, ctx: PipelineContext):
        self.ctx = ctx
        self.lander = Lander(ctx, EVENTS_CONSUMER)
        ctx.metrics.set_rows("events", ctx.history.count("events"))
        ctx.metrics.set_rows("deadletters", ctx.history.count("deadletters"))

    async def land(self, batch: Sequence[Any]) -> None:
        ctx, metrics = self.ctx, self.ctx.metrics
        for fe in batch:
            m = fe.message
            ctx.processed[(m.topic, m.partition)] = m.offset
        fresh, offsets = self.lander.fresh(batch)
        if not fresh:
            return
        evs: list = []
        spans: list = []
        parts: list = []
        offs: list = []
        dl = []
        for fe in fresh:
            d, m = fe.value, fe.message
            n = len(d.events)
            if n:
                evs += d.events
                spans += d.spans()
                parts += [m.partition] * n
                offs += [m.offset] * n
            dl += [(r, m.topic, m.partition, m.offset) for r in d.rejected]
        dl_table = pa.Table.from_pylist(
            [{"reason": r.reason, "detail": r.detail, "event_id": r.event_id, "topic": t,
              "kafka_partition": p, "kafka_offset": o, "batch_index": r.index, "raw": r.raw}
             for r, t, p, o in dl], schema=DEADLETTER_SCHEMA) if dl else None
        await self.lander.write(offsets, events=events_table(evs, spans, parts, offs),
                                deadletters=dl_table)
        metrics.count_records(len(fresh))
        metrics.count_events(collections.Counter(e["type"] for e in evs))
        metrics.add_rows("events", len(evs))
        metrics.add_rows("deadletters", len(dl))
        for r, t, p, o in dl:
            metrics.count_deadletters(r.reason)
            await ctx.topics.deadletter.send(
                key=(r.event_id or f"{t}/{p}/{o}").encode(), value=r.raw,
                headers=deadletter_headers(r.reason, r.detail, t, p, o, r.index, r.event_id))


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
                await ctx.topics.deadletter.send(
                    key=None, value=fe.value if isinstance(fe.value, bytes) else b"",
                    headers=deadletter_headers("invalid_kpi", repr(exc), m.topic, m.partition,
                                               m.offset, None, None))
                continue
            row["kafka_partition"] = m.partition
            row["kafka_offset"] = m.offset
            rows.append({c: row.get(c) for c in KPI_COLUMNS})
        table = pa.Table.from_pylist(rows, schema=KPI_SCHEMA) if rows else None
        await self.lander.write(offsets, kpis=table)
        ctx.metrics.add_rows("kpis", len(rows))


def register(app: Any, ctx: PipelineContext) -> None:
    # The landers are built when an agent (re)starts, so they read the stored offsets then.

    @app.agent(ctx.topics.events, name="agentflux.history.events")
    async def land_events(stream: Any) -> None:
        await _consume(stream, ctx, "history.events", EventHistory(ctx).land)

    @app.agent(ctx.topics.kpis, name="agentflux.history.kpis")
    async def land_kpis(stream: Any) -> None:
        await _consume(stream, ctx, "history.kpis", KpiHistory(ctx).land)

    @app.timer(interval=3600.0, on_leader=False)
    async def apply_retention() -> None:
        loop = asyncio.get_running_loop()
        days = ctx.settings.retention_days
        await loop.run_in_executor(ctx.db_executor, ctx.history.apply_retention, days)
