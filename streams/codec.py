"""The wire codec of ``agentflux.events``: a record's value is UTF-8 JSON, one event object or an
array of events. Decoding never raises: each record becomes a :class:`DecodedBatch` of valid
events and :class:`Rejected` items (reason + raw bytes), so one bad event never costs its batch.

Two paths, one verdict. The fast path decodes and validates the whole record in native code
(msgspec Structs, :mod:`agentflux.schemas.structs`); a record it refuses is re-read event by
event by the per-event validator (:func:`agentflux.schemas.validate.check`), so each bad event
gets its exact reason and the rest of its batch still lands. Valid events come out of both paths
the same way: typed Structs plus each event's ``attrs`` as raw JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from agentflux.schemas.events import EVENT_TYPES
from agentflux.schemas.spec import ENVELOPE_SPECS, field_specs
from agentflux.schemas.structs import AnyEvent, decode_fast, raw_attrs, to_wire
from agentflux.schemas.validate import Problem, check

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
    """One record, decoded once: its valid events (typed Structs of
    :data:`agentflux.schemas.structs.EVENT_STRUCTS`), each event's ``attrs`` as the raw JSON it
    was sent as (bytes-like, attributes this version does not know included), and what was
    rejected."""

    events: list = field(default_factory=list)
    attrs_json: list = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    size_bytes: int = 0

    def wire(self) -> list[dict]:
        """The valid events as wire dicts (for tools and tests; the worker uses columns)."""
        return [to_wire(e, a) for e, a in zip(self.events, self.attrs_json)]

    @property
    def total(self) -> int:
        """How many events the producer sent in this record (a record that failed whole counts 1)."""
        return len(self.events) + len(self.rejected)


def _json_error_reason(exc: Exception) -> str:
    return "not_utf8" if "utf-8" in str(exc).lower() else "invalid_json"


_BOM = b"\xef\xbb\xbf"
# JSON strings as whole tokens (so brackets and commas inside strings are skipped), and the
# structural characters that delimit array elements
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.S)
_WS = b" \t\r\n"


def element_spans(value: bytes) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` of the top-level elements of a JSON array that orjson has
    already accepted, so a dead letter can carry the exact bytes of the one event that failed
    (a re-serialisation would change numbers, key order and escapes). Runs only for records
    with a rejected event; cost is proportional to the record's tokens."""
    spans: list[tuple[int, int]] = []
    depth = 0
    start = -1
    for m in _TOKENS.finditer(value):
        c = value[m.start()]
        if c == 0x22:  # a string token
            continue
        if c in b"[{":
            depth += 1
            if depth == 1:
                start = m.end()
        elif c in b"]}":
            if depth == 1 and start >= 0:
                spans.append((start, m.start()))
            depth -= 1
        elif depth == 1:  # a comma between top-level elements
            spans.append((start, m.start()))
            start = m.end()
    out = []
    for a, b in spans:
        while a < b and value[a] in _WS:
            a += 1
        while b > a and value[b - 1] in _WS:
            b -= 1
        if b > a:
            out.append((a, b))
    return out


def _whole(reason: str, detail: str, raw: bytes, n: int) -> DecodedBatch:
    return DecodedBatch(rejected=[Rejected(reason, detail, raw)], size_bytes=n)


