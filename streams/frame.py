"""A batch of validated events as columns, built once per take() and shared by every processor.

The worker's agents never walk events one by one in Python. :meth:`EventFrame.decode` hands a
take()'s record values to the native decoder (:mod:`agentflux.streams.native`, Rust), which
decodes, validates and lays out every event as column buffers in one pass; the records it does
not accept are re-read event by event by the codec (exact dead-letter reasons), and their valid
events join the frame through :meth:`EventFrame.from_structs` (msgspec Structs turned into columns
with C-level loops). Windows, sketches, Prometheus histograms, de-duplication and the history all
read these columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from agentflux.schemas.structs import EVENT_STRUCTS
from agentflux.streams.codec import DecodedBatch
from agentflux.streams.dedup import id_hashes
from agentflux.streams.native import STR_COLUMNS
from agentflux.streams.native import decode as native_decode
from agentflux.streams.fields import (ENUMS, ERROR_VALUES, LABEL_FIELDS, MEASURE_DEFAULTS,
                                      MEASURE_FIELDS, SLOTS, SPAN_FIELDS, SpanKey, measure_value,
                                      span_of)

TYPE_NAMES: tuple[str, ...] = tuple(EVENT_STRUCTS)
_TYPE_CODE = {cls: i for i, cls in enumerate(EVENT_STRUCTS.values())}
_TYPE_ARRAY = pa.array(TYPE_NAMES, pa.string())


def _error_field(struct: type) -> str | None:
    attrs = struct.__annotations__["attrs"]
    return next((f for f in ERROR_VALUES if f in attrs.__struct_fields__), None)


# per type code: (name getter, duration getter, scale, error field, error values)
_EXTRACT = []
for _name, _cls in EVENT_STRUCTS.items():
    _nf, _df, _scale = SPAN_FIELDS[_name]
    _ef = _error_field(_cls)
    _EXTRACT.append((attrgetter(_nf) if _nf else None, attrgetter(_df) if _df else None, _scale,
                     _ef, ERROR_VALUES.get(_ef, frozenset())))

# per type code: (label getter or None, [(measure getter, allowed enum values or None)])
_MEASURE_GET = [(attrgetter(LABEL_FIELDS[n]) if n in LABEL_FIELDS else None,
                 [(attrgetter(f), ENUMS[n].get(f)) for f in MEASURE_FIELDS[n]])
                for n in EVENT_STRUCTS]

_id = attrgetter("id")
_v = attrgetter("v")
_ts = attrgetter("ts")
_attrs = attrgetter("attrs")
_source = attrgetter("source")


def str_array(values: list) -> pa.Array:
    """An Arrow string array from a list of ``str`` (``None`` = null), without converting
    element by element: one ``join``, one ``encode``, offsets from the lengths (2x faster than
    ``pa.array`` for 8-character names, 3x for UUIDs). Non-ASCII text, where character and byte
    lengths differ, goes through ``pa.array``."""
    n = len(values)
    if n == 0:
        return pa.array([], pa.string())
    mask = None
    if None in values:
        mask = np.fromiter(map(_is_none, values), bool, n)
        if mask.all():
            return pa.nulls(n, pa.string())
        values = ["" if v is None else v for v in values]
    text = "".join(values)
    data = text.encode()
    if len(data) != len(text) or len(data) > _MAX_STRING_BYTES:
        return pa.array(values, pa.string(), mask=mask)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(np.fromiter(map(len, values), np.int32, n), out=offsets[1:])
    validity = None if mask is None else pa.array(~mask).buffers()[1]
    return pa.Array.from_buffers(pa.string(), n, [validity, pa.py_buffer(offsets),
                                                  pa.py_buffer(data)],
                                 null_count=0 if mask is None else int(mask.sum()))


_MAX_STRING_BYTES = 2**31 - 1  # int32 offsets


def _is_none(v: object) -> bool:
    return v is None


def json_array(raws: list) -> pa.Array:
    """Raw JSON byte strings (already validated UTF-8) as an Arrow string array."""
    n = len(raws)
    data = b"".join(raws)
    wide = len(data) > _MAX_STRING_BYTES
    offsets = np.zeros(n + 1, np.int64 if wide else np.int32)
    np.cumsum(np.fromiter(map(len, raws), offsets.dtype, n), out=offsets[1:])
    arr = pa.Array.from_buffers(pa.large_string() if wide else pa.string(), n,
                                [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return arr.cast(pa.string()) if wide else arr




@dataclass
class EventFrame:
    """Valid events of a batch of records, in record order, as columns."""

    partition: np.ndarray  # int32: the Kafka partition of each event's record
    offset: np.ndarray  # int64: ... and its offset
    ts: np.ndarray  # int64 epoch ns
    type_code: np.ndarray  # int16 index into TYPE_NAMES
    v: np.ndarray  # int32 schema version
    source_pid: np.ndarray  # int64
    duration_ms: np.ndarray  # float64, NaN where the type has no duration
    error: np.ndarray  # bool
    id_hash: np.ndarray  # int64: the de-duplication horizon's hash of each id
    measures: np.ndarray  # float64, events x SLOTS: numbers from the attrs (MEASURE_FIELDS)
    strings: dict[str, pa.Array]  # STR_COLUMNS (``name``: the tool, model, cache ... or null;
    # ``label``: the second dimension of LABEL_FIELDS)
    _span: tuple | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return len(self.ts)

    def __len__(self) -> int:
        return self.n

    @property
    def ids(self) -> pa.Array:
        return self.strings["id"]

    @classmethod
    def empty(cls) -> "EventFrame":
        z = np.zeros(0)
        return cls(z.astype(np.int32), z.astype(np.int64), z.astype(np.int64),
                   z.astype(np.int16), z.astype(np.int32), z.astype(np.int64), z,
                   z.astype(bool), z.astype(np.int64), np.zeros((0, SLOTS)),
                   {c: pa.array([], pa.string()) for c in STR_COLUMNS})

    @classmethod
    def decode(cls, values: list, partitions: np.ndarray, offsets: np.ndarray,
               max_bytes: int) -> tuple["EventFrame", list[int]]:
        """The events of the records ``values`` (bytes or None; ``partitions`` and ``offsets``
        per record) that the native decoder accepts whole, and the indexes of the records it
        does not (for :func:`agentflux.streams.codec.decode_record`)."""
        _, failed, numeric, strings = native_decode(values, max_bytes)
        record, type_code, v, ts, pid, duration, error, id_hash, measures = numeric
        return cls(partitions[record], offsets[record], ts, type_code, v, pid, duration, error,
                   id_hash, measures, strings), failed

    @classmethod
    def from_structs(cls, records: Sequence[tuple[DecodedBatch, int, int]]) -> "EventFrame":
        """``records``: ``(decoded batch, partition, offset)`` per Kafka record, the events as
        typed Structs (the codec's per-event path)."""
        events: list = []
        raws: list = []
        counts = []
        for d, _, _ in records:
            events += d.events
            raws += d.attrs_json
            counts.append(len(d.events))
        n = len(events)
        partition = np.repeat(np.fromiter((p for _, p, _ in records), np.int32, len(records)),
                              counts)
        offset = np.repeat(np.fromiter((o for _, _, o in records), np.int64, len(records)), counts)
        type_code = np.fromiter(map(_TYPE_CODE.__getitem__, map(type, events)), np.int16, n)
        name = np.full(n, None, object)
        label = np.full(n, None, object)
        measures = np.full((n, SLOTS), np.nan)
        duration = np.full(n, np.nan)
        error = np.zeros(n, bool)
        attrs = list(map(_attrs, events))
        present = np.unique(type_code).tolist() if n else []
        for code in present:
            get_name, get_dur, scale, err_field, err_values = _EXTRACT[code]
            if len(present) == 1:
                at: Any = slice(None)
                sub = attrs
            else:
                at = np.flatnonzero(type_code == code)
                sub = list(map(attrs.__getitem__, at.tolist()))
            if get_name is not None:
                name[at] = list(map(get_name, sub))
            if get_dur is not None:
                durations = list(map(get_dur, sub))
                try:
                    d = np.fromiter(durations, np.float64, len(sub))
                except TypeError:  # an optional duration absent (None): null, not a number
                    d = pa.array(durations, pa.float64()).to_numpy(zero_copy_only=False)
                duration[at] = d * scale if scale != 1.0 else d
            if err_field is not None:
                error[at] = np.fromiter(map(err_values.__contains__,
                                            map(attrgetter(err_field), sub)), bool, len(sub))
            get_label, getters = _MEASURE_GET[code]
            if get_label is not None:
                label[at] = list(map(get_label, sub))
            for j, (get, allowed) in enumerate(getters):
                measures[at, j] = [measure_value(x, allowed) for x in map(get, sub)]
        ids = list(map(_id, events))
        src = list(map(_source, events))
        strings = {
            "id": str_array(ids),
            "agent_id": str_array(list(map(attrgetter("agent_id"), events))),
            "session_id": str_array(list(map(attrgetter("session_id"), events))),
            "philosophy": str_array(list(map(attrgetter("philosophy"), events))),
            "source_runtime": str_array(list(map(attrgetter("runtime"), src))),
            "source_host": str_array(list(map(attrgetter("host"), src))),
            "trace_id": str_array(list(map(attrgetter("trace_id"), events))),
            "span_id": str_array(list(map(attrgetter("span_id"), events))),
            "parent_span_id": str_array(list(map(attrgetter("parent_span_id"), events))),
            "name": str_array(name.tolist()),
            "attrs": json_array(raws),
            "label": str_array(label.tolist()),
        }
        return cls(partition, offset, np.fromiter(map(_ts, events), np.int64, n), type_code,
                   np.fromiter(map(_v, events), np.int32, n),
                   np.fromiter(map(attrgetter("pid"), src), np.int64, n), duration, error,
                   id_hashes(ids), measures, strings)

    @classmethod
    def from_wire(cls, events: Sequence[dict], partition: int = 0) -> "EventFrame":
        """Wire events (dicts, taken as valid) as a frame, their offsets numbered from 0: for
        tests, oracles and peers; the worker decodes records (:meth:`decode`)."""
        n = len(events)
        spans = [span_of(e) for e in events]
        measures = np.full((n, SLOTS), np.nan)
        label = []
        for i, e in enumerate(events):
            t, attrs = e["type"], e["attrs"]
            for j, f in enumerate(MEASURE_FIELDS[t]):
                measures[i, j] = (measure_value(attrs[f], ENUMS[t].get(f)) if f in attrs
                                  else MEASURE_DEFAULTS[t][f])
            lf = LABEL_FIELDS.get(t)
            label.append(attrs.get(lf) if lf else None)
        get = (lambda k: str_array([e.get(k) for e in events]))
        strings = {c: get(c) for c in ("id", "agent_id", "session_id", "philosophy", "trace_id",
                                       "span_id", "parent_span_id")}
        strings.update(
            source_runtime=str_array([e.get("source", {}).get("runtime") for e in events]),
            source_host=str_array([e.get("source", {}).get("host") for e in events]),
            name=str_array([s[0][1] or None for s in spans]),
            attrs=str_array([orjson.dumps(e["attrs"]).decode() for e in events]),
            label=str_array(label))
        ids = [e.get("id") or "" for e in events]
        return cls(np.full(n, partition, np.int32), np.arange(n, dtype=np.int64),
                   np.fromiter((e["ts"] for e in events), np.int64, n),
                   np.fromiter((TYPE_NAMES.index(e["type"]) for e in events), np.int16, n),
                   np.fromiter((e.get("v", 1) for e in events), np.int32, n),
                   np.fromiter((e.get("source", {}).get("pid", 0) for e in events), np.int64, n),
                   np.array([np.nan if s[1] is None else s[1] for s in spans], np.float64),
                   np.array([s[2] for s in spans], bool), id_hashes(ids), measures, strings)

    @classmethod
    def concat(cls, frames: Sequence["EventFrame"]) -> "EventFrame":
        frames = [f for f in frames if f.n]
        if len(frames) <= 1:
            return frames[0] if frames else cls.empty()
        cat = (lambda name: np.concatenate([getattr(f, name) for f in frames]))
        return cls(cat("partition"), cat("offset"), cat("ts"), cat("type_code"), cat("v"),
                   cat("source_pid"), cat("duration_ms"), cat("error"), cat("id_hash"),
                   cat("measures"), {c: pa.concat_arrays([f.strings[c] for f in frames]) for c in STR_COLUMNS})

    def select(self, keep: np.ndarray) -> "EventFrame":
        """The events at the integer positions ``keep``."""
        at = pa.array(keep, pa.int64())
        return EventFrame(self.partition[keep], self.offset[keep], self.ts[keep],
                          self.type_code[keep], self.v[keep], self.source_pid[keep],
                          self.duration_ms[keep], self.error[keep], self.id_hash[keep],
                          self.measures[keep], {c: a.take(at) for c, a in self.strings.items()})

    def spans(self) -> tuple[np.ndarray, list[SpanKey]]:
        """A span key index per event and the keys ``(type, name, philosophy)`` it indexes (a
        missing name is ``""``; two indexes may name the same key)."""
        if self._span is None:
            if not self.n:
                self._span = (np.zeros(0, np.int64), [])
                return self._span
            names = pc.dictionary_encode(self.strings["name"], null_encoding="encode")
            phils = pc.dictionary_encode(self.strings["philosophy"])
            nn, np_ = len(names.dictionary), len(phils.dictionary)
            combined = ((self.type_code.astype(np.int64) * nn
                         + names.indices.to_numpy().astype(np.int64)) * np_
                        + phils.indices.to_numpy().astype(np.int64))
            uniq, inverse = np.unique(combined, return_inverse=True)
            nd, pd = names.dictionary.to_pylist(), phils.dictionary.to_pylist()
            keys = []
            for c in uniq.tolist():
                rest, p = divmod(c, np_)
                t, nm = divmod(rest, nn)
                keys.append((TYPE_NAMES[t], nd[nm] or "", pd[p]))
            self._span = (inverse.reshape(-1), keys)
        return self._span

    def type_counts(self) -> dict[str, int]:
        counts = np.bincount(self.type_code, minlength=len(TYPE_NAMES))
        return {TYPE_NAMES[i]: int(c) for i, c in enumerate(counts.tolist()) if c}

    def table(self, schema: pa.Schema) -> pa.Table:
        """The events as the history's Arrow table (``schema``: the history's event schema)."""
        s = self.strings
        ts = pa.array(self.ts, pa.int64())
        arrays = [
            s["id"], _TYPE_ARRAY.take(pa.array(self.type_code)), pa.array(self.v, pa.int32()),
            ts.cast(pa.timestamp("ns", tz="UTC")), ts, s["agent_id"], s["session_id"],
            s["philosophy"], s["source_runtime"], s["source_host"],
            pa.array(self.source_pid, pa.int64()), s["trace_id"], s["span_id"],
            s["parent_span_id"], s["name"],
            pa.array(self.duration_ms, pa.float64(), from_pandas=True),  # NaN -> null
            pa.array(self.error, pa.bool_()), s["attrs"],
            pa.array(self.partition, pa.int32()), pa.array(self.offset, pa.int64()),
        ]
        return pa.Table.from_arrays(arrays, schema=schema)
