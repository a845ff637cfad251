"""The Emitter: how an agent runtime publishes events to Kafka without waiting for Kafka.

``emit()`` is thread-safe, never blocks and costs well under a microsecond: it appends the event
to a bounded in-memory buffer (a full buffer drops the event and counts it in
``stats.dropped``; nothing is lost silently). A background thread runs its own asyncio loop with
an idempotent aiokafka producer (acks=all): every ``linger_ms`` it drains the buffer, serialises
the events with orjson, groups them by the partition of their session (Kafka's murmur2
partitioner, so a session stays ordered and lands where a keyed single-event record would), and
sends each group as one record holding a JSON array of up to ``batch_events`` events.

Serialising in the background (as OpenTelemetry's BatchSpanProcessor exports in the background)
keeps the caller's cost flat; the contract that comes with it: do not mutate an event dict after
passing it to ``emit()``. An event that cannot be serialised is counted in ``stats.failed`` and
logged.

Async runtimes use the same object: ``emit()`` is safe on an event loop, and ``await
emitter.aflush()`` / ``await emitter.aclose()`` wait without blocking the loop.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import orjson

from agentflux.config import ConfigError, Settings
from agentflux.schemas.events import EVENT_TYPES, Event
from agentflux.schemas.ids import uuid7
from agentflux.streams.codec import encode_batch
from agentflux.streams.sketch import DDSketch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmitterStats:
    emitted: int  # accepted by emit()
    sent: int  # handed to the producer
    acked: int  # acknowledged by the broker (acks=all)
    failed: int  # the producer gave up on them
    dropped: int  # refused because the buffer was full or the emitter closed
    buffered: int
    records: int
    ack_p50_ms: float | None
    ack_p99_ms: float | None


class Emitter:
    """Publishes events in batch records. See the module docstring for the guarantees."""

    def __init__(self, settings: Settings | None = None, *, topic: str | None = None,
                 linger_ms: float = 2.0, batch_events: int = 1000,
                 max_record_bytes: int = 900_000, buffer_events: int = 200_000,
                 send_timeout_s: float = 30.0, runtime: str = "agentflux",
                 producer_factory: Callable[..., Any] | None = None):
        if linger_ms < 0:
            raise ValueError(f"linger_ms must be >= 0, got {linger_ms!r}")
        if batch_events < 1:
            raise ValueError(f"batch_events must be >= 1, got {batch_events!r}")
        if buffer_events < batch_events:
            raise ValueError(f"buffer_events ({buffer_events}) must be >= batch_events ({batch_events})")
        self.settings = settings or Settings()
        self.topic = topic or self.settings.topics.events
        self.linger_s = linger_ms / 1000.0
        self.batch_events = batch_events
        self.max_record_bytes = max_record_bytes
        self.buffer_events = buffer_events
        self.send_timeout_s = send_timeout_s
        self.source = {"runtime": runtime, "host": socket.gethostname(), "pid": os.getpid()}
        self._producer_factory = producer_factory
        self._buf: collections.deque = collections.deque()
        self._emitted = itertools.count()  # next() is atomic in CPython: exact under threads
        self._dropped = itertools.count()
        self._n_emitted = 0
        self._n_dropped = 0
        self._sent = self._acked = self._failed = self._records = 0
        self._ack_sketch = DDSketch()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._closed = False
        self._partitions: list[int] = []
        self._part_cache: dict[str, int] = {}
        self._error: BaseException | None = None

    # --- building events ------------------------------------------------------------------
    def event(self, type: str, attrs: Mapping[str, Any], *, agent_id: str, session_id: str,
              philosophy: str, ts: int | None = None, trace_id: str | None = None,
              span_id: str | None = None, parent_span_id: str | None = None) -> dict:
        """A wire-form event with a fresh UUIDv7 id, the current time and this emitter's source."""
        etype = EVENT_TYPES.get(type)
        if etype is None:
            raise ValueError(f"unknown event type {type!r}; known: {sorted(EVENT_TYPES)}")
        ts = time.time_ns() if ts is None else ts
        ev = {"id": uuid7(ts), "type": type, "v": etype.version, "ts": ts, "source": self.source,
              "agent_id": agent_id, "session_id": session_id, "philosophy": philosophy,
              "attrs": dict(attrs)}
        if trace_id is not None:
            ev["trace_id"] = trace_id
        if span_id is not None:
            ev["span_id"] = span_id
        if parent_span_id is not None:
            ev["parent_span_id"] = parent_span_id
        return ev

    # --- the hot path ---------------------------------------------------------------------
    def emit(self, event: Mapping[str, Any] | Event) -> bool:
        """Queue one event (wire-form dict or :class:`Event`). False if it was dropped (counted)."""
        if type(event) is not dict:
            event = event.to_dict() if isinstance(event, Event) else dict(event)
        if self._closed or len(self._buf) >= self.buffer_events:
            next(self._dropped)
            return False
        self._buf.append((event, time.perf_counter_ns()))
        next(self._emitted)
        return True

    # --- lifecycle ------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> "Emitter":
        """Connect the producer on a background thread; returns when it is ready (bounded)."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="agentflux-emitter",
                                        daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            self._stopping = True
            raise ConfigError(f"could not connect to Kafka at {self.settings.bootstrap_servers} "
                              f"within {timeout_s}s: is the broker up (`agentflux up`)?")
        if isinstance(self._error, ConfigError):  # explained by the preflight probe: one line
            raise ConfigError(f"could not start the Kafka producer: {self._error}") from None
        if self._error is not None:
            raise ConfigError(f"could not start the Kafka producer for "
                              f"{self.settings.bootstrap_servers}: {self._error}") from self._error
        return self

    def flush(self, timeout_s: float | None = 30.0) -> bool:
        """Wait until every event emitted before this call is acked, failed or dropped."""
        target = self._count(self._emitted)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._acked + self._failed < target:
                if self._thread is None or not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 1.0)
        return True

    def close(self, timeout_s: float = 30.0) -> bool:
        """Flush (bounded by ``timeout_s``) and stop. Events emitted afterwards are dropped."""
        if self._closed:
            return True
        ok = self.flush(timeout_s) if self._thread is not None else len(self._buf) == 0
        self._closed = True
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        return ok

    async def aflush(self, timeout_s: float | None = 30.0) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, self.flush, timeout_s)

    async def aclose(self, timeout_s: float = 30.0) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, self.close, timeout_s)

    async def __aenter__(self) -> "Emitter":
        await asyncio.get_running_loop().run_in_executor(None, self.start)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __enter__(self) -> "Emitter":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- counters -------------------------------------------------------------------------
    @staticmethod
    def _count(counter: itertools.count) -> int:
        # how many times next() was called, without calling it: repr is "count(N)". CPython's
        # itertools.count increments atomically, which a ``self.n += 1`` under threads does not.
        return int(repr(counter)[6:-1])

    def stats(self) -> EmitterStats:
        s = self._ack_sketch
        return EmitterStats(emitted=self._count(self._emitted), sent=self._sent, acked=self._acked,
                            failed=self._failed, dropped=self._count(self._dropped),
                            buffered=len(self._buf), records=self._records,
                            ack_p50_ms=s.quantile(0.5) if s.count else None,
                            ack_p99_ms=s.quantile(0.99) if s.count else None)

    # --- the background thread ------------------------------------------------------------
    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(ready))
        except BaseException as exc:  # surfaced through start() / stats; never kills the caller
            self._error = exc
            ready.set()
            log.error("agentflux emitter stopped: %r", exc)
        finally:
            loop.close()
            with self._cond:
                self._cond.notify_all()

    def _make_producer(self) -> Any:
        kw = dict(self.settings.kafka_client_kwargs(), enable_idempotence=True, acks="all",
                  linger_ms=0, max_batch_size=self.max_record_bytes + 65536,
                  max_request_size=self.max_record_bytes + 131072,
                  request_timeout_ms=int(self.send_timeout_s * 1000), compression_type=None)
        if self._producer_factory is not None:
            return self._producer_factory(**kw)
        from aiokafka import AIOKafkaProducer
        return AIOKafkaProducer(**kw)

    async def _main(self, ready: threading.Event) -> None:
        producer = self._make_producer()
        try:
            await producer.start()
            parts = await producer.partitions_for(self.topic)
            self._partitions = sorted(parts)
        except BaseException as exc:
            # aiokafka says only "Unable to bootstrap": probe once more to say why (a wrong
            # password, an untrusted certificate, ...), as a ConfigError naming the setting
            if self._producer_factory is None and isinstance(exc, Exception):
                from agentflux.preflight import diagnose
                exc = await diagnose(self.settings, exc)
            self._error = exc
            ready.set()
            await producer.stop()
            return
        ready.set()
        pending: set[asyncio.Future] = set()
        try:
            while True:
                if self._buf:
                    await self._drain(producer, pending)
                elif self._stopping:
                    break
                else:
                    await asyncio.sleep(self.linger_s)
            if pending:
                await asyncio.wait(pending, timeout=self.send_timeout_s)
        finally:
            await producer.stop()

    def _partition(self, session_id: str) -> int:
        p = self._part_cache.get(session_id)
        if p is None:
            from aiokafka.partitioner import murmur2
            parts = self._partitions
            p = parts[(murmur2(session_id.encode()) & 0x7FFFFFFF) % len(parts)]
            if len(self._part_cache) > 100_000:
                self._part_cache.clear()
            self._part_cache[session_id] = p
        return p

    async def _drain(self, producer: Any, pending: set) -> None:
        buf = self._buf
        groups: dict[int, list] = {}
        popleft = buf.popleft
        dumps = orjson.dumps
        bad = 0
        for _ in range(min(len(buf), 50 * self.batch_events)):
            event, t = popleft()
            try:
                sid = event["session_id"]
                item = (sid, dumps(event), t)
            except (TypeError, KeyError) as exc:  # not serialisable: counted, never silent
                bad += 1
                log.warning("agentflux emitter: cannot serialise an event: %r", exc)
                continue
            groups.setdefault(self._partition(sid), []).append(item)
        if bad:
            self._on_done(bad, np.zeros(0, dtype=np.int64), ValueError("unserialisable events"))
        for partition, items in groups.items():
            start = 0
            while start < len(items):
                chunk, size = [], 2
                for it in itertools.islice(items, start, start + self.batch_events):
                    if chunk and size + len(it[1]) + 1 > self.max_record_bytes:
                        break
                    chunk.append(it)
                    size += len(it[1]) + 1
                start += len(chunk)
                value = encode_batch([it[1] for it in chunk])
                times = np.fromiter((it[2] for it in chunk), dtype=np.int64, count=len(chunk))
                try:
                    fut = await producer.send(self.topic, value=value,
                                              key=chunk[0][0].encode(), partition=partition)
                except Exception as exc:  # e.g. record too large: counted, never silent
                    log.warning("agentflux emitter: send failed: %r", exc)
                    self._on_done(len(chunk), times, exc)
                    continue
                self._sent += len(chunk)
                self._records += 1
                pending.add(fut)
                fut.add_done_callback(lambda f, n=len(chunk), t=times: (
                    pending.discard(f), self._on_done(n, t, f.exception())))

    def _on_done(self, n: int, emit_times: np.ndarray, exc: BaseException | None) -> None:
        with self._cond:
            if exc is None:
                self._acked += n
                self._ack_sketch.add_many((time.perf_counter_ns() - emit_times) / 1e6)
            else:
                self._failed += n
                log.warning("agentflux emitter: %d events failed: %r", n, exc)
            self._cond.notify_all()
