"""The per-event baseline: one event per Kafka record through a plain per-event Faust agent.

One of the worker's peers in ``agentflux bench pipeline`` (the others are in
:mod:`agentflux.bench.peers`). It does the same work as the worker (decode, validate, p50/p99
per span key in 10 s tumbling windows, land events and closed windows as Parquet segments of
the history: every 1,000 events, one segment per partition through a
:class:`~agentflux.sinks.sink.ParquetSink`) but receives one record per event, which is how a
Faust pipeline is usually written. Prints one JSON line when done, the clock running from its
first record.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--history", required=True, help="the history's root directory")
    ap.add_argument("--web-port", type=int, required=True)
    args = ap.parse_args()

    import faust
    import orjson

    from ..schemas.validate import check
    from ..sinks.history import History, log_id
    from ..sinks.sink import ParquetSink
    from ..sinks.tables import EVENTS, KPIS
    from ..schemas.sketch import DDSketch
    from ..streams.fields import span_of
    from .peers import event_row, kpi_rows

    root = os.path.abspath(args.history)
    app = faust.App(f"baseline-{args.topic}", broker=f"kafka://{args.bootstrap}",
                    store="memory://", web_port=args.web_port, web_bind="127.0.0.1",
                    topic_disable_leader=True, consumer_auto_offset_reset="earliest",
                    value_serializer="raw", autodiscover=False, stream_wait_empty=False,
                    datadir=os.path.dirname(root))
    topic = app.topic(args.topic, value_serializer="raw")
    history = History(root)
    events = ParquetSink(EVENTS, log_id("baseline", args.topic), history)
    # closed windows come from the events of every partition: their rows are numbered in a log
    # of their own (partition 0), the segment named by the first and last row numbers
    kpis = ParquetSink(KPIS, log_id("baseline", "windows"), history)
    windows = PerEventWindows(10, 2, span_of, DDSketch)
    # held: partition -> [first offset, last offset, rows] of the events not landed yet
    state = {"n": 0, "t0": None, "held": {}, "rows": 0, "bad": 0, "kpi_rows": 0}

    def land() -> None:
        for p, (first, last, rows) in state["held"].items():
            events.add(p, first, last, rows)
        closed = [{**w, "partition": 0, "offset": state["kpi_rows"] + i}
                  for i, w in enumerate(windows.close_due())]
        if closed:
            kpis.add(0, closed[0]["offset"], closed[-1]["offset"], kpi_rows(closed, "baseline"))
            state["kpi_rows"] += len(closed)
        for sink in (events, kpis):
            for batch in sink.take():
                sink.write(batch)
        state["held"], state["rows"] = {}, 0

    @app.agent(topic)
    async def per_event(stream):
        async for value in stream:  # one record = one event
            if state["t0"] is None:
                state["t0"] = time.perf_counter()
            ev = orjson.loads(value)
            if check(ev) is not None:
                state["bad"] += 1
            else:
                windows.add([ev])
                m = stream.current_event.message
                held = state["held"].get(m.partition)
                if held is None:
                    held = state["held"][m.partition] = [m.offset, m.offset, []]
                held[1] = m.offset
                held[2].append(event_row(ev, m.partition, m.offset))
                state["rows"] += 1
                if state["rows"] >= 1000:
                    land()
            state["n"] += 1
            if state["n"] == args.events:
                if state["rows"]:
                    land()
                elapsed = time.perf_counter() - state["t0"]
                sys.__stdout__.write(orjson.dumps({"events": state["n"], "seconds": elapsed,
                                    "events_per_s": state["n"] / elapsed}).decode() + "\n")
                sys.__stdout__.flush()
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


class PerEventWindows:
    """Tumbling windows of RED metrics updated one event at a time, as a per-event agent does:
    count, errors and a DDSketch of durations per (window, type, name, philosophy), closed when
    the watermark passes ``end + grace``."""

    def __init__(self, size_s: float, grace_s: float, span_of, sketch):
        self.size, self.grace = int(size_s * 1e9), int(grace_s * 1e9)
        self.span_of, self.sketch = span_of, sketch
        self.open: dict = {}
        self.watermark = 0

    def add(self, events: list) -> None:
        for ev in events:
            span, dur, err = self.span_of(ev)
            start = ev["ts"] - ev["ts"] % self.size
            acc = self.open.get((start, span))
            if acc is None:
                acc = self.open[(start, span)] = [0, 0, self.sketch()]
            acc[0] += 1
            acc[1] += err
            if dur is not None:
                acc[2].add(dur)
            self.watermark = max(self.watermark, ev["ts"])

    def close_due(self) -> list[dict]:
        out = []
        for (start, (t, name, phil)), (n, errors, s) in list(self.open.items()):
            if self.watermark >= start + self.size + self.grace:
                del self.open[(start, (t, name, phil))]
                out.append({"start_ns": start, "end_ns": start + self.size, "type": t,
                            "name": name, "philosophy": phil, "count": n, "errors": errors,
                            "p50_ms": s.quantile(0.5), "p99_ms": s.quantile(0.99)})
        return out


if __name__ == "__main__":
    main()