def decode_record(value: bytes | None, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> DecodedBatch:
    """Decode and validate one record value. Never raises.

    Every item the producer sent is accounted for: each element of a JSON array is either a
    valid event or a :class:`Rejected` carrying its own original bytes; a record that cannot be
    read as events at all (a tombstone, oversize, not JSON, an empty array, a JSON value that is
    neither an object nor an array) is one :class:`Rejected` with the record's bytes. A leading
    UTF-8 byte order mark is ignored (RFC 8259 allows parsers to), duplicate keys resolve to the
    last one (as orjson, Python's json and JavaScript do).
    """
    if value is None:
        return _whole("tombstone", "record has no value (a tombstone): an event record carries a "
                      "JSON event or array of events", b"", 0)
    value = bytes(value)
    n = len(value)
    if n > max_bytes:
        return _whole("oversize", f"record of {n} bytes exceeds the limit of {max_bytes} bytes",
                      value, n)
    body = value[3:] if value[:3] == _BOM else value
    fast = decode_fast(body)
    # msgspec skips the members it does not know without checking their UTF-8; orjson (and the
    # JSON spec) refuse invalid UTF-8 anywhere: such a record takes the slow path for its reason
    if fast is not None and _utf8(body):
        return DecodedBatch(fast[0], fast[1], [], n)
    return _decode_slow(value, body, n)


def _utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


_to_struct = msgspec.json.Decoder(AnyEvent)
_ENVELOPE_KEYS = frozenset(s.name for s in ENVELOPE_SPECS)
_ATTR_KEYS = {name: frozenset(s.name for s in field_specs(t.attrs))
              for name, t in EVENT_TYPES.items()}


def _integral(value: Any) -> Any:
    """``value`` with integral floats as ints: JSON Schema counts ``1.0`` as an integer, the
    typed decoder does not (a float field takes an int either way)."""
    if type(value) is float and value.is_integer() and -2.0 ** 63 <= value < 2.0 ** 63:
        return int(value)
    if type(value) is dict:
        return {k: _integral(v) for k, v in value.items()}
    if type(value) is list:
        return [_integral(v) for v in value]
    return value


def _decode_slow(value: bytes, body: bytes, n: int) -> DecodedBatch:
    """Event by event, with the per-event validator's exact reasons."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _whole(_json_error_reason(exc), str(exc), value, n)
    if type(doc) is list:
        if not doc:
            return _whole("empty_batch", "the record is an empty JSON array: no events", value, n)
        items = doc
    elif type(doc) is dict:
        items = [doc]
    else:
        p = check(doc)
        return _whole(p.reason if p else "not_an_event",
                      p.message() if p else "not an event", value, n)
    out = DecodedBatch(size_bytes=n)
    spans: list | None = None

    def element(i: int) -> bytes:
        """The exact bytes of item ``i`` (the body, for a single event)."""
        nonlocal spans
        if type(doc) is not list:
            return body
        if spans is None:
            spans = element_spans(body)
            if len(spans) != len(items):  # cannot happen for JSON orjson accepted; be safe
                spans = [(0, len(body))] * len(items)
        a, b = spans[i]
        return body[a:b]

    for i, ev in enumerate(items):
        p = check(ev)
        if p is None:
            # valid, but refused by the strict fast path (an integral float such as 1.0 in an
            # integer field, which JSON Schema accepts; or another event of the record)
            eid = ev.get("id") if type(ev.get("id")) is str else None
            try:
                typed = {k: v for k, v in ev.items() if k in _ENVELOPE_KEYS}  # shallow: valid
                typed["attrs"] = {k: v for k, v in ev["attrs"].items()
                                  if k in _ATTR_KEYS[ev["type"]]}
                event = _to_struct.decode(orjson.dumps(_integral(typed)))
            except (msgspec.ValidationError, TypeError) as exc:  # they disagree: never silently
                p = Problem("invalid_field", None, f"rejected by the typed decoder: {exc}", eid)
            else:
                try:
                    attrs_json = raw_attrs(element(i))  # as sent, unknown attrs included
                except (msgspec.DecodeError, RecursionError):  # valid JSON, nested too deep
                    p = Problem("too_deep", "attrs", "nested deeper than the decoder reads "
                                "(about 1,000 levels)", eid)
                else:
                    out.events.append(event)
                    out.attrs_json.append(attrs_json)
                    continue
        raw = element(i) if type(doc) is list else value
        out.rejected.append(Rejected(p.reason, p.message(), raw,
                                     i if type(doc) is list else None, p.event_id))
    return out
