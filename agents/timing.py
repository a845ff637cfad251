"""Timing: RED metrics per (event type, tool or model, philosophy) in tumbling windows.

Every frame of landed events updates the open windows (count, errors, a DDSketch of durations)
and the Prometheus span histogram, vectorised per (window, key) group; a timer closes due windows
and publishes one row per window and key to ``agentflux.kpis`` (key ``type|name|philosophy``,
value JSON with p50/p90/p95/p99 and the mergeable sketch).
"""

from __future__ import annotations

from typing import Any

import logging

import numpy as np
import orjson

from agentflux.streams.context import PipelineContext
from agentflux.streams.frame import EventFrame

log = logging.getLogger("agentflux.timing")


class Timing:
    def __init__(self, ctx: PipelineContext):
        self.ctx = ctx
        self.windows = ctx.windows
        self._reported = {"early": 0, "late": 0}
        self.closed = False  # after the final flush at shutdown: the producer is stopping
        self._pending: list = []  # closed window rows not sent yet

    def add(self, frame: EventFrame) -> None:
        if not frame.n:
            return
        key_index, keys = frame.spans()
        observe = self.ctx.metrics.observe_many

        def on_durations(span: tuple, durations_ms: np.ndarray) -> None:
            observe(*span, durations_ms / 1000.0)

        self.windows.add_columns(frame.ts, key_index, keys, frame.duration_ms, frame.error,
                                 on_durations)

    async def publish(self, flush_all: bool = False) -> None:
        """Close the due windows (all of them with ``flush_all``) and publish their rows.

        A row that cannot be sent is kept and sent at the next call, not dropped and not a crash
        of the app: Faust marks its producer service started before the Kafka producer exists
        (a restarted worker's agents may already be processing then), and sends in that gap, or
        while it closes, raise."""
        if self.closed or self.ctx.settings.replay:  # a replay's windows are on the topic already
            return
        ctx, windows, metrics = self.ctx, self.windows, self.ctx.metrics
        self._pending += windows.close_due(flush_all=flush_all)
        self.closed = flush_all
        for kind, before in self._reported.items():
            n = getattr(windows, f"{kind}_events")
            if n != before:
                metrics.count_event_time(kind, n - before)
                self._reported[kind] = n
        # taken out of the shared list before any await: the timer and the landing both call
        # this, and a row must go out once
        rows, self._pending = self._pending, []
        sent = 0
        try:
            for row in rows:
                await ctx.topics.kpis.send(key=row.key.encode(),
                                           value=orjson.dumps(row.to_dict(ctx.worker)))
                sent += 1
        except Exception as exc:  # NotReady / ProducerSendError around a start or a stop
            log.warning("%d KPI rows not published yet (%r); retrying", len(rows) - sent, exc)
            self._pending[:0] = rows[sent:]
        finally:
            if sent:
                metrics.count_kpi_windows(sent)
            metrics.set_open_windows(windows.open_windows)


def register(app: Any, ctx: PipelineContext, timing: Timing) -> None:
    """The timers: close windows every 0.5 s; publish the open ones as partial rows at shutdown."""

    @app.timer(interval=0.5)
    async def close_windows() -> None:
        if app.should_stop:  # stopping: the final flush below publishes what is open
            return
        await timing.publish()

    @app.on_before_shutdown.connect
    async def publish_open_windows(sender: Any, **kwargs: Any) -> None:
        # Sent after the consumer stopped and before the producer flushes: the open windows go
        # out as partial rows (a later revision of the same window adds to them).
        await timing.publish(flush_all=True)
