"""Fast validation of decoded wire events (dicts from orjson), equivalent to the JSON Schema files.

The hot path (:func:`check`) returns ``None`` for a valid event, or a :class:`Problem` naming the
reason (a short, low-cardinality label used in metrics and dead-letter headers), the field and a
human-readable detail. :func:`validate` raises :class:`InvalidEvent` with the same information.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentflux.schemas.events import EVENT_TYPES
from agentflux.schemas.spec import ENVELOPE_SPECS, INT64_MIN, SOURCE_SPECS, FieldSpec, field_specs

_PY = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
       "array": (list,), "object": (dict,), "null": (type(None),)}
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str  # not_an_event | missing_field | invalid_field | unknown_type | unsupported_version
    field: str | None
    detail: str
    event_id: str | None = None

    def message(self) -> str:
        who = f"event {self.event_id}" if self.event_id else "event without id"
        where = f" field {self.field!r}" if self.field else ""
        return f"{who}:{where} {self.detail}"


class InvalidEvent(ValueError):
    """An event does not match its schema; ``problem`` says which field and why."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message())
        self.problem = problem


# A compiled field: (name, exact python types, required, enum, item types, value types,
#                    min_length, minimum, nested compiled specs)
_Compiled = tuple


def _compile(specs: list[FieldSpec], nested: dict[str, list] | None = None) -> list[_Compiled]:
    out = []
    for s in specs:
        pytypes = frozenset(t for k in s.kinds for t in _PY[k])
        enum = frozenset(s.enum) | ({None} if "null" in s.kinds else set()) if s.enum else None
        out.append((s.name, pytypes, s.required, enum,
                    _PY[s.items] if s.items else None, _PY[s.values] if s.values else None,
                    s.min_length, s.minimum, (nested or {}).get(s.ref) if s.ref else None,
                    s.maximum))
    return out


def _kind_name(value: Any) -> str:
    return {str: "string", int: "integer", float: "number", bool: "boolean", list: "array",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def _check_fields(obj: dict, compiled: list[_Compiled], prefix: str, eid: Any) -> Problem | None:
    for name, pytypes, required, enum, items, values, min_length, minimum, nested, maximum \
            in compiled:
        val = obj.get(name, _MISSING)
        if val is _MISSING:
            if required:
                return Problem("missing_field", prefix + name, "is required", eid)
            continue
        if type(val) not in pytypes and not (type(val) is float and int in pytypes
                                             and val.is_integer()):  # JSON: 1.0 is an integer
            want = " or ".join(sorted({_kind_name(t()) if t is not type(None) else "null"
                                       for t in pytypes}))
            return Problem("invalid_field", prefix + name,
                           f"must be {want}, got {_kind_name(val)} {val!r:.40}", eid)
        if enum is not None and val not in enum:
            return Problem("invalid_field", prefix + name,
                           f"must be one of {sorted(x for x in enum if x is not None)}, got {val!r:.40}",
                           eid)
        if val is None:  # null where the spec allows it (checked above): nothing more to check
            continue
        if items is not None:
            for x in val:
                if type(x) not in items:
                    return Problem("invalid_field", prefix + name,
                                   f"items must be {_kind_name(items[0]())}", eid)
        if values is not None:
            for x in val.values():
                if type(x) not in values:
                    return Problem("invalid_field", prefix + name,
                                   f"values must be {_kind_name(values[-1]())}", eid)
        if min_length is not None and len(val) < min_length:
            return Problem("invalid_field", prefix + name,
                           f"must have at least {min_length} characters", eid)
        if minimum is not None and (val < minimum or (type(val) is float and val == INT64_MIN
                                                       == minimum)):
            # (orjson reads an integer beyond 64 bits as a float; just below -2**63 it rounds to
            # exactly -2**63, which must not pass as in range)
            return Problem("invalid_field", prefix + name, f"must be >= {minimum}", eid)
        if maximum is not None and val > maximum:
            return Problem("invalid_field", prefix + name, f"must be <= {maximum}", eid)
        if nested is not None:
            p = _check_fields(val, nested, prefix + name + ".", eid)
            if p is not None:
                return p
    return None


_ENVELOPE = _compile(ENVELOPE_SPECS, {"source": _compile(SOURCE_SPECS)})
_ATTRS = {name: (t.version, _compile(field_specs(t.attrs))) for name, t in EVENT_TYPES.items()}


def check(event: Any) -> Problem | None:
    """``None`` if ``event`` (a decoded JSON value) is a valid event, else the first problem."""
    if type(event) is not dict:
        return Problem("not_an_event", None, f"must be a JSON object, got {_kind_name(event)}")
    eid = event.get("id")
    eid = eid if type(eid) is str else None
    p = _check_fields(event, _ENVELOPE, "", eid)
    if p is not None:
        return p
    entry = _ATTRS.get(event["type"])
    if entry is None:
        return Problem("unknown_type", "type", f"unknown event type {event['type']!r:.60}", eid)
    version, attrs = entry
    # id is exactly 36 characters (a UUID in canonical form); the envelope spec gives the minimum
    if len(eid) != 36:  # type: ignore[arg-type]
        return Problem("invalid_field", "id", "must be a UUID (36 characters)", eid)
    if event["v"] > version:
        return Problem("unsupported_version", "v",
                       f"{event['type']} version {event['v']} is newer than the supported {version}",
                       eid)
    return _check_fields(event["attrs"], attrs, "attrs.", eid)


def validate(event: Any) -> dict:
    """Return ``event`` if valid; raise :class:`InvalidEvent` naming the id, field and reason."""
    p = check(event)
    if p is not None:
        raise InvalidEvent(p)
    return event
