"""The composition root of the worker: the Faust app with its context and every agent.

``streams/`` builds the app and the stream machinery, ``agents/`` holds the processors; only this
module knows both, so ``streams/`` never imports ``agents/``.
"""

from __future__ import annotations

from typing import Any

from agentflux.config import ConfigError, Settings
from agentflux.sinks.history import History, log_id
from agentflux.sinks.tables import TABLES
from agentflux.sinks.prometheus import PipelineMetrics
from agentflux.streams.app import build_app
from agentflux.streams.context import PipelineContext
from agentflux.streams.windows import TumblingWindows


def create_app(settings: Settings, *, metrics: PipelineMetrics | None = None,
               history: History | None = None, windows: TumblingWindows | None = None,
               identities: dict | None = None) -> Any:
    """The worker's Faust app with the event pipeline, KPI landing and lag agents registered.

    ``identities``: ``{topic: LogIdentity}`` (:func:`agentflux.streams.kafkameta.log_identities`)
    names the log each topic's offsets count in; the history's segments carry it."""
    from agentflux.agents import alerting, events, failures, history as history_agents, kpis, lag
    from agentflux.agents.loop import ClosedLoop

    app, topics = build_app(settings)
    ctx = PipelineContext(
        settings=settings,
        metrics=metrics if metrics is not None else PipelineMetrics(),
        history=history if history is not None else History(settings.history_path),
        windows=windows if windows is not None else TumblingWindows(
            settings.window_s, settings.grace_s, max_future_skew_s=settings.max_future_skew_s,
            dimensions=settings.kpi_dimensions),
        topics=topics,
        logs={t: log_id(i.cluster_id, i.topic_id) for t, i in (identities or {}).items()},
        partitions={t: i.partitions for t, i in (identities or {}).items() if i.partitions},
    )
    app.agentflux = ctx
    for table in TABLES:  # rows in the history as this worker starts; it adds what it lands
        ctx.metrics.set_rows(table, ctx.history.count(table))
    windows_agent = kpis.Kpis(ctx)
    held = events.register(app, ctx, windows_agent)
    kpis.register(app, ctx, windows_agent, held)
    try:
        rules = failures.load_rules(settings.failure_rules)
    except ValueError as exc:  # the message names the key and the fix
        raise ConfigError(f"failure rules: {exc}") from None
    sinks = alerting.alert_sinks(ctx)
    history_agents.register(app, ctx, alerting.Alerting(ctx, rules, sinks),
                            ClosedLoop(ctx))
    register_sinks(app, sinks)
    if settings.otlp is not None and not settings.replay:
        register_span_export(app, ctx, settings.otlp)
    lag.register(app, ctx)
    return app


def register_span_export(app: Any, ctx: PipelineContext, otlp: Any) -> None:
    """Export the event stream as OTLP spans (:mod:`agentflux.sinks.otlp`): its process starts
    with the app; at shutdown, what is queued and the open sessions' roots get one bounded
    flush (the rest is counted as dropped)."""
    from agentflux.sinks.otlp import SpanExportProcess

    ctx.spans = SpanExportProcess(otlp, ctx.metrics)

    @app.task
    async def start_span_export() -> None:
        ctx.spans.start()

    # Stopped after the agents: the events agent lands (and offers) what it holds as it stops,
    # after the app's on_before_shutdown; Faust has no signal for after, so the app's own
    # on_shutdown (mode's last step of stop()) is wrapped.
    app_on_shutdown = app.on_shutdown

    async def on_shutdown() -> None:
        import asyncio
        await app_on_shutdown()
        await asyncio.get_running_loop().run_in_executor(None, ctx.spans.stop, 5.0)

    app.on_shutdown = on_shutdown


def register_sinks(app: Any, sinks: list) -> None:
    """Start the alert delivery sinks with the app; at shutdown, one bounded flush."""
    if not sinks:
        return

    @app.task
    async def start_alert_sinks() -> None:
        for sink in sinks:
            await sink.start()

    @app.on_before_shutdown.connect
    async def stop_alert_sinks(sender: Any, **kwargs: Any) -> None:
        for sink in sinks:
            await sink.stop(timeout_s=5.0)
