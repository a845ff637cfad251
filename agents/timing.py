"""Timing: RED metrics per (event type, tool or model, philosophy) in tumbling windows.

Every batch updates the open windows (count, errors, a DDSketch of durations) and the Prometheus
span histogram; a timer closes due windows and publishes one row per window and key to
``agentflux.kpis`` (key ``type|name|philosophy``, value JSON with p50/p90/p95/p99 and the
mergeable sketch).
"""

from __future__ import annotations

from typing import Any

import orjson

from agentflux.streams.codec import as_batch
from agentflux.streams.context import PipelineContext, fail_stop


def register(app: Any, ctx: PipelineContext) -> None:
    windows, metrics, topics = ctx.windows, ctx.metrics, ctx.topics

    def observe(span: tuple[str, str, str], durations_ms: list) -> None:
        metrics.observe_many(*span, [d / 1000.0 for d in durations_ms])

    reported = {"early": 0, "late": 0}

    async def publish(rows: list) -> None:
        for kind in reported:
            n = getattr(windows, f"{kind}_events")
            if n != reported[kind]:
                metrics.count_event_time(kind, n - reported[kind])
                reported[kind] = n
        for row in rows:
            await topics.kpis.send(key=row.key.encode(),
                                   value=orjson.dumps(row.to_dict(ctx.worker)))
        if rows:
            metrics.count_kpi_windows(len(rows))
        metrics.set_open_windows(windows.open_windows)

    @app.agent(topics.events, name="agentflux.timing")
    async def timing(stream: Any) -> None:
        async for batch in stream.take(ctx.batch_records, within=ctx.batch_within_s):
            try:
                for value in batch:
                    decoded = as_batch(value, ctx.settings.max_record_bytes)
                    if decoded.events:
                        windows.add(decoded.events, decoded.spans(), on_durations=observe)
                await publish(windows.close_due())
            except Exception as exc:
                fail_stop("timing", exc)

    @app.timer(interval=0.5)
    async def close_windows() -> None:
        await publish(windows.close_due())

    @app.on_before_shutdown.connect
    async def publish_open_windows(sender: Any, **kwargs: Any) -> None:
        # Sent after the consumer stopped and before the producer flushes: the open windows go
        # out as partial rows (a later revision of the same window adds to them).
        await publish(windows.close_due(flush_all=True))

