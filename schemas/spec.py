"""Field specifications derived from the dataclass models.

Both the JSON Schema files and the fast validator are built from these, so they cannot drift
apart unless a model changes without regenerating the files (a test catches that).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from agentflux.schemas.events import Source


INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kinds: frozenset[str]  # JSON Schema type names
    required: bool
    enum: tuple[Any, ...] | None = None
    items: str | None = None  # element kind of an array
    values: str | None = None  # value kind of an object
    min_length: int | None = None
    minimum: int | None = None
    ref: str | None = None  # a nested object with its own spec ("source")
    maximum: int | None = None

    def __post_init__(self) -> None:
        # Integers land in 64-bit columns: out-of-range values are invalid input, not a crash.
        if "integer" in self.kinds:
            if self.minimum is None:
                object.__setattr__(self, "minimum", INT64_MIN)
            if self.maximum is None:
                object.__setattr__(self, "maximum", INT64_MAX)



_PRIMITIVES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _kinds(tp: Any) -> tuple[frozenset[str], tuple | None, str | None, str | None]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        kinds: set[str] = set()
        enum = items = values = None
        for arg in typing.get_args(tp):
            if arg is type(None):
                kinds.add("null")
                continue
            k, enum, items, values = _kinds(arg)
            kinds |= k
        return frozenset(kinds), enum, items, values
    if origin is Literal:
        return frozenset({"string"}), tuple(typing.get_args(tp)), None, None
    if origin is list:
        (arg,) = typing.get_args(tp)
        return frozenset({"array"}), None, _PRIMITIVES[arg], None
    if origin is dict:
        _, val = typing.get_args(tp)
        return frozenset({"object"}), None, None, _PRIMITIVES[val]
    if tp in _PRIMITIVES:
        return frozenset({_PRIMITIVES[tp]}), None, None, None
    raise TypeError(f"unsupported field type {tp!r}")


def field_specs(model: type) -> list[FieldSpec]:
    """The fields of an attrs dataclass as specs (required = no default)."""
    hints = typing.get_type_hints(model)
    out = []
    for f in dataclasses.fields(model):
        kinds, enum, items, values = _kinds(hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append(FieldSpec(f.name, kinds, required, enum, items, values))
    return out


SOURCE_SPECS = [FieldSpec(s.name, s.kinds, True, min_length=1 if s.kinds == {"string"} else None)
                for s in field_specs(Source)]

ENVELOPE_SPECS = [
    FieldSpec("id", frozenset({"string"}), True, min_length=36),
    FieldSpec("type", frozenset({"string"}), True, min_length=1),
    FieldSpec("v", frozenset({"integer"}), True, minimum=1),
    FieldSpec("ts", frozenset({"integer"}), True, minimum=0),
    FieldSpec("source", frozenset({"object"}), True, ref="source"),
    FieldSpec("agent_id", frozenset({"string"}), True, min_length=1),
    FieldSpec("session_id", frozenset({"string"}), True, min_length=1),
    FieldSpec("philosophy", frozenset({"string"}), True, min_length=1),
    FieldSpec("trace_id", frozenset({"string", "null"}), False),
    FieldSpec("span_id", frozenset({"string", "null"}), False),
    FieldSpec("parent_span_id", frozenset({"string", "null"}), False),
    FieldSpec("attrs", frozenset({"object"}), True),
]
