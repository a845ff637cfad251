"""Peers of the worker in ``agentflux bench pipeline``: the same events through the same work
written with other tools, each run in a process of its own by the benchmark.

* ``quixstreams``: an idiomatic Quix Streams application (``Application`` +
  ``StreamingDataFrame``, as its documentation shows them): explode each record's array of
  events, validate every event (a bad one is counted, not landed), land every valid event in a
  DuckDB history through a ``BatchingSink``, and p50/p99 per span key in 10 s tumbling windows
  (``group_by`` span key, then ``tumbling_window().agg(...).final()``; the closed windows land
  through a second ``BatchingSink``).
* ``raw``: a bare aiokafka consumer that fetches the records and decodes their JSON with orjson,
  then discards it: what a Python consumer can do on this machine at all.

The per-event Faust baseline is :mod:`agentflux.bench.baseline`. Every peer prints one JSON
line, ``{"events": N, "seconds": S, "events_per_s": R, ...}``, once all N events are processed
(landed or counted bad), the clock running from its first consumed record.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any, Callable, Iterable

import orjson

WINDOW_S = 10.0
GRACE_S = 2.0
CONSUMER = "quixstreams"


def _report(events: int, seconds: float, timed: int | None = None, **extra: Any) -> None:
    """Print the result line; ``timed``: the events processed within ``seconds`` (default all)."""
    timed = events if timed is None else timed
    sys.__stdout__.write(orjson.dumps({"events": events, "seconds": seconds, "timed": timed,
                                       "events_per_s": timed / seconds, **extra}).decode() + "\n")
    sys.__stdout__.flush()


# --- Quix Streams ------------------------------------------------------------------------------

class QuixRun:
    """The counts of one Quix Streams run; reports and stops the application once every event
    has been landed or counted bad, and every valid one has reached its window."""

    def __init__(self, events: int, stop: Callable[[], None],
                 check: Callable[[dict], Any]):
        self.events, self._stop, self._check = events, stop, check
        self.t0: float | None = None
        self.bad = self.landed = self.windowed = self.late = self.kpi_rows = 0
        self.reported = False

    def explode(self, record: list[dict]) -> list[dict]:
        if self.t0 is None:
            self.t0 = time.perf_counter()
        return record

    def valid(self, event: dict) -> bool:
        if self._check(event) is None:
            return True
        self.bad += 1
        self._check_done()
        return False

    def reached_window(self, _value: Any) -> None:
        self.windowed += 1
        self._check_done()

    def on_late(self, *_args: Any) -> bool:
        self.late += 1
        return False  # counted here; no log line per late event

    def on_landed(self, n: int) -> None:
        self.landed += n
        self._check_done()

    def _check_done(self) -> None:
        if (self.reported or self.landed + self.bad < self.events
                or self.windowed < self.events - self.bad):
            return
        self.reported = True
        _report(self.events, time.perf_counter() - self.t0, landed=self.landed, bad=self.bad,
                late=self.late, kpi_rows=self.kpi_rows)
        self._stop()


def kpi_table(rows: list[dict[str, Any]], worker: str):
    """KPI rows of closed windows for the history's kpis table, from dicts with ``start_ns``,
    ``end_ns``, ``type``, ``name``, ``philosophy``, ``count``, ``errors``, ``p50_ms``, ``p99_ms``."""
    import pyarrow as pa
    ns = pa.timestamp("ns", tz="UTC")

    def col(field: str, kind: Any) -> Any:
        return pa.array([r[field] for r in rows], kind)

    return pa.table({
        "kind": ["timing"] * len(rows), "worker": [worker] * len(rows),
        "window_start": col("start_ns", pa.int64()).cast(ns),
        "window_end": col("end_ns", pa.int64()).cast(ns),
        "type": col("type", pa.string()), "name": col("name", pa.string()),
        "philosophy": col("philosophy", pa.string()), "count": col("count", pa.int64()),
        "errors": col("errors", pa.int64()), "p50_ms": col("p50_ms", pa.float64()),
        "p99_ms": col("p99_ms", pa.float64())})


def _percentile(ordered: list[float], q: float) -> float | None:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def build_quix_app(bootstrap: str, topic: str, events: int, db: str, state_dir: str):
    """The application and its run counts. Nothing connects before ``app.run()``."""
    from datetime import timedelta

    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Sum
    from quixstreams.dataframe.windows.aggregations import Collector
    from quixstreams.sinks import BatchingSink, SinkBatch

    from ..schemas.validate import check
    from ..sinks.duckdb import DuckDBHistory, events_table
    from ..streams.windows import span_of

    class DuckDBEventsSink(BatchingSink):
        """Lands the events of one topic partition and checkpoint as one Arrow table, with the
        partition's last offset, in one history transaction."""

        def __init__(self, history: DuckDBHistory, on_landed: Callable[[int], None]):
            super().__init__()
            self.history, self.on_landed = history, on_landed

        def write(self, batch: SinkBatch) -> None:
            evs = [item.value for item in batch]
            offsets = [item.offset for item in batch]
            table = events_table(evs, [span_of(e) for e in evs], [batch.partition] * len(evs),
                                 offsets)
            self.history.write(CONSUMER, {(batch.topic, batch.partition): offsets[-1]},
                               events=table)
            self.on_landed(len(evs))

    class DuckDBWindowsSink(BatchingSink):
        """Lands closed windows (count, errors, p50, p99 per span key) in the kpis table."""

        def __init__(self, history: DuckDBHistory, run: QuixRun):
            super().__init__()
            self.history, self.run = history, run

        def write(self, batch: SinkBatch) -> None:
            items = list(batch)
            table = kpi_table([{"start_ns": i.value["start"] * 1_000_000,
                                "end_ns": i.value["end"] * 1_000_000,
                                "type": i.key[0], "name": i.key[1], "philosophy": i.key[2],
                                "count": i.value["count"], "errors": i.value["errors"],
                                **i.value["durations"]} for i in items], CONSUMER)
            self.history.write(CONSUMER, {(batch.topic, batch.partition): items[-1].offset},
                               kpis=table)
            self.run.kpi_rows += len(items)

    class Percentiles(Collector):
        """p50 and p99 of a window's durations (events of a type without one collect None)."""

        def result(self, items: Iterable[float | None]) -> dict[str, float | None]:
            ordered = sorted(d for d in items if d is not None)
            return {"p50_ms": _percentile(ordered, 0.5), "p99_ms": _percentile(ordered, 0.99)}

    def span_value(event: dict) -> dict:
        span, duration_ms, error = span_of(event)
        return {"span": list(span), "duration_ms": duration_ms, "error": int(error)}

    # commit_interval: the sinks write at every checkpoint; 1 s instead of the default 5 s keeps
    # the tail of a short run (the last checkpoint) from dominating its duration.
    app = Application(broker_address=bootstrap,
                      consumer_group=f"{CONSUMER}-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", state_dir=state_dir, loglevel="WARNING",
                      commit_interval=1.0)
    run = QuixRun(events, app.stop, check)
    history = DuckDBHistory(db)

    sdf = app.dataframe(app.topic(topic, value_deserializer="json"))
    sdf = sdf.apply(run.explode, expand=True)  # a record is an array of events
    sdf = sdf.filter(run.valid)
    sdf = sdf.set_timestamp(lambda event, _key, _ts, _headers: event["ts"] // 1_000_000)
    sdf.sink(DuckDBEventsSink(history, run.on_landed))

    spans = sdf.apply(span_value).group_by("span")  # re-keyed through a repartition topic
    spans = spans.update(run.reached_window)
    windows = (spans.tumbling_window(timedelta(seconds=WINDOW_S), grace_ms=timedelta(seconds=GRACE_S),
                                     on_late=run.on_late)
               .agg(count=Count(), errors=Sum("error"), durations=Percentiles("duration_ms"))
               .final())
    windows.sink(DuckDBWindowsSink(history, run))
    return app, run, history


def run_quix(args: argparse.Namespace) -> None:
    app, run, history = build_quix_app(args.bootstrap, args.topic, args.events, args.db,
                                       args.state_dir)
    try:
        app.run()
    finally:
        history.close()
    if not run.reported:
        raise SystemExit(f"stopped after {run.landed} landed and {run.bad} bad of {run.events}")


# --- raw consumer ------------------------------------------------------------------------------

async def drain_raw(bootstrap: str, topic: str, events: int) -> dict[str, Any]:
    """Fetch records until ``events`` events are decoded. The clock starts when the first fetch
    returns: the events of that fetch are not counted in the rate (their fetch was not timed),
    unless it returned them all (then it starts before that fetch)."""
    from aiokafka import AIOKafkaConsumer

    # no consumer group: every partition, from the beginning, no offset commits
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=2 * 1024 * 1024)
    await consumer.start()
    try:
        loads = orjson.loads
        n = size = untimed = 0
        t0 = t_call = None
        while n < events:
            if t0 is None:
                t_call = time.perf_counter()
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for msgs in batches.values():
                for m in msgs:
                    n += len(loads(m.value))
                    size += len(m.value)
            if t0 is None and n:
                t0, untimed = time.perf_counter(), n
        t1 = time.perf_counter()
        if n == untimed:  # one fetch brought everything
            t0, untimed = t_call, 0
        return {"events": n, "seconds": t1 - t0, "timed": n - untimed, "bytes": size}
    finally:
        await consumer.stop()


def run_raw(args: argparse.Namespace) -> None:
    import asyncio
    _report(**asyncio.run(drain_raw(args.bootstrap, args.topic, args.events)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m agentflux.bench.peers")
    ap.add_argument("peer", choices=["quixstreams", "raw"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--db", help="quixstreams: the DuckDB history file")
    ap.add_argument("--state-dir", help="quixstreams: the application's state directory")
    args = ap.parse_args(argv)
    if args.peer == "quixstreams":
        if not (args.db and args.state_dir):
            ap.error("quixstreams needs --db and --state-dir")
        run_quix(args)
    else:
        run_raw(args)


if __name__ == "__main__":
    main()
