"""The Faust app factory. Nothing happens at import time; :func:`create_app` builds the app."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from agentflux.config import ConfigError, Settings
from agentflux.sinks.duckdb import DuckDBHistory
from agentflux.sinks.prometheus import PipelineMetrics
from agentflux.streams.codec import decode_record
from agentflux.streams.context import PipelineContext
from agentflux.streams.windows import TumblingWindows

BATCH_CODEC = "agentflux-batch"


def _batch_codec(max_record_bytes: int) -> Any:
    from faust.serializers.codecs import Codec

    class BatchCodec(Codec):
        """Decodes a record into a DecodedBatch; never raises (bad input becomes data)."""

        def _loads(self, s: bytes) -> Any:
            return decode_record(s, max_record_bytes)

        def _dumps(self, obj: Any) -> bytes:
            return obj if isinstance(obj, bytes) else bytes(obj)

    return BatchCodec()


def _bounded_stop_worker() -> Any:
    import logging
    import os
    import threading

    import faust

    class BoundedStopWorker(faust.Worker):
        """A Faust worker whose stop on SIGTERM/SIGINT is bounded in time.

        Faust's graceful stop commits offsets and flushes the producer; with the broker
        unreachable it retries for minutes and the process ignores further signals. Landing is
        exactly-once through the history's stored offsets, so exiting without Faust's commit
        loses nothing: after ``stop_timeout_s`` (or at a second signal) the process exits."""

        def __init__(self, *args: Any, stop_timeout_s: float = 15.0, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.stop_timeout_s = stop_timeout_s

        def _schedule_shutdown(self, signal: Any) -> None:
            if self._signal_stop_time:  # a second signal: stop now
                self._exit_now(f"second {signal.name}")
            super()._schedule_shutdown(signal)
            timer = threading.Timer(self.stop_timeout_s, self._exit_now,
                                    (f"stop took longer than {self.stop_timeout_s:g} s "
                                     "(broker unreachable?)",))
            timer.daemon = True
            timer.start()

        @staticmethod
        def _exit_now(why: str) -> None:
            logging.getLogger("agentflux.worker").warning(
                "%s: exiting now; nothing is lost, the history resumes after its last landed "
                "offsets", why)
            logging.shutdown()
            os._exit(0)

    return BoundedStopWorker


def __getattr__(name: str) -> Any:  # BoundedStopWorker imports faust only when used
    if name == "BoundedStopWorker":
        return _bounded_stop_worker()
    raise AttributeError(name)


def _read_committed() -> None:
    """Make Faust's worker consumer read with isolation level ``read_committed``.

    Faust reads uncommitted records unless the app itself is transactional, so records of a
    transaction its producer aborted would land. Faust builds the aiokafka consumer in
    ``_create_worker_consumer``; aiokafka reads the isolation level when the consumer starts, so
    setting it on the built consumer is enough (idempotent: patched once per process)."""
    from faust.transport.drivers import aiokafka as driver

    cls = driver.AIOKafkaConsumerThread
    if getattr(cls, "_agentflux_read_committed", False):
        return
    create = cls._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._isolation_level = "read_committed"
        return consumer

    cls._create_worker_consumer = _create_worker_consumer
    cls._agentflux_read_committed = True


@dataclass(frozen=True)
class AppTopics:
    events: Any
    kpis: Any
    deadletter: Any


def _broker_credentials(settings: Settings) -> Any:
    import faust

    if settings.sasl_mechanism:
        pw = settings.sasl_password.get_secret_value() if settings.sasl_password else None
        ssl_context = None
        if settings.security_protocol == "SASL_SSL":
            import ssl
            ssl_context = ssl.create_default_context(cafile=settings.ssl_cafile)
        return faust.SASLCredentials(username=settings.sasl_username, password=pw,
                                     mechanism=settings.sasl_mechanism, ssl_context=ssl_context)
    if settings.security_protocol == "SSL":
        import ssl
        return faust.SSLCredentials(ssl.create_default_context(cafile=settings.ssl_cafile))
    return None


def create_app(settings: Settings, *, metrics: PipelineMetrics | None = None,
               history: DuckDBHistory | None = None, windows: TumblingWindows | None = None,
               batch_records: int = 20) -> Any:
    """Build the worker's Faust app with the timing and history agents registered."""
    import faust
    from faust.serializers import codecs

    from agentflux.agents import history as history_agent
    from agentflux.agents import timing as timing_agent

    if not settings.bootstrap_servers:
        raise ConfigError("no Kafka broker configured: run `agentflux up`, or set "
                          "KAFKA_BOOTSTRAP_SERVERS=host:port")
    codecs.register(BATCH_CODEC, _batch_codec(settings.max_record_bytes))
    _read_committed()
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.bootstrap_servers.split(","))
    app = faust.App(
        settings.app_id,
        broker=brokers,
        broker_credentials=_broker_credentials(settings),
        store="memory://",
        autodiscover=False,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_disable_leader=True,
        topic_replication_factor=settings.topics.replication_factor,
        topic_partitions=settings.topics.partitions,
        consumer_auto_offset_reset="earliest",
        # per-partition fetch size: a soft limit (a larger record still comes through); it bounds
        # how much undecoded data the consumer holds ahead of the agents
        consumer_max_fetch_size=2 * 1024 * 1024,
        producer_max_request_size=16 * 1024 * 1024,
        stream_buffer_maxsize=8,
        broker_commit_interval=1.0,
        # Landing is exactly-once through the offsets stored in DuckDB, so shutdown need not wait
        # for take() buffers that a rebalance orphaned (Faust would wait for their acks forever).
        stream_wait_empty=False,
        # A worker killed with -9 holds its partitions until its session times out: keep the
        # stall after a crash short (Faust's default is 60 s).
        broker_session_timeout=10.0,
        # A group rebalance that happens while a restarted broker still reports the topics
        # without partitions assigns nothing; the consumer rejoins once its metadata shows the
        # partitions again. Refresh it every 5 s, not every 5 min (Faust's default): otherwise a
        # worker sits idle for up to 5 minutes after a broker restart.
        consumer_metadata_max_age_ms=5000,
        broker_heartbeat_interval=2.0,
        key_serializer="raw",
        value_serializer="raw",
    )
    t = settings.topics
    topics = AppTopics(
        events=app.topic(t.events, value_serializer=BATCH_CODEC, key_serializer="raw",
                         partitions=t.events_partitions),
        kpis=app.topic(t.kpis, value_serializer="raw", key_serializer="raw"),
        deadletter=app.topic(t.deadletter, value_serializer="raw", key_serializer="raw"),
    )
    ctx = PipelineContext(
        settings=settings,
        metrics=metrics if metrics is not None else PipelineMetrics(),
        history=history if history is not None else DuckDBHistory(settings.duckdb_path),
        windows=windows if windows is not None else TumblingWindows(
            settings.window_s, settings.grace_s, max_future_skew_s=settings.max_future_skew_s),
        batch_records=batch_records,
        topics=topics,
    )
    app.agentflux = ctx
    timing_agent.register(app, ctx)
    history_agent.register(app, ctx)

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

    return app
