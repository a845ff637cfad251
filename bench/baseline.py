"""The per-event baseline: one event per Kafka record through a plain per-event Faust agent.

One of the worker's peers in ``agentflux bench pipeline`` (the others are in
:mod:`agentflux.bench.peers`). It does the same work as the worker (decode, validate, p50/p99
per span key in 10 s tumbling windows, land events and closed windows in DuckDB through Arrow
in blocks of 1,000) but receives one record per event, which is how a Faust pipeline is usually
written. Prints one JSON line when done, the clock running from its first record.
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
    ap.add_argument("--db", required=True)
    ap.add_argument("--web-port", type=int, required=True)
    args = ap.parse_args()

    import faust
    import orjson

    from ..schemas.validate import check
    from ..sinks.duckdb import DuckDBHistory, events_table
    from ..streams.windows import TumblingWindows, span_of
    from .peers import kpi_table

    app = faust.App(f"baseline-{args.topic}", broker=f"kafka://{args.bootstrap}",
                    store="memory://", web_port=args.web_port, web_bind="127.0.0.1",
                    topic_disable_leader=True, consumer_auto_offset_reset="earliest",
                    value_serializer="raw", autodiscover=False, stream_wait_empty=False,
                    datadir=os.path.dirname(os.path.abspath(args.db)))
    topic = app.topic(args.topic, value_serializer="raw")
    history = DuckDBHistory(args.db)
    windows = TumblingWindows(10, 2)
    state = {"n": 0, "t0": None, "buf": [], "bad": 0}

    def land() -> None:
        buf = state["buf"]
        spans = [span_of(e) for e in buf]
        closed = [{"start_ns": w.window_start_ns, "end_ns": w.window_end_ns, "type": w.type,
                   "name": w.name, "philosophy": w.philosophy, "count": w.count,
                   "errors": w.errors, "p50_ms": w.sketch.quantile(0.5),
                   "p99_ms": w.sketch.quantile(0.99)} for w in windows.close_due()]
        history.write("baseline", {}, events=events_table(buf, spans, [0] * len(buf), [0] * len(buf)),
                      kpis=kpi_table(closed, "baseline") if closed else None)
        state["buf"] = []

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
                state["buf"].append(ev)
                if len(state["buf"]) >= 1000:
                    land()
            state["n"] += 1
            if state["n"] == args.events:
                if state["buf"]:
                    land()
                elapsed = time.perf_counter() - state["t0"]
                sys.__stdout__.write(orjson.dumps({"events": state["n"], "seconds": elapsed,
                                    "events_per_s": state["n"] / elapsed}).decode() + "\n")
                sys.__stdout__.flush()
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
