"""``agentflux bench detector``: the failure detector alone, on the KPI rows of simulated events.

The worker's KPI windows (every dimension, 10-s windows) are computed in-process from N simulated
events; their rows (a session's in batches, as the worker publishes them) are fed to one
:class:`~agentflux.agents.failures.FailureDetector` with the default rules, in event-time order
and in landings of 16,000 rows (the KPI lander's 16 records of up to 1,000 rows; a batch of
session rows counts its rows) each followed by a progress marker, and after each landing the detector's state
is serialised as the lander stores it (a delta, or in full: :data:`agentflux.agents.alerting.
MAX_DELTAS`). Reports the time per row of ``observe`` (parse, merge, ticks) and per landing of
the stored state, and the full state's size at the end: the costs that grow with the number of
keys (sessions) a long run has seen.

``--tool-names N`` gives the first N tool calls N distinct tool names: a flood of keys, as a
hostile or careless runtime sends. Every per-tool rule then holds N keys; the detector runs on
the worker's event loop, so its time per row is how long the worker stays deaf (to its
consumer group, to SIGTERM). ``--events 60000 --tool-names 10000``: judging every key on every
tick, 506 µs per KPI row, 14.7 s of detector time (at the 1-s windows of the integration tests,
128 s); judging only the keys that can hold (burn rates and latencies 93bf1c0: 60 µs per row;
streaks too 7b0942f), 30 µs per row, 0.9 s. Without the flood 33-37 µs per row either way.
Each rule held all 10,000 keys: its stored state was 6.4 MB at the end, 178-205 ms per landing
to store (10-12 ms without the flood). Held to ``max_keys_per_rule`` (1,000; the flood's other
rows the overflow key's, ``overflow_rows``): 1.5 MB, 20 ms per landing, 30-31 µs per row
(2026-11-27, two runs each; without the flood 25-32 µs per row and 0.9 MB before and after).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson

from agentflux.bench import report

LANDING_ROWS = 16_000


def run(events: int, seed: int = 7, tool_names: int = 0) -> dict[str, Any]:
    """``tool_names``: the first N tool calls get N distinct tool names (a flood of keys)."""
    from agentflux.agents.alerting import MAX_DELTAS
    from agentflux.agents.failures import FailureDetector, load_rules
    from agentflux.cli import tune_gc
    from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
    from agentflux.streams.windows import TumblingWindows, WindowBatch

    evs = list(SyntheticRuntime(SimConfig(events=events, agents=16, seed=seed,
                                          start_ns=1_700_000_000 * 10**9)).events())
    flood = 0
    for i, e in enumerate(evs):
        if flood >= tool_names:
            break
        if e["type"] == "tool.call":
            evs[i] = {**e, "attrs": {**e["attrs"], "tool": f"flood-tool-{flood:06d}"}}
            flood += 1
    windows = TumblingWindows(10.0, 2.0)
    rows: list[dict] = []  # rows and batches of rows, as the worker publishes them

    def publish(closed: list) -> None:
        for r in closed:
            rows.extend(r.docs("bench", 1).values() if isinstance(r, WindowBatch)
                        else [r.to_dict("bench")])
    for i in range(0, len(evs), 20_000):
        windows.add(evs[i:i + 20_000])
        publish(windows.close_due())
    publish(windows.close_due(flush_all=True))
    rows.sort(key=lambda r: r["window_end_ns"])
    del evs, windows
    tune_gc()  # as the worker's (the default thresholds collect in the middle of the timings)
    n_rows = sum(len(r["name"]) if r["kind"] == "kpi_batch" else 1 for r in rows)
    rules = dataclasses.replace(load_rules(), window_ns=10 * 10**9)
    detector = FailureDetector(rules, progress=True)
    observe_s = state_s = 0.0
    landings = transitions = full_states = 0
    full_bytes = delta_bytes = deltas = 0
    chunks: list[list[dict]] = [[]]
    held = 0
    for r in rows:  # landings of LANDING_ROWS rows (a batch counts its rows)
        chunks[-1].append(r)
        held += len(r["name"]) if r["kind"] == "kpi_batch" else 1
        if held >= LANDING_ROWS:
            chunks.append([])
            held = 0
    for chunk in filter(None, chunks):
        marker = {"kind": "progress", "source_partition": 0, "partitions": 1,
                  "done_before_ns": max(r["window_end_ns"] for r in chunk)}
        t0 = time.perf_counter()
        transitions += len(detector.observe([*chunk, marker]))
        t1 = time.perf_counter()
        if not full_states or deltas >= MAX_DELTAS or delta_bytes > full_bytes:
            full_bytes = len(orjson.dumps({"detector": detector.state(), "outbox": []}))
            full_states, deltas, delta_bytes = full_states + 1, 0, 0
        else:
            delta_bytes += len(orjson.dumps({"base": 0, "delta": detector.delta(), "outbox": []}))
            deltas += 1
        state_s += time.perf_counter() - t1
        observe_s += t1 - t0
        landings += 1
    state_bytes = len(orjson.dumps({"detector": detector.state(), "outbox": []}))
    span_ns = rows[-1]["window_end_ns"] - rows[0]["window_start_ns"] if rows else 0
    return {
        "events": events, "tool_names_flooded": flood, "kpi_rows": n_rows,
        "kpi_documents": len(rows),
        "session_rows": sum(len(r["name"]) if r["kind"] == "kpi_batch" else 1
                            for r in rows if r["dim"] == "session"),
        "event_time_minutes": round(span_ns / 60e9, 1), "landings": landings,
        "transitions": transitions, "full_states": full_states,
        "observe_us_per_row": round(observe_s / max(n_rows, 1) * 1e6, 2),
        "state_ms_per_landing": round(state_s / max(landings, 1) * 1e3, 2),
        "state_bytes_at_end": state_bytes,
        "detector_us_per_event": round((observe_s + state_s) / max(events, 1) * 1e6, 3),
        # rows of keys past max_keys_per_rule, taken as each rule's overflow key's
        "overflow_rows": detector.take_overflowed(),
    }


def main(events: int, seed: int, as_json: bool, console: Any, tool_names: int = 0) -> int:
    return report(run(events, seed, tool_names), as_json, console)
