"""The hot path: one Faust agent consumes ``agentflux.events`` and runs every processor on it.

Each batch of records (bounded by events, see :mod:`agentflux.streams.batching`) is decoded once
per record by the codec, turned into one columnar :class:`~agentflux.streams.frame.EventFrame`,
de-duplicated, and then handed to the processors: the history lands it (a DuckDB transaction in
its own thread) while the timing windows and Prometheus histograms are updated on the event loop.
Later processors (KPIs, failure patterns, predictor) take the same frame.

Only records the history has not landed yet are processed, so after a kill -9 and restart a
record redelivered by Kafka neither lands nor counts in a window twice. Any failure of the
worker itself stops the process before the batch is acked (see ``fail_stop``).
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from agentflux.agents.history import EventHistory
from agentflux.agents.timing import Timing
from agentflux.streams.batching import take_bounded
from agentflux.streams.codec import as_batch
from agentflux.streams.context import PipelineContext, fail_stop
from agentflux.streams.frame import EventFrame


def _events_in(value: Any) -> int:
    return value.total if value is not None else 1


class EventPipeline:
    """Prepares batch N+1 (decode, frame, de-duplicate, timing) while batch N lands.

    One landing is in flight at a time, and a batch's events are acked only once the
    transaction holding them committed, so Kafka's committed offsets never pass the history's.
    """

    def __init__(self, ctx: PipelineContext, timing: Timing, stream: Any):
        self.ctx = ctx
        self.history = EventHistory(ctx)
        self.timing = timing
        self.stream = stream
        self.inflight: asyncio.Future | None = None

    async def handle(self, batch: Sequence[Any]) -> None:
        ctx, history = self.ctx, self.history
        for fe in batch:
            m = fe.message
            ctx.processed[(m.topic, m.partition)] = m.offset
        fresh, offsets = history.lander.fresh(batch)
        if not fresh:
            await self.flush()  # acks stay in order behind the batch in flight
            await self._ack(batch)
            return
        records, deadletters = [], []
        limit = ctx.settings.max_record_bytes
        for fe in fresh:
            d, m = as_batch(fe.value, limit), fe.message
            if d.events:
                records.append((d, m.partition, m.offset))
            if d.rejected:
                deadletters += [(r, m.topic, m.partition, m.offset) for r in d.rejected]
        frame = EventFrame.build(records)
        frame, duplicates = await history.deduplicate(frame)
        await self.flush()
        self.inflight = asyncio.ensure_future(
            self._land(batch, frame, len(fresh), deadletters, offsets, duplicates))
        self.timing.add(frame)  # on the event loop while the transaction runs in its thread

    async def _land(self, batch: Sequence[Any], frame: EventFrame, records: int,
                    deadletters: list, offsets: dict, duplicates: Any) -> None:
        await self.history.land(frame, deadletters, offsets, duplicates)
        self.history.landed(frame, records, deadletters, duplicates)
        await self._ack(batch)
        await self.timing.publish()

    async def _ack(self, batch: Sequence[Any]) -> None:
        for fe in batch:
            await self.stream.ack(fe)

    async def flush(self) -> None:
        """Wait for the landing in flight (its failure stops the worker)."""
        if self.inflight is not None:
            inflight, self.inflight = self.inflight, None
            await inflight


def register(app: Any, ctx: PipelineContext, timing: Timing) -> None:
    @app.agent(ctx.topics.events, name="agentflux.events")
    async def events(stream: Any) -> None:
        # built when the agent (re)starts, so the history's stored offsets are read then
        pipeline = EventPipeline(ctx, timing, stream)
        batches = take_bounded(stream, max_events=ctx.batch_events,
                               max_records=ctx.batch_records, within=ctx.batch_within_s,
                               size=_events_in, ack=False)
        stream._active_agens.add(batches)  # Faust closes it when the stream stops
        try:
            async for batch in batches:
                await pipeline.handle(batch)
                if pipeline.inflight is not None and not _full(batch, ctx):
                    # a partial batch: the stream is not backlogged, so land it now rather
                    # than when the next batch comes (freshness)
                    await pipeline.flush()
        except Exception as exc:
            fail_stop("events", exc)
        finally:
            # stopped or cancelled (a rebalance restarts the agent): the landing in flight
            # completes before a new pipeline reads the stored offsets
            if pipeline.inflight is not None:
                try:
                    await asyncio.shield(pipeline.flush())
                except Exception as exc:
                    fail_stop("events", exc)


def _full(batch: Sequence[Any], ctx: PipelineContext) -> bool:
    return (len(batch) >= ctx.batch_records
            or sum(_events_in(fe.value) for fe in batch) >= ctx.batch_events)
