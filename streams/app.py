"""The Faust app: read_committed, a bounded stop, credentials, topics.

Nothing happens at import time; :func:`build_app` builds the app, and the composition root
(:mod:`agentflux.worker`) registers the agents on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentflux.config import ConfigError, Settings



def _bounded_stop_worker() -> Any:
    import logging
    import os
    import threading

    import faust

    class BoundedStopWorker(faust.Worker):
        """A Faust worker whose stop on SIGTERM/SIGINT is bounded in time.

        Faust's graceful stop commits offsets and flushes the producer; with the broker
        unreachable it retries for minutes and the process ignores further signals. Landing is
        exactly-once through the history's segments, so exiting without Faust's commit
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


# The longest a fetch may wait at the broker for data (aiokafka's ``fetch_max_wait_ms``; Faust
# fixes it at 1,500 ms). aiokafka sends one fetch per broker at a time, for the partitions whose
# fetched records have been consumed; when the events partitions' records are still being
# consumed (an agent was busy for a moment), the next fetch holds only the quiet partitions (the
# KPI topic's), and the broker keeps it until data comes or this wait ends, so the events
# partitions are not fetched meanwhile. With Faust's 1,500 ms every KPI landing of ~0.2 s cost
# the events stream a gap of ~1.4 s (freshness p99 3 s at 10,000 events/s; 1.5 s with this).
FETCH_MAX_WAIT_MS = 100


def _consumer_settings() -> None:
    """Make Faust's worker consumer read with isolation level ``read_committed`` and wait at
    most :data:`FETCH_MAX_WAIT_MS` per fetch.

    Faust reads uncommitted records unless the app itself is transactional, so records of a
    transaction its producer aborted would land. Faust builds the aiokafka consumer in
    ``_create_worker_consumer``; aiokafka reads both settings when the consumer starts, so
    setting them on the built consumer is enough (idempotent: patched once per process)."""
    from faust.transport.drivers import aiokafka as driver

    cls = driver.AIOKafkaConsumerThread
    if getattr(cls, "_agentflux_consumer_settings", False):
        return
    create = cls._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._isolation_level = "read_committed"
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    cls._create_worker_consumer = _create_worker_consumer
    cls._agentflux_consumer_settings = True


@dataclass(frozen=True)
class AppTopics:
    events: Any
    kpis: Any
    alerts: Any
    deadletter: Any
    predictions: Any = None
    pool_commands: Any = None


def _broker_credentials(settings: Settings) -> Any:
    """Faust's credentials, derived from the one mapping of settings to Kafka client arguments
    (:meth:`Settings.kafka_client_kwargs`), so the worker connects exactly as every other
    client does."""
    import faust

    kw = settings.kafka_client_kwargs()
    if kw.get("sasl_mechanism"):
        return faust.SASLCredentials(username=kw["sasl_plain_username"],
                                     password=kw["sasl_plain_password"],
                                     mechanism=kw["sasl_mechanism"],
                                     ssl_context=kw.get("ssl_context"))
    if kw.get("ssl_context") is not None:
        return faust.SSLCredentials(kw["ssl_context"])
    return None


def _faust_dir(settings: Settings) -> Any:
    d = settings.state_dir / "faust"
    d.mkdir(parents=True, exist_ok=True)
    return d


def build_app(settings: Settings) -> tuple[Any, AppTopics]:
    """The worker's Faust app and its topics, with no agent registered (the composition root,
    :mod:`agentflux.worker`, registers them)."""
    import faust

    if not settings.bootstrap_servers:
        raise ConfigError("no Kafka broker configured: run `agentflux up`, or set "
                          "KAFKA_BOOTSTRAP_SERVERS=host:port")
    _consumer_settings()
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.bootstrap_servers.split(","))
    app = faust.App(
        settings.app_id,
        broker=brokers,
        broker_credentials=_broker_credentials(settings),
        store="memory://",
        # Faust's own directory (empty with the memory store): one under the state dir, not one
        # per app id in the working directory
        datadir=str(_faust_dir(settings)),
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
        # Landing is exactly-once through the history's segments, so shutdown need not wait
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
        # raw: a take() batch of records is decoded whole (agents/events.py)
        events=app.topic(t.events, value_serializer="raw", key_serializer="raw",
                         partitions=t.events_partitions),
        kpis=app.topic(t.kpis, value_serializer="raw", key_serializer="raw"),
        alerts=app.topic(t.alerts, value_serializer="raw", key_serializer="raw"),
        deadletter=app.topic(t.deadletter, value_serializer="raw", key_serializer="raw"),
        predictions=app.topic(t.predictions, value_serializer="raw", key_serializer="raw"),
        pool_commands=app.topic(t.pool_commands, value_serializer="raw", key_serializer="raw"),
    )
    return app, topics
