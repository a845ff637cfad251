"""What a worker's agents share: settings, metrics, the history, the windows."""

from __future__ import annotations

import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agentflux.config import Settings
from agentflux.sinks.history import NO_LOG, History
from agentflux.sinks.prometheus import PipelineMetrics
from agentflux.streams.windows import TumblingWindows


@dataclass
class PipelineContext:
    settings: Settings
    metrics: PipelineMetrics
    history: History
    windows: TumblingWindows
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    # a take() of the events topic is full at this many events or records; the longest a
    # partial batch waits
    batch_events: int = 20_000
    batch_records: int = 1_000
    batch_within_s: float = 0.2
    # segment writes run here, one at a time, so the event loop keeps consuming meanwhile
    history_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="agentflux-history"))
    # the native decoder runs here (it releases the GIL), so the event loop keeps consuming
    # and landing KPIs while a batch is decoded
    decode_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="agentflux-decode"))
    # compaction and retention, beside the landing (never in its way)
    upkeep_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="agentflux-upkeep"))
    topics: Any = None  # AppTopics, set by the app factory
    # the OTLP span export (sinks.otlp.SpanExport) when one is configured: offered each batch
    spans: Any = None
    # topic -> the log its offsets count in (sinks.history.log_id of its cluster and topic id)
    logs: dict = field(default_factory=dict)
    # topic -> its number of partitions, as the broker reported it at start (where known)
    partitions: dict = field(default_factory=dict)
    # (topic, partition) -> last offset received by the history agent / landed in the history
    processed: dict = field(default_factory=dict)
    landed: dict = field(default_factory=dict)
    # (topic, partition) -> the end of its log, as last asked of the broker (the lag agent)
    log_ends: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # start the executors' threads now, not at their first task: a thread started later
        # can take the identity (pthread id) of a /metrics request thread that just ended, and
        # a sampling profiler then shows the history's writes under that thread's name
        for executor in (self.history_executor, self.decode_executor, self.upkeep_executor):
            executor.submit(int).result()

    def log_of(self, topic: str) -> str:
        return self.logs.get(topic, NO_LOG)


def fail_stop(where: str, exc: BaseException) -> None:
    """Stop the worker process at once, before Faust acks the batch that failed.

    A Faust agent that raises has its buffered events acked (and then committed) while the
    supervisor restarts it, which silently drops them. Bad *input* never gets here (it is data,
    routed to the dead-letter topic); this is for failures of the worker itself (a full disk, a
    bug). Exiting without acking means Kafka redelivers the batch to the restarted worker.
    """
    logging.getLogger("agentflux.worker").critical(
        "fail-stop in %s: %r; exiting so that the batch is redelivered", where, exc, exc_info=exc)
    logging.shutdown()
    os._exit(70)
