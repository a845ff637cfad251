"""The wire form of ``agentflux.events``: what every producer writes and the worker reads.

A record's value is UTF-8 JSON: one event object, or an array of events (the batch form every
producer here sends). Shared by the runtime (emitter, instrumentation, simulators) and the
worker, so neither imports the other.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import orjson


def encode_batch(serialized_events: Sequence[bytes]) -> bytes:
    """Join already-serialised events into one record value (a JSON array)."""
    return b"[" + b",".join(serialized_events) + b"]"


def encode_events(events: Iterable[dict]) -> bytes:
    return orjson.dumps(list(events))
