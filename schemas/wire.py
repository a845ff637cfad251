"""The wire form of ``agentflux.events``: what every producer writes and the worker reads.

A record's value is UTF-8 JSON: one event object, or an array of events (the batch form every
producer here sends). Shared by the runtime (emitter, instrumentation, simulators) and the
worker, so neither imports the other. :func:`envelope` is the one place an event's envelope is
put together; everything that produces events builds them through it.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

import orjson

from agentflux.schemas.events import EVENT_TYPES
from agentflux.schemas.ids import uuid7


def envelope(type: str, attrs: Any, *, source: dict, agent_id: str, session_id: str,
             philosophy: str, ts: int | None = None, id: str | None = None,
             trace_id: str | None = None, span_id: str | None = None,
             parent_span_id: str | None = None) -> dict:
    """One event in wire form, ready for ``Emitter.emit()``.

    ``ts`` defaults to now (epoch nanoseconds) and ``id`` to a fresh UUIDv7 of ``ts``; a caller
    that needs reproducible ids (the seeded simulator) passes its own. ``v`` is the registered
    version of ``type``. The trace fields appear only when given. The key order is fixed
    (envelope, trace fields, ``attrs`` last), so a seeded producer's serialised output is
    byte-identical from run to run. ``attrs`` and ``source`` are put in as they are, not copied:
    do not mutate them after the event is emitted. Raises ``ValueError`` for an unknown type.
    """
    etype = EVENT_TYPES.get(type)
    if etype is None:
        raise ValueError(f"unknown event type {type!r}; known: {sorted(EVENT_TYPES)}")
    if ts is None:
        ts = time.time_ns()
    ev = {"id": uuid7(ts) if id is None else id, "type": type, "v": etype.version, "ts": ts,
          "source": source, "agent_id": agent_id, "session_id": session_id,
          "philosophy": philosophy}
    if trace_id is not None:
        ev["trace_id"] = trace_id
    if span_id is not None:
        ev["span_id"] = span_id
    if parent_span_id is not None:
        ev["parent_span_id"] = parent_span_id
    ev["attrs"] = attrs
    return ev


def encode_batch(serialized_events: Sequence[bytes]) -> bytes:
    """Join already-serialised events into one record value (a JSON array)."""
    return b"[" + b",".join(serialized_events) + b"]"


def encode_events(events: Iterable[dict]) -> bytes:
    return orjson.dumps(list(events))
