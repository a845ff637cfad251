"""Consumer lag of the events topic, counted from what has landed in the history."""

from __future__ import annotations

import asyncio
from typing import Any

from agentflux.streams.context import PipelineContext


def register(app: Any, ctx: PipelineContext) -> None:
    settings = ctx.settings
    t = settings.topics
    offsets_client: list = []  # a consumer of its own, only for asking where logs end

    async def log_bounds(tps: list) -> tuple[dict, dict]:
        """(end, start) offsets per partition, asked of the broker now. Not through Faust's
        consumer: its requests run on the consumer thread, and a slow answer there (a broker
        restarting) would hold up fetching."""
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import TopicPartition

        if not offsets_client:
            c = AIOKafkaConsumer(**settings.kafka_client_kwargs(), group_id=None,
                                 enable_auto_commit=False, isolation_level="read_committed",
                                 request_timeout_ms=5000)
            await c.start()
            offsets_client.append(c)
        c = offsets_client[0]
        parts = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        ends = await c.end_offsets(parts)
        starts = await c.beginning_offsets(parts)
        return ({(p.topic, p.partition): o for p, o in ends.items()},
                {(p.topic, p.partition): o for p, o in starts.items()})

    @app.timer(interval=1.0)
    async def report_lag() -> None:
        """Lag = records of the events topic not landed in the history yet, per partition: the
        end of the log (as the broker reports it now, not a cached high watermark) minus the
        next offset to land. While the broker cannot be asked, the last figure stays."""
        consumer = app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic == t.events]
        if not tps:
            return
        try:
            ends, starts = await asyncio.wait_for(log_bounds(tps), 5.0)
        except Exception:  # broker unreachable: keep the last figures rather than report 0
            return
        for tp in tps:
            key = (tp.topic, tp.partition)
            end = ends.get(key)
            if end is None:
                continue
            ctx.log_ends[key] = end
            landed = ctx.landed.get(key)
            nxt = max(landed + 1 if landed is not None else 0, starts.get(key) or 0)
            lag = max(0, end - nxt)
            if lag and landed is not None and consumer._read_offset.get(tp) == landed:
                # everything fetched has landed; if the consumer's position is at the end, what
                # remains are transaction markers (offsets that carry no record)
                try:
                    pos = await asyncio.wait_for(consumer.position(tp), 2.0)
                except Exception:
                    pos = None
                if pos is not None and pos >= end:
                    lag = 0
            ctx.metrics.set_lag(tp.topic, tp.partition, lag)

    @app.on_before_shutdown.connect
    async def close_offsets_client(sender: Any, **kwargs: Any) -> None:
        while offsets_client:
            await offsets_client.pop().stop()
