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
    def __init__(self, ctx: PipelineContext, timing: Timing):
        self.ctx = ctx
        self.history = EventHistory(ctx)
        self.timing = timing

    async def handle(self, batch: Sequence[Any]) -> None:
        ctx, history = self.ctx, self.history
        for fe in batch:
            m = fe.message
            ctx.processed[(m.topic, m.partition)] = m.offset
        fresh, offsets = history.lander.fresh(batch)
        if not fresh:
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
        frame, duplicates, remember = await history.deduplicate(frame)
        landing = asyncio.ensure_future(history.land(frame, deadletters, offsets, duplicates))
        try:
            self.timing.add(frame)  # on the event loop while the transaction runs in its thread
        finally:
            await landing
        history.landed(frame, len(fresh), deadletters, duplicates, remember)
        await self.timing.publish()


def register(app: Any, ctx: PipelineContext, timing: Timing) -> None:
    @app.agent(ctx.topics.events, name="agentflux.events")
    async def events(stream: Any) -> None:
        # built when the agent (re)starts, so the history's stored offsets are read then
        pipeline = EventPipeline(ctx, timing)
        batches = take_bounded(stream, max_events=ctx.batch_events,
                               max_records=ctx.batch_records, within=ctx.batch_within_s,
                               size=_events_in)
        stream._active_agens.add(batches)  # Faust closes it when the stream stops
        async for batch in batches:
            try:
                await pipeline.handle(batch)
            except Exception as exc:
                fail_stop("events", exc)
