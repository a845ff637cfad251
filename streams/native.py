"""The native decoder (``agentflux._native``, Rust, built from ``native/`` by ``make``): record
values in, column buffers out, wrapped here as numpy and Arrow arrays without a copy.

Its rules for each type's attrs are handed over from the field specs the JSON Schema files and
the per-event validator come from (:mod:`agentflux.schemas.spec`), and the span fields from
:mod:`agentflux.streams.fields`; the envelope's rules are in the Rust source. It
accepts a record only when every event in it is valid (``tests/unit/test_fast_path.py`` checks
its verdicts against the validator's on a mutation corpus); the caller re-reads the records it
reports back with :func:`agentflux.streams.codec.decode_record`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from agentflux.schemas.events import EVENT_TYPES
from agentflux.schemas.spec import FieldSpec, field_specs
from agentflux.streams.fields import (ERROR_VALUES, LABEL_FIELDS, MEASURE_DEFAULTS,
                                      MEASURE_FIELDS, SLOTS, SPAN_FIELDS)

try:
    from agentflux import _native
except ImportError as exc:  # pragma: no cover - a checkout where `make` has not run
    raise ImportError(
        "agentflux._native is not built: run `make test` or `make demo` (they build it with "
        "cargo), or `.venv/bin/pip install -e .` in the checkout") from exc

# a string column at most this large per decode call (Arrow string offsets are 32-bit)
MAX_CHUNK_BYTES = 1 << 30

_KINDS = {"string": "str", "integer": "int", "number": "num", "boolean": "bool"}


def _kind(s: FieldSpec) -> str:
    kinds = set(s.kinds) - {"null"}
    if kinds == {"array"} and s.items == "string":
        return "str_list"
    if kinds == {"object"} and s.values == "number":
        return "num_map"
    (k,) = kinds
    return _KINDS[k]


def type_table() -> list[tuple]:
    """Per event type, in type-code order (that of ``EVENT_TYPES``): what the decoder checks
    and extracts (see ``Decoder.__new__`` in native/src/lib.rs)."""
    out = []
    for name, t in EVENT_TYPES.items():
        specs = field_specs(t.attrs)
        index = {s.name: i for i, s in enumerate(specs)}
        name_f, dur_f, scale = SPAN_FIELDS[name]
        err_f = next((f for f in ERROR_VALUES if f in index), None)
        fields = [(s.name, _kind(s), "null" in s.kinds, s.required,
                   [v for v in s.enum if v is not None] if s.enum else None,
                   s.min_length or 0,
                   s.minimum if s.minimum is not None else 0,
                   s.maximum if s.maximum is not None else 0) for s in specs]
        out.append((name, t.version, fields, index.get(name_f), index.get(dur_f), scale,
                    index.get(err_f), sorted(ERROR_VALUES.get(err_f, ())),
                    [(index[f], MEASURE_DEFAULTS[name][f]) for f in MEASURE_FIELDS[name]],
                    index.get(LABEL_FIELDS.get(name))))
    return out


DECODER = _native.Decoder(type_table())
_NUMERIC = (np.uint32, np.int16, np.int32, np.int64, np.int64, np.float64, np.bool_, np.int64,
            np.float64)
assert _native.SLOTS == SLOTS, "native/ and streams/fields.py disagree on the measure slots"
STR_COLUMNS: tuple[str, ...] = tuple(_native.STR_COLUMNS)
# False for a debug build (cargo without --release), which decodes ~15x slower
OPTIMISED: bool = _native.OPTIMISED


def decode(values: list, max_bytes: int) -> tuple[int, list[int], list[np.ndarray],
                                                  dict[str, pa.Array]]:
    """``(events, indexes of the records not accepted, numeric columns, string columns)`` for
    the record values ``values``: numeric columns are ``record`` (the index into ``values`` of
    each event's record), ``type_code``, ``v``, ``ts``, ``source_pid``, ``duration_ms`` (NaN:
    none), ``error``, ``id_hash`` and ``measures`` (events x SLOTS, see
    :data:`~agentflux.streams.fields.MEASURE_FIELDS`); string columns are named by
    :data:`STR_COLUMNS`."""
    if any(v is not None and type(v) is not bytes for v in values):  # bytearray, memoryview
        values = [v if v is None else bytes(v) for v in values]
    chunks = _chunks(values)
    if len(chunks) > 1:
        return _concat([(start, decode(part, max_bytes)) for start, part in chunks])
    n, failed, numeric, strings = DECODER.decode(values, max_bytes)
    arrays = [np.frombuffer(b, t) for b, t in zip(numeric, _NUMERIC)]
    arrays[-1] = arrays[-1].reshape(n, SLOTS)
    cols = {}
    for name, (offsets, data, validity, nulls) in zip(STR_COLUMNS, strings):
        cols[name] = pa.Array.from_buffers(
            pa.string(), n, [None if validity is None else pa.py_buffer(validity),
                             pa.py_buffer(offsets), pa.py_buffer(data)], null_count=nulls)
    return n, failed, arrays, cols


def _chunks(values: list) -> list[tuple[int, list]]:
    out, start, size = [], 0, 0
    for i, v in enumerate(values):
        size += len(v) if v is not None else 0
        if size > MAX_CHUNK_BYTES and i > start:
            out.append((start, values[start:i]))
            start, size = i, len(v)
    out.append((start, values[start:]))
    return out


def _concat(parts: list[tuple[int, Any]]) -> tuple:
    n = sum(p[0] for _, p in parts)
    failed = [start + i for start, p in parts for i in p[1]]
    numeric = [np.concatenate([(p[2][k] + start) if k == 0 else p[2][k] for start, p in parts])
               .astype(_NUMERIC[k]) for k in range(len(_NUMERIC))]
    strings = {c: pa.concat_arrays([p[3][c] for _, p in parts]) for c in STR_COLUMNS}
    return n, failed, numeric, strings


def hash_ids(ids: list[str]) -> np.ndarray:
    """The decoder's id hashes (int64) of ``ids``."""
    return np.frombuffer(_native.hash_ids(ids), np.int64)
