"""What-if replay: recorded pool demand through other autoscaler policies, offline.

``agentflux whatif --history PATH --policy autoscaler.yaml`` reads the history read-only
through its DuckDB views (:func:`agentflux.sinks.catalog.connect`): the demand per pool from the
``pool.acquire`` / ``pool.release`` events (arrival = the acquire's event time minus its startup
time; hold = the time to a release of the same pool, releases matched to acquires first in first
out: any matching reproduces the in-use curve, which is all a pool's size depends on), and the
recorded KPI rows of ``pool.acquire`` from the ``kpis`` view. It then runs

* the simulator of :mod:`agentflux.bench.autoscale` over that demand with each policy given
  (the autoscaler fed with the KPI rows its own simulated pool would produce, so a policy's
  effect on warm and cold starts feeds back as it would live), plus the static pool and the
  specification's reactive pre-warming for reference: the same figures as ``agentflux bench
  autoscale`` (warm-start rate, cold starts, idle container-seconds, p99 acquire latency);
* the same :class:`~agentflux.agents.autoscaler.Autoscaler` over the recorded KPI rows: the
  commands the policy would have issued on what was actually observed;
* the resource predictor (:mod:`agentflux.agents.predictor`, when present) over the recorded
  rows, for the predictions the policy's ``predictor:`` section gives;

and the figures actually recorded (from the events) for comparison.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any, Iterable, Mapping, Sequence

import orjson

from agentflux.agents.autoscaler import AutoscalerPolicy, replay
from agentflux.bench import autoscale as sim
from agentflux.sinks.tables import KPI_DOC_COLUMNS, kpi_doc

_EVENTS_SQL = """
SELECT coalesce(name, json_extract_string(attrs, '$.pool')) AS pool, type, ts_ns,
       duration_ms, attrs
FROM events WHERE type IN ('pool.acquire', 'pool.release')
ORDER BY ts_ns
"""

_KPIS_SQL = """
SELECT {columns}
FROM kpis
WHERE kind = 'kpi' AND ((type = 'pool.acquire' AND dim IN ('name', 'cold'))
                        OR dim = 'resource')
ORDER BY window_end, source_partition
""".format(columns=KPI_DOC_COLUMNS)


def connect_read_only(root: str):
    """The history's DuckDB views, writing nothing (:func:`agentflux.analysis.connect`)."""
    from agentflux.analysis import connect
    return connect(root)


def load_policy(policy: str | AutoscalerPolicy | Mapping[str, Any] | None) -> AutoscalerPolicy:
    if policy is None:
        return sim.default_policy()
    if isinstance(policy, AutoscalerPolicy):
        return policy
    if isinstance(policy, Mapping):
        return AutoscalerPolicy.from_dict(policy)
    return AutoscalerPolicy.from_yaml(str(policy))


def read_history(root: str) -> tuple[list[tuple], list[dict]]:
    """``(events, kpi rows)``: the pool events as ``(pool, type, ts_ns, duration_ms, attrs)``
    in event-time order, and the KPI rows of ``pool.acquire`` (the autoscaler's) and of the
    ``resource`` dimension (the predictor's) as published documents."""
    con = connect_read_only(root)
    try:
        events = con.execute(_EVENTS_SQL).fetchall()
        rows = [kpi_doc(r) for r in con.execute(_KPIS_SQL).fetchall()]
    finally:
        con.close()
    return events, rows


def demand(events: Iterable[Sequence[Any]]) -> tuple[dict[str, sim.Trace], dict[str, Any]]:
    """The demand per pool (``(arrival_s, hold_s)`` from the first event, FIFO matching) and
    the recorded figures per pool (warm starts, cold starts, p99 startup, idle
    container-seconds from the ``available`` each event reports)."""
    evs = list(events)
    if not evs:
        return {}, {}
    t0 = min(int(e[2]) - int((e[3] or 0) * 1e6) for e in evs)
    open_: dict[str, deque] = defaultdict(deque)
    traces: dict[str, list] = defaultdict(list)
    rec: dict[str, dict] = defaultdict(lambda: {"warm_starts": 0, "cold_starts": 0, "lat": [],
                                                "idle_s": 0.0, "last": None})
    for pool, type_, ts, dur, attrs in evs:
        a = orjson.loads(attrs) if attrs else {}
        t = (int(ts) - t0) / 1e9
        r = rec[pool]
        if r["last"] is not None:
            r["idle_s"] += r["last"][1] * (t - r["last"][0])
        if a.get("available") is not None:
            r["last"] = (t, float(a["available"]))
        if type_ == "pool.acquire":
            startup_s = float(dur if dur is not None else a.get("startup_ms") or 0) / 1000
            open_[pool].append((t - startup_s, t))
            r["warm_starts" if a.get("warm") else "cold_starts"] += 1
            r["lat"].append(startup_s)
        elif open_[pool]:
            arrival, got = open_[pool].popleft()
            traces[pool].append((arrival, t - got))
    for pool, q in open_.items():  # never released (in the history): held to the end
        end = max((int(e[2]) - t0) / 1e9 for e in evs)
        traces[pool].extend((a, max(0.0, end - g)) for a, g in q)
    figures = {}
    for pool, r in rec.items():
        n = r["warm_starts"] + r["cold_starts"]
        figures[pool] = {"acquires": n, "warm_starts": r["warm_starts"],
                         "cold_starts": r["cold_starts"],
                         "warm_start_rate": round(r["warm_starts"] / n, 4) if n else None,
                         "idle_container_s": round(r["idle_s"], 1),
                         "p99_acquire_ms": round(sim._p99(r["lat"]) * 1000, 1)}
    return {p: sorted(tr) for p, tr in traces.items()}, figures


