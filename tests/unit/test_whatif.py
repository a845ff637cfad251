"""What-if replay (agentflux/whatif.py) over a history holding simulated pool events and the
KPI rows the pipeline would have made of them, written with the project's own writer."""

from __future__ import annotations

import os

import orjson
import pyarrow as pa
import pytest

from agentflux.bench import autoscale as bench
from agentflux.sinks.history import History, log_id
from agentflux.sinks.tables import EVENTS, KPIS, kpi_row
from agentflux.whatif import demand, render, run_whatif

LAT = bench.StartLatency(0.5, 0.0)  # a fixed start: the replay can reproduce the recording


def events_table(events: list[dict]) -> pa.Table:
    rows = []
    for i, e in enumerate(events):
        ts = bench.EPOCH_NS + int(round(e["t"] * 1e9))
        attrs = {k: e[k] for k in ("pool", "warm", "startup_ms", "available", "in_use",
                                   "target") if k in e}
        rows.append({"id": f"e{i}", "type": e["type"], "v": 1, "ts": ts, "ts_ns": ts,
                     "philosophy": e["pool"], "name": e["pool"],
                     "duration_ms": e.get("startup_ms"), "error": False,
                     "attrs": orjson.dumps(attrs).decode(), "kafka_partition": 0,
                     "kafka_offset": i})
    return pa.Table.from_pylist(rows, schema=EVENTS.schema)


def kpi_rows(events: list[dict], window_s: float) -> list[dict]:
    acq = [(e["t"], e["warm"], e["available"], e["in_use"], e["target"]) for e in events
           if e["type"] == "pool.acquire"]
    end = max(e["t"] for e in events)
    out = []
    for k in range(int(end / window_s) + 1):
        out += bench.window_rows("react", acq, k * window_s, (k + 1) * window_s, k)
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A history of 60 s of a static pool of 4 under a small bursty day."""
    root = tmp_path_factory.mktemp("history")
    trace = bench.bursty_trace(3, 60.0, peak=12.0, trough=1.0, bursts=2, burst_size=5)
    sim = bench.simulate({"react": trace}, bench.Static(size=4), latency=LAT, record=True)
    h = History(str(root))
    h.init()
    log = log_id("c", "t")
    ev = events_table(sim["events"])
    h.write_segment(EVENTS, ev, log=log, partition=0, first=0, last=ev.num_rows - 1)
    rows = kpi_rows(sim["events"], 1.0)
    kt = KPIS.rows([kpi_row(orjson.dumps(r), 0, i) for i, r in enumerate(rows)])
    h.write_segment(KPIS, kt, log=log, partition=0, first=0, last=len(rows) - 1)
    return str(root), trace, sim


def _files(root: str) -> dict[str, float]:
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime
            for d, _, fs in os.walk(root) for f in fs}


def test_whatif_reads_the_recorded_demand_and_writes_nothing(recorded):
    root, trace, sim = recorded
    before = _files(root)
    r = run_whatif(root, bench.default_policy(), latency=LAT, window_s=1.0)
    assert _files(root) == before, "the replay wrote into the history"
    assert r["pools"] == ["react"]
    assert r["demand"]["react"]["arrivals"] == len(trace)
    rec = r["recorded"]
    assert rec["warm_starts"] == sim["warm_starts"] and rec["cold_starts"] == sim["cold_starts"]
    assert rec["warm_start_rate"] == sim["warm_start_rate"]
    assert set(r["policies"]) == {"static", "reactive", "policy"}
    p = r["policies"]["policy"]
    assert p["acquires"] == len(trace) and p["commands"] > 0
    assert p["on_recorded_rows"]["commands"] > 0
    for f in r["policies"].values():
        assert {"warm_start_rate", "cold_starts", "idle_container_s", "p99_acquire_ms"} <= set(f)


def test_the_recorded_policy_replayed_reproduces_the_recording(recorded):
    """FIFO matching of releases to acquisitions changes which hold goes with which
    acquisition, not the in-use curve: the static pool of 4 replayed over the demand makes the
    same warm and cold starts as it did when recorded."""
    root, trace, sim = recorded
    r = run_whatif(root, bench.default_policy(), latency=LAT, window_s=1.0, baselines=False)
    traces, _ = demand(_events(root))
    again = bench.simulate(traces, bench.Static(size=4), latency=LAT)
    assert (again["warm_starts"], again["cold_starts"]) == (sim["warm_starts"],
                                                           sim["cold_starts"])
    # the replay's clock starts at the first arrival: the 4 idle containers before it are not
    # in its integral
    assert again["idle_container_s"] == pytest.approx(sim["idle_container_s"] - 4 * trace[0][0],
                                                      abs=0.11)
    arrivals = sorted(a for a, _ in traces["react"])
    assert arrivals == pytest.approx([a - trace[0][0] for a, _ in trace], abs=1e-6)
    assert set(r["policies"]) == {"policy"}


def _events(root: str):
    from agentflux.whatif import read_history
    return read_history(root)[0]


def test_two_policies_side_by_side(recorded, tmp_path):
    root, _, _ = recorded
    lean = tmp_path / "lean.yaml"
    lean.write_text("autoscaler:\n  headroom: 0.5\n  scale_down_stabilization_s: 1\n"
                    "  interval_s: 1\n")
    r = run_whatif(root, bench.default_policy(), other=str(lean), latency=LAT)
    a, b = r["policies"]["policy"], r["policies"]["other"]
    assert b["idle_container_s"] < a["idle_container_s"]  # less head room, fewer spares
    text = render(r)
    assert "policy" in text and "other" in text and "recorded" in text
    assert "warm-start rate" in text and "idle container-s" in text


def test_pools_filter_and_a_missing_history(recorded, tmp_path):
    root, _, _ = recorded
    r = run_whatif(root, None, pools=["other"], latency=LAT)
    assert r["pools"] == [] and r["recorded"]["acquires"] == 0
    with pytest.raises(FileNotFoundError):
        run_whatif(str(tmp_path / "nothing"), None)
    assert not (tmp_path / "nothing").exists()
