"""The wire codec of ``agentflux.events``: a record's value is UTF-8 JSON, one event object or an
array of events. Decoding never raises: each record becomes a :class:`DecodedBatch` of valid
events and :class:`Rejected` items (reason + raw bytes), so one bad event never costs its batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import orjson

from agentflux.schemas.validate import check

DEFAULT_MAX_RECORD_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Rejected:
    """Something that could not be accepted: why, and the exact bytes to put in the dead letter."""

    reason: str  # a low-cardinality label (invalid_json, not_utf8, oversize, unknown_type, ...)
    detail: str
    raw: bytes
    index: int | None = None  # position in the batch array; None when the whole record failed
    event_id: str | None = None


@dataclass(slots=True)
class DecodedBatch:
    events: list[dict] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    size_bytes: int = 0
    _spans: list | None = None

    def spans(self) -> list[tuple[tuple[str, str, str], float | None, bool]]:
        """``(span key, duration ms, error)`` per valid event, computed once and shared by every
        agent that receives this batch (Faust hands the same decoded value to each of them)."""
        if self._spans is None:
            from agentflux.streams.windows import span_of
            self._spans = [span_of(e) for e in self.events]
        return self._spans

    @property
    def total(self) -> int:
        """How many events the producer sent in this record (a record that failed whole counts 1)."""
        return len(self.events) + len(self.rejected)


def _json_error_reason(exc: Exception) -> str:
    return "not_utf8" if "utf-8" in str(exc).lower() else "invalid_json"


def decode_record(value: bytes | None, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> DecodedBatch:
    """Decode and validate one record value. Never raises."""
    if value is None:
        return DecodedBatch(rejected=[Rejected("invalid_json", "record has no value (tombstone)", b"")])
    n = len(value)
    if n > max_bytes:
        return DecodedBatch(rejected=[Rejected("oversize", f"record of {n} bytes exceeds the "
                                               f"limit of {max_bytes} bytes", bytes(value))],
                            size_bytes=n)
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return DecodedBatch(rejected=[Rejected(_json_error_reason(exc), str(exc), bytes(value))],
                            size_bytes=n)
    items = doc if type(doc) is list else [doc]
    out = DecodedBatch(size_bytes=n)
    ok = out.events.append
    for i, ev in enumerate(items):
        p = check(ev)
        if p is None:
            ok(ev)
        else:
            out.rejected.append(Rejected(p.reason, p.message(), orjson.dumps(ev), i, p.event_id))
    return out


def encode_batch(serialized_events: Sequence[bytes]) -> bytes:
    """Join already-serialised events into one record value (a JSON array)."""
    return b"[" + b",".join(serialized_events) + b"]"


def encode_events(events: Iterable[dict]) -> bytes:
    return orjson.dumps(list(events))