def _predictions(policy: AutoscalerPolicy, root_rows: list[dict]) -> Any:
    try:
        from agentflux.agents.predictor import Predictor, PredictorPolicy
    except ImportError:
        return None
    try:
        p = Predictor(PredictorPolicy.from_dict(policy.predictor or {}))
        now = 0
        for d in root_rows:
            p.observe(d)
            now = max(now, d["window_end_ns"])
        return p.predictions(now) if now else []
    except Exception as exc:  # the predictor is someone else's: report, do not fail the replay
        return {"error": repr(exc)}


def run_whatif(history_path: str, policy: Any = None, pools: Sequence[str] | None = None, *,
               other: Any = None, window_s: float | None = None,
               latency: sim.StartLatency | None = None, seed: int = 1,
               baselines: bool = True) -> dict[str, Any]:
    """Replay the recorded demand of ``history_path`` (read only) through ``policy`` (a YAML
    path, a mapping or an :class:`AutoscalerPolicy`) and, given, ``other`` (a second policy,
    side by side); ``pools`` limits the pools. ``window_s``: the KPI window of the simulated
    autoscaler (default: the recorded rows' window, else the policy's ``interval_s``)."""
    events, rows = read_history(history_path)
    traces, recorded = demand(events)
    if pools:
        traces = {p: t for p, t in traces.items() if p in set(pools)}
        recorded = {p: f for p, f in recorded.items() if p in set(pools)}
        rows = [r for r in rows if r["dim"] == "resource" or r["name"] in set(pools)]
    if window_s is None:
        window_s = next(((r["window_end_ns"] - r["window_start_ns"]) / 1e9 for r in rows
                         if r["type"] == "pool.acquire"), None)
    named = [("policy", load_policy(policy))]
    if other is not None:
        named.append(("other", load_policy(other)))
    out: dict[str, Any] = {"history": str(history_path), "pools": sorted(traces),
                           "demand": {p: sim.trace_stats(t) for p, t in traces.items()},
                           "recorded": {**sim._total(recorded, []), "pools": recorded},
                           "policies": {}}
    if recorded:  # the p99 over every pool needs the latencies; report the worst pool's
        out["recorded"]["p99_acquire_ms"] = max(f["p99_acquire_ms"] for f in recorded.values())
    if baselines:
        for base in (sim.Static(), sim.Reactive()):
            out["policies"][base.name] = _figures(sim.simulate(traces, base, latency=latency,
                                                               seed=seed))
    for label, pol in named:
        ws = window_s or pol.interval_s
        closed = sim.Closed(policy=pol, window_s=ws, name=label)
        fig = _figures(sim.simulate(traces, closed, latency=latency, seed=seed))
        cmds = replay(pol, rows)
        fig["on_recorded_rows"] = {
            "commands": len(cmds),
            "targets": {p: [c["target"] for c in cmds if c["pool"] == p][-20:]
                        for p in sorted({c["pool"] for c in cmds})}}
        preds = _predictions(pol, rows)
        if preds is not None:
            fig["predictions"] = preds if isinstance(preds, dict) else len(preds)
        out["policies"][label] = fig
    return out


def _figures(r: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("warm_start_rate", "cold_starts", "idle_container_s", "p99_acquire_ms", "acquires",
            "commands")
    return {k: r.get(k) for k in keys}


def render(result: Mapping[str, Any]) -> str:
    """The figures as a table: recorded, then every policy side by side."""
    return sim.figures_table([("recorded", result["recorded"]), *result["policies"].items()])


__all__ = ["connect_read_only", "demand", "load_policy", "read_history", "render",
           "run_whatif"]
