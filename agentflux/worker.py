"""The composition root of the worker: the Faust app with its context and every agent.

``streams/`` builds the app and the stream machinery, ``agents/`` holds the processors; only this
module knows both, so ``streams/`` never imports ``agents/``.
"""

from __future__ import annotations

import os
from typing import Any

from agentflux.config import Settings
from agentflux.sinks.history import History, log_id
from agentflux.sinks.tables import TABLES
from agentflux.sinks.prometheus import PipelineMetrics
from agentflux.streams.app import build_app
from agentflux.streams.context import PipelineContext
from agentflux.streams.windows import TumblingWindows


def tune_memory() -> str:
    """Make the long-running worker's RSS follow its working set instead of its past peaks.

    - Arrow's buffers on jemalloc (unless ``ARROW_DEFAULT_MEMORY_POOL`` chooses): it hands freed
      pages back within about a second, where pyarrow's default (mimalloc) keeps them. A
      compaction merge of 2,000,000 rows left the process 30 MB larger with mimalloc and 13 MB
      smaller with jemalloc three seconds later.
    - glibc's malloc (numpy arrays, Python objects): a fixed mmap threshold of 256 KiB, so a
      batch's large arrays are mapped and unmapped instead of carving the heap (glibc raises
      the threshold after the first free, up to 32 MiB, and the heap then keeps the high-water
      mark of every batch size), and at most 4 arenas for the worker's threads.
    Returns Arrow's pool backend."""
    import ctypes
    import ctypes.util

    import pyarrow as pa

    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        try:
            pa.set_memory_pool(pa.jemalloc_memory_pool())
        except NotImplementedError:  # a pyarrow built without jemalloc
            pass
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 256 * 1024)
        libc.mallopt(_M_ARENA_MAX, 4)
    except (OSError, AttributeError):  # not glibc: its allocator has its own policy
        pass
    return pa.default_memory_pool().backend_name


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_M_ARENA_MAX = -8


def create_app(settings: Settings, *, metrics: PipelineMetrics | None = None,
               history: History | None = None, windows: TumblingWindows | None = None,
               identities: dict | None = None) -> Any:
    """The worker's Faust app with the event pipeline, KPI landing and lag agents registered.

    ``identities``: ``{topic: LogIdentity}`` (:func:`agentflux.streams.kafkameta.log_identities`)
    names the log each topic's offsets count in; the history's segments carry it."""
    from agentflux.agents import events, history as history_agents, lag, timing

    app, topics = build_app(settings)
    ctx = PipelineContext(
        settings=settings,
        metrics=metrics if metrics is not None else PipelineMetrics(),
        history=history if history is not None else History(settings.history_path),
        windows=windows if windows is not None else TumblingWindows(
            settings.window_s, settings.grace_s, max_future_skew_s=settings.max_future_skew_s),
        topics=topics,
        logs={t: log_id(i.cluster_id, i.topic_id) for t, i in (identities or {}).items()},
    )
    app.agentflux = ctx
    for table in TABLES:  # rows in the history as this worker starts; it adds what it lands
        ctx.metrics.set_rows(table, ctx.history.count(table))
    timer = timing.Timing(ctx)
    events.register(app, ctx, timer)
    timing.register(app, ctx, timer)
    history_agents.register(app, ctx)
    lag.register(app, ctx)
    return app
