"""The pipeline's resource predictions, inside an agent runtime.

The predictor publishes one prediction per philosophy (key ``react``) and per philosophy and
tool (key ``react/search``) to the compacted topic ``agentflux.predictions``: the latest value
per key is the current prediction. :class:`PredictionSubscriber` reads that topic from its
start (no consumer group: every runtime reads all of it; compaction keeps it short) on a daemon
thread with an asyncio loop of its own, and keeps the latest prediction per key in a dict under
a lock, so :meth:`~PredictionSubscriber.latest` is a dict look-up that never waits on Kafka and
never blocks the caller's event loop. ``wait_ready`` returns once it has read up to the end
offsets the topic had when it started.

A value that is not a prediction document (not JSON, no ``recommendation``, a non-numeric
target) is ignored and counted (``malformed``); an empty value (a compaction tombstone) removes
the key.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from typing import Any

import orjson

from agentflux.config import Settings

log = logging.getLogger(__name__)

SPEC_KEYS = ("cpu_percent", "memory_mb", "execution_time_seconds")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_prediction(doc: Any) -> str | None:
    """None if ``doc`` is a usable prediction document; else what is wrong."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    if doc.get("v") != 1:
        return f"unknown version {doc.get('v')!r}"
    if not isinstance(doc.get("philosophy"), str) or not doc["philosophy"]:
        return "no philosophy"
    if doc.get("tool") is not None and not isinstance(doc["tool"], str):
        return "tool is not a string"
    rec = doc.get("recommendation")
    if not isinstance(rec, dict) or not rec:
        return "no recommendation"
    for name, bounds in rec.items():
        if not isinstance(bounds, dict) or not _number(bounds.get("target")):
            return f"recommendation {name!r} has no numeric target"
    if not _number(doc.get("issued_at_ns", 0)):
        return "issued_at_ns is not a number"
    return None


class PredictionSubscriber:
    """The latest prediction per key of ``settings.topics.predictions`` (see the module)."""

    def __init__(self, settings: Settings, *, topic: str | None = None):
        self.settings = settings
        self.topic = topic or settings.topics.predictions
        self._latest: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.error: BaseException | None = None
        self.records = 0
        self.malformed = 0

    # --- reading ---------------------------------------------------------------------------
    def latest(self, philosophy: str, tool: str | None = None) -> dict[str, Any] | None:
        """The latest prediction for ``philosophy`` (or its ``tool``), or None."""
        key = philosophy if tool is None else f"{philosophy}/{tool}"
        with self._lock:
            return self._latest.get(key)

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._latest)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def _take(self, key: bytes | None, value: bytes | None) -> None:
        self.records += 1
        if value is None or value == b"":  # a tombstone: the key is gone
            if key:
                with self._lock:
                    self._latest.pop(key.decode("utf-8", "replace"), None)
            return
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = None
        problem = check_prediction(doc)
        if problem is not None:
            self.malformed += 1
            log.debug("ignoring a malformed prediction (key %r): %s", key, problem)
            return
        # the record's key is what compaction keeps one value of; the document's own otherwise
        k = key.decode("utf-8", "replace") if key else (
            doc["key"] if isinstance(doc.get("key"), str) else
            doc["philosophy"] if doc.get("tool") is None else f"{doc['philosophy']}/{doc['tool']}")
        with self._lock:
            old = self._latest.get(k)
            # the log's order is the publication order per key; a document issued earlier
            # than the one held (a predictor restarted on an old clock) does not replace it
            if old is None or doc.get("issued_at_ns", 0) >= old.get("issued_at_ns", 0):
                self._latest[k] = doc

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> "PredictionSubscriber":
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="agentflux-predictions",
                                        daemon=True)
        self._thread.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once caught up to the end offsets the topic had at start (False after
        ``timeout``; an error of the consumer is raised)."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 0.05 if end is None else max(0.0, min(0.05, end - time.monotonic()))
            if self._ready.wait(step):
                return True
            if self.error is not None:
                raise self.error
            if end is not None and time.monotonic() >= end:
                return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the consumer and its thread (within ``timeout``)."""
        self._closing.set()  # seen by a thread that has not made its loop yet
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # kept for wait_ready; the runtime goes on with local ones
            self.error = exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
            log.warning("prediction subscriber stopped: %r", exc)

    async def _main(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._closing.is_set():
            return
        consumer = AIOKafkaConsumer(**self.settings.kafka_client_kwargs(), group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    client_id="agentflux-predictions")
        await consumer.start()
        try:
            parts = None
            while not parts:  # the topic may be created after the runtime starts
                # aiokafka has no public call that refreshes the metadata of a topic not
                # subscribed to; topics() returns a fresh copy without storing it
                await consumer._client.force_metadata_update()  # noqa: SLF001
                parts = consumer.partitions_for_topic(self.topic)
                if not parts:
                    try:
                        await asyncio.wait_for(self._stop.wait(), 1.0)
                        return
                    except asyncio.TimeoutError:
                        continue
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if ends[tp] > 0}
            if not pending:
                self._ready.set()
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                for tp, records in batch.items():
                    for r in records:
                        self._take(r.key, r.value)
                if pending:
                    for tp in list(pending):
                        if await consumer.position(tp) >= ends[tp]:
                            pending.discard(tp)
                    if not pending:
                        self._ready.set()
        finally:
            await consumer.stop()
