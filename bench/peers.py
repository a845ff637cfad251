"""Peers of the worker in ``agentflux bench pipeline``: the same events through the same work
written with other tools, each run in a process of its own by the benchmark.

* ``quixstreams``: an idiomatic Quix Streams application (``Application`` +
  ``StreamingDataFrame``, as its documentation shows them): explode each record's array of
  events, validate every event (a bad one is counted, not landed), land every valid event in a
  Parquet history (:class:`agentflux.sinks.history.History`) through a ``BatchingSink`` whose
  ``write(batch)`` writes one segment per batch (the batch's partition and first/last offsets),
  as the worker does, and p50/p99 per span key in 10 s tumbling windows (``group_by`` span key,
  then ``tumbling_window().agg(...).final()``; the closed windows land through a second
  ``BatchingSink``, one ``kpis`` segment per batch).
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

from ..streams.fields import span_of

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

    def count_kpi_rows(self, n: int) -> None:
        self.kpi_rows += n

    def _check_done(self) -> None:
        if (self.reported or self.landed + self.bad < self.events
                or self.windowed < self.events - self.bad):
            return
        self.reported = True
        _report(self.events, time.perf_counter() - self.t0, landed=self.landed, bad=self.bad,
                late=self.late, kpi_rows=self.kpi_rows)
        self._stop()


def event_row(event: dict, partition: int, offset: int) -> dict:
    """One validated wire event -> a row of the history's ``events`` table (the columns the
    worker lands: the span's name, duration and error as :func:`span_of` reads them, ``attrs``
    as JSON text, the Kafka record it came from)."""
    (_, name, _), duration_ms, error = span_of(event)
    src = event["source"]
    return {"id": event["id"], "type": event["type"], "v": event["v"], "ts": event["ts"],
            "ts_ns": event["ts"], "agent_id": event["agent_id"],
            "session_id": event["session_id"], "philosophy": event["philosophy"],
            "source_runtime": src["runtime"], "source_host": src["host"],
            "source_pid": src["pid"], "trace_id": event.get("trace_id"),
            "span_id": event.get("span_id"), "parent_span_id": event.get("parent_span_id"),
            "name": name or None, "duration_ms": duration_ms, "error": error,
            "attrs": orjson.dumps(event["attrs"]).decode(), "kafka_partition": partition,
            "kafka_offset": offset}


def kpi_rows(windows: list[dict[str, Any]], worker: str) -> list[dict[str, Any]]:
    """Rows of the history's ``kpis`` table for closed windows, from dicts with ``start_ns``,
    ``end_ns``, ``type``, ``name``, ``philosophy``, ``count``, ``errors``, ``p50_ms``,
    ``p99_ms``, ``partition`` and ``offset`` (where the row counts in its segment's log); the
    columns these peers do not compute (revision, sketch, ...) are null."""
    return [{"kind": "timing", "worker": worker, "window_start": w["start_ns"],
             "window_end": w["end_ns"], "type": w["type"], "name": w["name"],
             "philosophy": w["philosophy"], "count": w["count"], "errors": w["errors"],
             "p50_ms": w["p50_ms"], "p99_ms": w["p99_ms"], "kafka_partition": w["partition"],
             "kafka_offset": w["offset"]} for w in windows]


def _percentile(ordered: list[float], q: float) -> float | None:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def build_quix_app(bootstrap: str, topic: str, events: int, root: str, state_dir: str):
    """The application and its run counts. Nothing connects before ``app.run()``."""
    from datetime import timedelta

    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Sum
    from quixstreams.dataframe.windows.aggregations import Collector
    from quixstreams.sinks import BatchingSink, SinkBatch

    from ..schemas.validate import check
    from ..sinks.history import History, log_id
    from ..sinks.tables import EVENTS, KPIS, Table

    class SegmentSink(BatchingSink):
        """Lands each batch (one topic partition, one checkpoint) as one history segment named
        by the batch's partition and first/last offsets; offsets count in the log of the topic
        they were read from."""

        def __init__(self, history: History, table: Table,
                     rows: Callable[[SinkBatch], list[dict]],
                     on_landed: Callable[[int], None]):
            super().__init__()
            self.history, self.table, self.rows, self.on_landed = history, table, rows, on_landed

        def write(self, batch: SinkBatch) -> None:
            items = list(batch)
            self.history.write_segment(self.table, self.table.rows(self.rows(batch)),
                                       log=log_id(CONSUMER, batch.topic),
                                       partition=batch.partition, first=items[0].offset,
                                       last=items[-1].offset)
            self.on_landed(len(items))

    def event_rows(batch: SinkBatch) -> list[dict]:
        return [event_row(i.value, batch.partition, i.offset) for i in batch]

    def window_rows(batch: SinkBatch) -> list[dict]:
        return kpi_rows([{"start_ns": i.value["start"] * 1_000_000,
                          "end_ns": i.value["end"] * 1_000_000,
                          "type": i.key[0], "name": i.key[1], "philosophy": i.key[2],
                          "count": i.value["count"], "errors": i.value["errors"],
                          **i.value["durations"], "partition": batch.partition,
                          "offset": i.offset} for i in batch], CONSUMER)

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
    history = History(root)

    sdf = app.dataframe(app.topic(topic, value_deserializer="json"))
    sdf = sdf.apply(run.explode, expand=True)  # a record is an array of events
    sdf = sdf.filter(run.valid)
    sdf = sdf.set_timestamp(lambda event, _key, _ts, _headers: event["ts"] // 1_000_000)
    sdf.sink(SegmentSink(history, EVENTS, event_rows, run.on_landed))

    spans = sdf.apply(span_value).group_by("span")  # re-keyed through a repartition topic
    spans = spans.update(run.reached_window)
    windows = (spans.tumbling_window(timedelta(seconds=WINDOW_S), grace_ms=timedelta(seconds=GRACE_S),
                                     on_late=run.on_late)
               .agg(count=Count(), errors=Sum("error"), durations=Percentiles("duration_ms"))
               .final())
    windows.sink(SegmentSink(history, KPIS, window_rows, run.count_kpi_rows))
    return app, run


def run_quix(args: argparse.Namespace) -> None:
    app, run = build_quix_app(args.bootstrap, args.topic, args.events, args.history,
                              args.state_dir)
    app.run()
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
    ap.add_argument("--history", help="quixstreams: the history's root directory")
    ap.add_argument("--state-dir", help="quixstreams: the application's state directory")
    args = ap.parse_args(argv)
    if args.peer == "quixstreams":
        if not (args.history and args.state_dir):
            ap.error("quixstreams needs --history and --state-dir")
        run_quix(args)
    else:
        run_raw(args)


if __name__ == "__main__":
    main()
