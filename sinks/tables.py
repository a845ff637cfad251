"""The history's tables: each table's columns are defined here, once.

Agents hand rows in the shape they produce (an Arrow table of events, dead-letter tuples, KPI rows
as published on ``agentflux.kpis``); a :class:`Table` turns them into its schema. Storage
(:mod:`agentflux.sinks.history`) and the DuckDB views (:mod:`agentflux.sinks.catalog`) read the
schemas from here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import orjson
import pyarrow as pa

TS = pa.timestamp("ns", tz="UTC")


@dataclass(frozen=True)
class Table:
    name: str
    schema: pa.Schema
    # the rows an agent hands over (a list of its own records) -> this table's columns
    convert: Callable[[Sequence[Any]], pa.Table] | None = None

    def rows(self, items: Sequence[Any]) -> pa.Table:
        """``items`` in this table's schema: an Arrow table, a columnar frame that builds its
        own (``items.table(schema)``, e.g. an EventFrame), or records ``convert`` takes."""
        if isinstance(items, pa.Table):
            return items if items.schema == self.schema else items.select(
                self.schema.names).cast(self.schema)
        if hasattr(items, "table"):
            return items.table(self.schema)
        if self.convert is not None:
            return self.convert(items)
        return pa.Table.from_pylist(list(items), schema=self.schema)

    def empty(self) -> pa.Table:
        return self.schema.empty_table()


EVENTS = Table("events", pa.schema([
    ("id", pa.string()), ("type", pa.string()), ("v", pa.int32()),
    ("ts", TS), ("ts_ns", pa.int64()),
    ("agent_id", pa.string()), ("session_id", pa.string()), ("philosophy", pa.string()),
    ("source_runtime", pa.string()), ("source_host", pa.string()), ("source_pid", pa.int64()),
    ("trace_id", pa.string()), ("span_id", pa.string()), ("parent_span_id", pa.string()),
    ("name", pa.string()), ("duration_ms", pa.float64()), ("error", pa.bool_()),
    ("attrs", pa.string()), ("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()),
]))


def _now_column(n: int) -> pa.Array:
    return pa.array([time.time_ns()] * n, pa.int64()).cast(TS)


def _deadletters(items: Sequence[tuple]) -> pa.Table:
    """``(rejected, topic, partition, offset)`` tuples from the codec."""
    return pa.table({
        "reason": pa.array([r.reason for r, *_ in items], pa.string()),
        "detail": pa.array([r.detail for r, *_ in items], pa.string()),
        "event_id": pa.array([r.event_id for r, *_ in items], pa.string()),
        "topic": pa.array([t for _, t, _, _ in items], pa.string()),
        "kafka_partition": pa.array([p for *_, p, _ in items], pa.int32()),
        "kafka_offset": pa.array([o for *_, o in items], pa.int64()),
        "batch_index": pa.array([r.index for r, *_ in items], pa.int32()),
        "raw": pa.array([r.raw for r, *_ in items], pa.binary()),
        "landed_at": _now_column(len(items)),
    }, schema=DEADLETTERS.schema)


DEADLETTERS = Table("deadletters", pa.schema([
    ("reason", pa.string()), ("detail", pa.string()), ("event_id", pa.string()),
    ("topic", pa.string()), ("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()),
    ("batch_index", pa.int32()), ("raw", pa.binary()), ("landed_at", TS),
]), _deadletters)


def _duplicates(items: Sequence[tuple]) -> pa.Table:
    """``(event_id, topic, partition, offset)`` tuples."""
    cols = list(zip(*items)) if items else [(), (), (), ()]
    return pa.table({
        "event_id": pa.array(cols[0], pa.string()), "topic": pa.array(cols[1], pa.string()),
        "kafka_partition": pa.array(cols[2], pa.int32()),
        "kafka_offset": pa.array(cols[3], pa.int64()), "landed_at": _now_column(len(items)),
    }, schema=DUPLICATES.schema)


DUPLICATES = Table("duplicates", pa.schema([
    ("event_id", pa.string()), ("topic", pa.string()), ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()), ("landed_at", TS),
]), _duplicates)

KPI_WIRE_RENAMES = {"window_start_ns": "window_start", "window_end_ns": "window_end"}


_KPI_STR = ("kind", "row_id", "worker", "dim", "type", "name", "philosophy")
_KPI_INT = ("revision", "source_partition", "count", "errors", "duration_count")
_KPI_NUM = ("duration_sum_ms", "duration_min_ms", "duration_max_ms", "p50_ms", "p90_ms",
            "p95_ms", "p99_ms")
_KPI_JSON = ("sketch", "sums", "maxes")  # JSON documents, read with DuckDB's -> / ->>
# what a row without durations leaves out
_KPI_DEFAULTS = {"duration_count": 0, "duration_sum_ms": 0.0}


_KPI_INT32 = ("revision", "source_partition")  # (the others are 64-bit)


def _check_range(c: str, lo: int, hi: int) -> None:
    """Raise ValueError unless ``lo`` and ``hi`` (a column's least and greatest value) fit its
    integer type (JSON numbers do not have to: Arrow would raise OverflowError on them)."""
    bits = 32 if c in _KPI_INT32 else 64
    if lo < -(1 << (bits - 1)) or hi >= 1 << (bits - 1):
        raise ValueError(f"{c} does not fit a {bits}-bit integer")


def check_kpi_row(row: Any) -> None:
    """Raise TypeError / KeyError unless ``row`` (a parsed row of ``agentflux.kpis``) is a KPI
    row the ``kpis`` table takes: window bounds in integer ns, and every other field absent,
    null or of its column's type."""
    if not isinstance(row, dict):
        raise TypeError(f"a KPI row is a JSON object, got {type(row).__name__}")
    for wire in KPI_WIRE_RENAMES:
        if type(row[wire]) is not int:
            raise TypeError(f"{wire} must be an integer (ns since the epoch)")
    for cols, types, what in ((_KPI_STR, (str,), "a string"), (_KPI_INT, (int,), "an integer"),
                              (_KPI_NUM, (int, float), "a number"),
                              (_KPI_JSON, (dict,), "an object")):
        for c in cols:
            v = row.get(c)
            if v is not None and type(v) not in types:
                raise TypeError(f"{c} must be {what}, got {type(v).__name__}")
    for c in (*KPI_WIRE_RENAMES, *_KPI_INT):
        v = row.get(c)
        if v is not None:
            _check_range(c, v, v)


def kpi_table(rows: Sequence[dict], partition: int, offsets: Sequence[int]) -> pa.Table:
    """Checked KPI rows (:func:`check_kpi_row`, not changed) of one partition's records at
    ``offsets`` -> the ``kpis`` table, built column by column."""
    n = len(rows)
    cols = []
    for f in KPIS.schema:
        c = f.name
        if c in ("window_start", "window_end"):
            cols.append(pa.array([r[f"{c}_ns"] for r in rows], pa.int64()).cast(f.type))
        elif c in _KPI_JSON:
            cols.append(pa.array([orjson.dumps(r.get(c) or {}).decode() for r in rows],
                                 f.type))
        elif c == "kafka_partition":
            cols.append(pa.array(np.full(n, partition, np.int32)))
        elif c == "kafka_offset":
            cols.append(pa.array(offsets, f.type))
        elif c in _KPI_DEFAULTS:
            d = _KPI_DEFAULTS[c]
            cols.append(pa.array([r.get(c, d) for r in rows], f.type))
        else:
            cols.append(pa.array([r.get(c) for r in rows], f.type))
    return pa.Table.from_arrays(cols, schema=KPIS.schema)


def check_kpi_batch(doc: Any) -> int:
    """Raise TypeError / KeyError / ValueError unless ``doc`` is a KPI batch (``kind:
    kpi_batch``, :class:`~agentflux.streams.windows.WindowBatch`): the fields of a row, with
    ``at``, ``name``, ``philosophy``, ``count``, ``errors`` and each of ``sums`` and ``maxes``
    an array of one element per row, at least one. Returns the number of rows."""
    for wire in KPI_WIRE_RENAMES:
        if type(doc[wire]) is not int:
            raise TypeError(f"{wire} must be an integer (ns since the epoch)")
    for c in ("kind", "row_id", "worker", "dim", "type"):
        if type(doc.get(c)) is not str:
            raise TypeError(f"{c} must be a string")
    for c in ("revision", "source_partition"):
        if type(doc.get(c)) is not int:
            raise TypeError(f"{c} must be an integer")
    for c in (*KPI_WIRE_RENAMES, "revision", "source_partition"):
        _check_range(c, doc[c], doc[c])
    n = len(doc["name"])
    if not n:
        raise ValueError("a KPI batch holds at least one row")
    arrays = [(c, doc[c], types) for c, types in (
        ("at", (int,)), ("name", (str,)), ("philosophy", (str,)), ("count", (int,)),
        ("errors", (int,)))]
    for what, none in (("sums", False), ("maxes", True)):
        measures = doc.get(what) or {}
        if type(measures) is not dict:
            raise TypeError(f"{what} must be an object of arrays")
        arrays += [(f"{what}.{m}", v, (int, float, type(None)) if none else (int, float))
                   for m, v in measures.items()]
    for c, values, types in arrays:
        if type(values) is not list or len(values) != n:
            raise ValueError(f"{c} must be an array of {n} elements, one per row")
        wrong = set(map(type, values)).difference(types)  # (a batch holds thousands of rows)
        if wrong:
            raise TypeError(f"{c} holds a {min(t.__name__ for t in wrong)}")
        if types == (int,):
            _check_range(c, min(values), max(values))
    at = doc["at"]
    if at[0] < 0 or (n > 1 and not (np.diff(np.array(at, np.int64)) > 0).all()):
        # (the rows' ids are the batch's and these: two rows with one id, and readers keep one)
        raise ValueError("at must hold increasing row indexes from 0 up")
    return n


def kpi_batch_table(doc: dict, partition: int, offset: int) -> pa.Table:
    """A checked KPI batch (:func:`check_kpi_batch`) of the record at ``offset`` -> its rows in
    the ``kpis`` table, row ``at[i]`` of the batch with the id ``<row_id>.<at[i]>``."""
    n = len(doc["name"])
    rid = doc["row_id"]

    def measures(what: str) -> list[str]:
        m = doc.get(what) or {}
        names = list(m)
        return [orjson.dumps(dict(zip(names, vals))).decode() for vals in zip(*m.values())] \
            if names else ["{}"] * n

    def same(v: Any, t: pa.DataType) -> pa.Array:
        return pa.array([v] * n, t)
    given = {
        "kind": same("kpi", pa.string()), "row_id": pa.array([f"{rid}.{i}" for i in doc["at"]]),
        "worker": same(doc["worker"], pa.string()),
        "window_start": same(doc["window_start_ns"], pa.int64()).cast(TS),
        "window_end": same(doc["window_end_ns"], pa.int64()).cast(TS),
        "dim": same(doc["dim"], pa.string()), "type": same(doc["type"], pa.string()),
        "name": pa.array(doc["name"], pa.string()),
        "philosophy": pa.array(doc["philosophy"], pa.string()),
        "revision": same(doc["revision"], pa.int32()),
        "source_partition": same(doc["source_partition"], pa.int32()),
        "count": pa.array(doc["count"], pa.int64()), "errors": pa.array(doc["errors"], pa.int64()),
        "duration_count": same(0, pa.int64()), "duration_sum_ms": same(0.0, pa.float64()),
        "sketch": same("{}", pa.string()), "sums": pa.array(measures("sums"), pa.string()),
        "maxes": pa.array(measures("maxes"), pa.string()),
        "kafka_partition": same(partition, pa.int32()), "kafka_offset": same(offset, pa.int64())}
    return pa.Table.from_arrays([given[f.name] if f.name in given else pa.nulls(n, f.type)
                                 for f in KPIS.schema], schema=KPIS.schema)


def kpi_row(value: bytes | dict, partition: int, offset: int) -> dict:
    """One KPI row as published on ``agentflux.kpis`` (its bytes, or parsed) -> a row of the
    ``kpis`` table. Raises ValueError / KeyError / TypeError on a row that is not one."""
    row = orjson.loads(value) if isinstance(value, (bytes, bytearray, memoryview, str)) else value
    check_kpi_row(row)
    return kpi_table([row], partition, [offset]).to_pylist()[0]


KPIS = Table("kpis", pa.schema([
    ("kind", pa.string()), ("row_id", pa.string()), ("worker", pa.string()),
    ("window_start", TS), ("window_end", TS), ("dim", pa.string()),
    ("type", pa.string()), ("name", pa.string()), ("philosophy", pa.string()),
    ("revision", pa.int32()), ("source_partition", pa.int32()),
    ("count", pa.int64()), ("errors", pa.int64()),
    ("duration_count", pa.int64()), ("duration_sum_ms", pa.float64()),
    ("duration_min_ms", pa.float64()), ("duration_max_ms", pa.float64()),
    ("p50_ms", pa.float64()), ("p90_ms", pa.float64()), ("p95_ms", pa.float64()),
    ("p99_ms", pa.float64()), ("sketch", pa.string()), ("sums", pa.string()),
    ("maxes", pa.string()), ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
]))

def alert_row(t: dict, partition: int, offset: int) -> dict:
    """An alert transition (:mod:`agentflux.agents.failures`) -> a row of the ``alerts`` table;
    ``partition`` and ``offset``: the KPI record range's last offset that raised it."""
    def ts(ns: int | None) -> Any:
        return None if ns is None else pa.scalar(ns, pa.int64()).cast(TS).as_py()
    return {"fingerprint": t["fingerprint"], "status": t["status"], "rule": t["rule"],
            "kind": t["kind"], "severity": t["severity"],
            "labels": orjson.dumps(t["labels"]).decode(),
            "annotations": orjson.dumps(t.get("annotations", {})).decode(),
            "starts_at": ts(t["starts_at_ns"]), "ends_at": ts(t.get("ends_at_ns")),
            "updated_at": ts(t["updated_at_ns"]), "value": t.get("value"),
            "threshold": t.get("threshold"), "kafka_partition": partition,
            "kafka_offset": offset}


ALERTS = Table("alerts", pa.schema([
    ("fingerprint", pa.string()), ("status", pa.string()), ("rule", pa.string()),
    ("kind", pa.string()), ("severity", pa.string()), ("labels", pa.string()),
    ("annotations", pa.string()), ("starts_at", TS), ("ends_at", TS), ("updated_at", TS),
    ("value", pa.float64()), ("threshold", pa.float64()), ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
]))

# the columns of the ``kpis`` table that :func:`kpi_doc` turns back into a published row
KPI_DOC_COLUMNS = ("row_id, dim, type, name, philosophy, epoch_ns(window_start), "
                   "epoch_ns(window_end), revision, source_partition, count, errors, sums, "
                   "maxes, sketch, duration_count, duration_sum_ms")


def kpi_doc(r: Sequence[Any]) -> dict:
    """A landed KPI row (the values of :data:`KPI_DOC_COLUMNS`, in order) as the document the
    windows published (what the predictor and autoscaler read, live or replayed)."""
    (rid, dim, type_, name, phil, start, end, rev, part, count, errors, sums, maxes, sketch,
     d_count, d_sum) = r
    d = {"kind": "kpi", "row_id": rid, "dim": dim, "type": type_, "name": name,
         "philosophy": phil, "window_start_ns": int(start), "window_end_ns": int(end),
         "revision": rev, "source_partition": part, "count": count, "errors": errors,
         "sums": orjson.loads(sums) if sums else {},
         "maxes": orjson.loads(maxes) if maxes else {}}
    if sketch:
        d["sketch"] = orjson.loads(sketch)
    if d_count:
        d["duration_count"], d["duration_sum_ms"] = d_count, d_sum
    return d


def _ts(ns: int | None) -> int | None:
    """A timestamp column's value: epoch nanoseconds as they are (a datetime would lose them)."""
    return None if ns is None else int(ns)


def prediction_row(d: dict, partition: int, offset: int) -> dict:
    """A prediction (:mod:`agentflux.agents.predictor`, as published) -> a ``predictions`` row."""
    rec, mean = d.get("recommendation", {}), d.get("mean_x_1_2", {})
    row = {"key": d["key"], "philosophy": d["philosophy"], "tool": d.get("tool"),
           "issued_at": _ts(d["issued_at_ns"]), "as_of": _ts(d.get("as_of_ns")),
           "half_life_s": d.get("half_life_s"), "samples": d.get("samples"),
           "weight": d.get("weight"), "confidence": d.get("confidence"),
           "doc": orjson.dumps(d).decode(), "kafka_partition": partition, "kafka_offset": offset}
    for metric, col in PREDICTED:
        r = rec.get(metric) or {}
        for bound in ("target", "lower", "upper"):
            row[f"{col}_{bound}"] = r.get(bound)
        row[f"{col}_mean_x_1_2"] = mean.get(metric)
    return row


# the predicted metrics and their column prefixes
PREDICTED = (("cpu_percent", "cpu_percent"), ("memory_mb", "memory_mb"),
             ("execution_time_seconds", "execution_time_s"))

PREDICTIONS = Table("predictions", pa.schema([
    ("key", pa.string()), ("philosophy", pa.string()), ("tool", pa.string()),
    ("issued_at", TS), ("as_of", TS), ("half_life_s", pa.float64()), ("samples", pa.int64()),
    ("weight", pa.float64()), ("confidence", pa.float64()),
    *[(f"{col}_{b}", pa.float64()) for _, col in PREDICTED
      for b in ("target", "lower", "upper", "mean_x_1_2")],
    ("doc", pa.string()), ("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()),
]))


def command_row(c: dict, published: bool, partition: int, offset: int) -> dict:
    """A pool command (:mod:`agentflux.commands`, signed) -> a ``pool_commands`` row."""
    return {"command_id": c["command_id"], "pool": c["pool"], "generation": c["generation"],
            "action": c["action"], "target": c["target"], "min_size": c["min_size"],
            "max_size": c["max_size"], "image": c.get("image"), "reason": c["reason"],
            "inputs": orjson.dumps(c["inputs"]).decode(), "issued_at": _ts(c["issued_at_ns"]),
            "issuer": c["issuer"], "published": published, "doc": orjson.dumps(c).decode(),
            "kafka_partition": partition, "kafka_offset": offset}


POOL_COMMANDS = Table("pool_commands", pa.schema([
    ("command_id", pa.string()), ("pool", pa.string()), ("generation", pa.int64()),
    ("action", pa.string()), ("target", pa.int32()), ("min_size", pa.int32()),
    ("max_size", pa.int32()), ("image", pa.string()), ("reason", pa.string()),
    ("inputs", pa.string()), ("issued_at", TS), ("issuer", pa.string()),
    ("published", pa.bool_()), ("doc", pa.string()), ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
]))

TABLES: dict[str, Table] = {t.name: t for t in (EVENTS, DEADLETTERS, DUPLICATES, KPIS, ALERTS,
                                               PREDICTIONS, POOL_COMMANDS)}
