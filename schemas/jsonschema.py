"""JSON Schema (draft 2020-12) files generated from the models.

``python -m agentflux.schemas.jsonschema --write`` regenerates ``schemas/json/``. Each event type
has one file per version, ``<type>.v<N>.json``, describing the whole event (envelope + attrs).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from agentflux.schemas.events import EVENT_TYPES
from agentflux.schemas.spec import ENVELOPE_SPECS, SOURCE_SPECS, FieldSpec, field_specs

SCHEMA_DIR = Path(__file__).resolve().parent / "json"
_ID_BASE = "https://agentflux.dev/schemas/"


def _field_schema(spec: FieldSpec) -> dict[str, Any]:
    kinds = sorted(spec.kinds)
    s: dict[str, Any] = {"type": kinds[0] if len(kinds) == 1 else kinds}
    if spec.enum is not None:
        s["enum"] = list(spec.enum) + ([None] if "null" in spec.kinds else [])
    if spec.items:
        s["items"] = {"type": spec.items}
    if spec.values:
        s["additionalProperties"] = {"type": spec.values}
    if spec.min_length is not None:
        s["minLength"] = spec.min_length
        if spec.name == "id":
            s["maxLength"] = spec.min_length
    if spec.minimum is not None:
        s["minimum"] = spec.minimum
    if spec.maximum is not None:
        s["maximum"] = spec.maximum
    return s


def _object(specs: list[FieldSpec], additional: bool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {s.name: _field_schema(s) for s in specs},
        "required": [s.name for s in specs if s.required],
        "additionalProperties": additional,
    }


def event_schema(type_name: str, version: int | None = None) -> dict[str, Any]:
    """The JSON Schema of one event type at one version (default: the current one)."""
    etype = EVENT_TYPES[type_name]
    version = etype.version if version is None else version
    schema = _object(ENVELOPE_SPECS, additional=True)
    props = schema["properties"]
    props["type"] = {"const": type_name}
    props["v"] = {"const": version}
    props["source"] = _object(SOURCE_SPECS, additional=True)
    # attrs may carry fields a newer producer added: consumers ignore what they do not know.
    props["attrs"] = _object(field_specs(etype.attrs), additional=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{_ID_BASE}{type_name}.v{version}.json",
            "title": f"agentflux {type_name} event, version {version}", **schema}


def all_schemas() -> dict[str, dict[str, Any]]:
    return {f"{name}.v{t.version}.json": event_schema(name) for name, t in EVENT_TYPES.items()}


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help="write the files into schemas/json/")
    args = ap.parse_args(argv)
    for fname, schema in all_schemas().items():
        if args.write:
            SCHEMA_DIR.mkdir(exist_ok=True)
            (SCHEMA_DIR / fname).write_bytes(render(schema))
        print(fname)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
