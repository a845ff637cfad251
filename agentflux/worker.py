"""The composition root of the worker: the Faust app with its context and every agent.

``streams/`` builds the app and the stream machinery, ``agents/`` holds the processors; only this
module knows both, so ``streams/`` never imports ``agents/``.
"""

from __future__ import annotations

from typing import Any

from agentflux.config import Settings
from agentflux.sinks.duckdb import DuckDBHistory
from agentflux.sinks.prometheus import PipelineMetrics
from agentflux.streams.app import build_app
from agentflux.streams.context import PipelineContext
from agentflux.streams.windows import TumblingWindows


def create_app(settings: Settings, *, metrics: PipelineMetrics | None = None,
               history: DuckDBHistory | None = None,
               windows: TumblingWindows | None = None) -> Any:
    """The worker's Faust app with the event pipeline, KPI landing and lag agents registered."""
    from agentflux.agents import events, history as history_agents, lag, timing

    app, topics = build_app(settings)
    ctx = PipelineContext(
        settings=settings,
        metrics=metrics if metrics is not None else PipelineMetrics(),
        history=history if history is not None else DuckDBHistory(settings.duckdb_path),
        windows=windows if windows is not None else TumblingWindows(
            settings.window_s, settings.grace_s, max_future_skew_s=settings.max_future_skew_s),
        topics=topics,
    )
    app.agentflux = ctx
    timer = timing.Timing(ctx)
    events.register(app, ctx, timer)
    timing.register(app, ctx, timer)
    history_agents.register(app, ctx)
    lag.register(app, ctx)
    return app
