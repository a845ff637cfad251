"""The event model as msgspec Structs: the worker's fast path decodes and validates in native code.

Generated from the dataclasses in :mod:`agentflux.schemas.events` and the envelope specs in
:mod:`agentflux.schemas.spec` (the same source as the JSON Schema files and the per-event
validator), so the three cannot drift apart; ``tests/unit/test_fast_path.py`` proves it with a
mutation corpus. One Struct per event type, a tagged union on ``type``; ``attrs`` is a typed
Struct per type, and a second, skipping pass keeps each event's ``attrs`` as its raw JSON bytes
(so attributes this version does not know are landed too).

The fast path is sound: what it accepts, :func:`agentflux.schemas.validate.check` accepts. It
is strict where JSON Schema is lenient in one case (an integral float such as ``1.0`` in an
integer field): such a record takes the slow path, where the validator accepts it.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Any, Optional, Union

import msgspec

from agentflux.schemas.events import EVENT_TYPES, Source
from agentflux.schemas.spec import ENVELOPE_SPECS, INT64_MAX, INT64_MIN, SOURCE_SPECS, FieldSpec

_PRIMITIVE = {"string": str, "integer": int, "number": float, "boolean": bool}


def _constrained(tp: Any, spec: FieldSpec | None = None) -> Any:
    """``tp`` with the validator's constraints (64-bit integers, minimum lengths) as msgspec Meta."""
    if tp is int:
        lo = spec.minimum if spec and spec.minimum is not None else INT64_MIN
        hi = spec.maximum if spec and spec.maximum is not None else INT64_MAX
        return Annotated[int, msgspec.Meta(ge=lo, le=hi)]
    if tp is str and spec is not None and spec.min_length:
        return Annotated[str, msgspec.Meta(min_length=spec.min_length)]
    origin = typing.get_origin(tp)
    if origin is Union:
        return Union[tuple(_constrained(a) for a in typing.get_args(tp))]  # type: ignore[return-value]
    return tp


def _attrs_struct(model: type) -> type:
    hints = typing.get_type_hints(model)
    fields = []
    for f in dataclasses.fields(model):
        tp = _constrained(hints[f.name])
        if f.default is not dataclasses.MISSING:
            fields.append((f.name, tp, f.default))
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            fields.append((f.name, tp, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, tp))
    return msgspec.defstruct(model.__name__ + "Attrs", fields, kw_only=True, frozen=True,
                             gc=False)


_SOURCE = msgspec.defstruct(
    "WireSource",
    [(f.name, _constrained(_PRIMITIVE[next(iter(s.kinds))], s))
     for f, s in zip(dataclasses.fields(Source), SOURCE_SPECS)],
    frozen=True, gc=False)


def _envelope_fields(version: int, attrs: type) -> list:
    out = []
    for s in ENVELOPE_SPECS:
        if s.name == "type":
            continue  # the union's tag
        if s.name == "id":  # a UUID in canonical form
            out.append(("id", Annotated[str, msgspec.Meta(min_length=36, max_length=36)]))
        elif s.name == "v":
            out.append(("v", Annotated[int, msgspec.Meta(ge=s.minimum, le=version)]))
        elif s.name == "source":
            out.append(("source", _SOURCE))
        elif s.name == "attrs":
            out.append(("attrs", attrs))
        elif "null" in s.kinds:
            out.append((s.name, Optional[str], None))
        else:
            out.append((s.name, _constrained(_PRIMITIVE[next(iter(s.kinds))], s)))
    return out


EVENT_STRUCTS: dict[str, type] = {
    name: msgspec.defstruct(
        "".join(p.title() for p in name.replace("_", ".").split(".")) + "Event",
        _envelope_fields(t.version, _attrs_struct(t.attrs)),
        tag=name, tag_field="type", kw_only=True, frozen=True, gc=False, omit_defaults=True)
    for name, t in EVENT_TYPES.items()
}
AnyEvent = Union[tuple(EVENT_STRUCTS.values())]  # type: ignore[valid-type]


class _RawAttrs(msgspec.Struct, gc=False):
    """Only ``attrs``, as the bytes it was sent as (every other key is skipped, not decoded)."""

    attrs: msgspec.Raw


_typed_many = msgspec.json.Decoder(list[AnyEvent])
_typed_one = msgspec.json.Decoder(AnyEvent)
_raw_many = msgspec.json.Decoder(list[_RawAttrs])
_raw_one = msgspec.json.Decoder(_RawAttrs)


def to_wire(event: Any, attrs_json: bytes) -> dict:
    """The wire dict of a decoded event (tools and tests; the worker works on columns)."""
    d = msgspec.to_builtins(event)
    d["attrs"] = msgspec.json.decode(attrs_json)
    return d


def raw_attrs(event: bytes) -> bytes:
    """The ``attrs`` of one event's JSON, as the bytes it was sent as."""
    return bytes(_raw_one.decode(event).attrs)


def decode_fast(body: bytes) -> tuple[list, list[bytes]] | None:
    """Typed events and their raw ``attrs`` JSON for a record whose every event is valid; ``None``
    when anything in it is not (the caller re-checks it event by event for exact reasons)."""
    try:
        first = body[:1]
        if first in b" \t\r\n":
            first = body.lstrip()[:1]
        if first == b"[":
            events = _typed_many.decode(body)
            if not events:
                return None
            return events, [r.attrs for r in _raw_many.decode(body)]
        event = _typed_one.decode(body)
        return [event], [_raw_one.decode(body).attrs]
    except (msgspec.DecodeError, ValueError, RecursionError):
        # invalid or malformed (msgspec also raises UnicodeDecodeError and, past its nesting
        # limit, RecursionError): the slow path names the reason
        return None
