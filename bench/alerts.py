"""``agentflux bench alerts``: labelled incidents in a simulated fleet, and how the alerts score.

A local broker (or the configured one) and one worker (``agentflux worker``) with the failure
rules of ``bench/alert_rules.yaml`` (the defaults with a 1-day SLO period and pages only: see the
file). The simulator (:mod:`agentflux.runtime.simulate`, 64 agents) publishes
``--minutes-of-event-time`` minutes of a fleet in accelerated event time (it ends a minute
before the wall clock: the run covers an hour in well under a minute of publishing), with
incidents of every type injected at known times into the normal noise (:func:`schedule`). Once
the worker has landed every event and every KPI window and the alerts topic has been quiet for a
few seconds, every alert on the topic is read and scored against the ground truth
(:func:`score`):

* an alert *episode* is one ``firing`` message per (fingerprint, ``starts_at_ns``) (a resolved
  message or a repeat adds none);
* an episode *matches* an incident when its ``kind`` is one the incident's type should raise
  (:data:`KINDS`), every label it shares with the incident's target labels (``tool``, ``model``,
  ``cache``, ``philosophy``, ``session``, ``agent``) has the incident's value, and it starts in
  ``[incident start - EARLY_S, incident end + LATE_S]`` (event time). ``EARLY_S`` (20 s): an
  alert is stamped with the end of the window it judged, and a KPI window of 10 s holding the
  incident's start may be judged up to one window before its first failing event's end.
  ``LATE_S`` (120 s): rules that need a sustained condition (3 windows, a 60-s ratio, a budget
  to be spent) decide after the incident's first minute; an alert that starts more than two
  minutes after an incident ended is not about it;
* per incident type: *recall* = incidents with at least one matching episode / incidents;
  *precision* = episodes of the type's kinds that match one of its incidents / episodes of those
  kinds (so every false alarm counts against the type its kind belongs to; an episode of a kind
  no incident type raises counts against ``unexpected``); *detection delay* = first matching
  episode's start - incident start (event time, at least 0), median and max;
* *fast burn*: for the error bursts, the delay of the first matching ``burn_rate`` episode of
  severity ``page`` (the 14.4x pair: 2 min / 10 s at the 1-day period).

Targets (DESIGN.md): recall 100 %, precision >= 95 %, fast burn <= 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..config import ConfigError, Settings, Topics

RULES_FILE = Path(__file__).with_name("alert_rules.yaml")
AGENTS = 64
WARMUP_S = 300.0          # healthy event time before the first incident (the windows fill)
INCIDENT_S = 240.0        # each incident lasts 4 minutes
SLOT_S = 480.0            # a round of incidents (one of each type) every 8 minutes
STAGGER_S = 15.0          # the types of one round start this far apart
TAIL_S = 300.0            # healthy event time after the last incident ends
END_BEFORE_NOW_S = 60.0   # the stream's last event time before the wall clock
EARLY_S = 20.0
LATE_S = 120.0
TARGETS = {"recall": 1.0, "precision": 0.95, "fast_burn_max_s": 60.0}
# incident type -> the alert kinds it should raise
KINDS: dict[str, tuple[str, ...]] = {
    "error_burst": ("burn_rate", "streak"),
    "slow_model": ("latency_slo",),
    "cache_collapse": ("kpi_degradation",),
    "memory_climb": ("threshold",),
    "cost_runaway": ("cost_budget",),
    "fallback_storm": ("fallback_storm",),
}
TARGET_LABELS = ("tool", "model", "cache", "philosophy", "session", "agent", "pool")
# targets per round, chosen so that incidents running together do not mask each other: a
# stalled model is never the one routing falls back from (it would get no calls) nor the cost
# runaway's model (its spend would slow down)
ROTATION = {
    "error_burst": ("web_search", "sql_query", "http_get", "file_read", "code_exec"),
    "slow_model": ("gpt-4o-mini", "claude-haiku-4", "gpt-4o"),
    "cache_collapse": ("tool_metadata", "execution_patterns", "tool_results"),
    "memory_climb": ("multi_agent", "react", "autonomous", "chain_of_thought"),
    "fallback_storm": ("claude-sonnet-4", "gpt-4o-mini", "gpt-4o-mini"),
}
EVENTS_PER_AGENT_S = 2.6  # events per agent per second of event time (roughly)


# --- the schedule ----------------------------------------------------------------------------

def schedule(minutes: float, agents: int = AGENTS) -> list:
    """The incidents of a run of ``minutes`` of event time: after a healthy warm-up, one round
    every :data:`SLOT_S` with one incident of each type (staggered, each on the next target of
    its rotation), and a healthy tail after the last."""
    from ..runtime.simulate import INCIDENTS, IncidentSpec

    rounds = int((minutes * 60 - WARMUP_S - TAIL_S - INCIDENT_S - STAGGER_S * len(INCIDENTS))
                 // SLOT_S) + 1
    if rounds < 1:
        need = (WARMUP_S + INCIDENT_S + STAGGER_S * len(INCIDENTS) + TAIL_S) / 60
        raise ConfigError(f"--minutes-of-event-time {minutes:g}: give at least {need:g} "
                          "(a warm-up, one round of incidents and a tail)")
    out = []
    for k in range(rounds):
        for i, name in enumerate(INCIDENTS):
            start = WARMUP_S + k * SLOT_S + i * STAGGER_S
            if name == "cost_runaway":
                target = str((7 * k + 3) % agents)
            else:
                rot = ROTATION[name]
                target = rot[k % len(rot)]
            out.append(IncidentSpec(name, start, INCIDENT_S, target))
    return out


# --- the scoring (pure) ----------------------------------------------------------------------

@dataclass(frozen=True)
class Episode:
    """One firing episode of an alert."""

    fingerprint: str
    kind: str
    severity: str
    labels: Mapping[str, str]
    starts_at_ns: int


def episodes(alerts: Iterable[Mapping[str, Any]]) -> list[Episode]:
    """The firing episodes among alert messages: one per (fingerprint, starts_at_ns), in order of
    their start; resolved messages and repeats add none."""
    seen: dict[tuple, Episode] = {}
    for a in alerts:
        if a.get("status") != "firing":
            continue
        key = (a["fingerprint"], int(a["starts_at_ns"]))
        if key not in seen:
            seen[key] = Episode(a["fingerprint"], a["kind"], a.get("severity", ""),
                                dict(a.get("labels") or {}), int(a["starts_at_ns"]))
    return sorted(seen.values(), key=lambda e: (e.starts_at_ns, e.fingerprint))


def matches(incident: Mapping[str, Any], ep: Episode, early_ns: int, late_ns: int) -> bool:
    """Does ``ep`` report ``incident`` (a ground-truth dict: name, labels, start_ns, end_ns)?"""
    if ep.kind not in KINDS.get(incident["name"], ()):
        return False
    for key, value in incident["labels"].items():
        if key in ep.labels and ep.labels[key] != value:
            return False
    end = incident["end_ns"]
    return (incident["start_ns"] - early_ns <= ep.starts_at_ns
            and (end is None or ep.starts_at_ns <= end + late_ns))


def _delays(values: list[float]) -> dict[str, float | None]:
    return {"median": round(statistics.median(values), 1) if values else None,
            "max": round(max(values), 1) if values else None}


def score(incidents: Iterable[Mapping[str, Any]], alerts: Iterable[Mapping[str, Any]],
          early_s: float = EARLY_S, late_s: float = LATE_S) -> dict[str, Any]:
    """Recall, precision and detection delays per incident type (see the module docstring).

    ``incidents``: ground truth as :meth:`Incident.to_dict` gives it; ``alerts``: the messages
    read from the alerts topic (the alert contract's JSON values), in any order, repeats
    allowed. Pure: no I/O."""
    incidents = list(incidents)
    eps = episodes(alerts)
    early_ns, late_ns = int(early_s * 1e9), int(late_s * 1e9)
    kind_owner = {k: name for name, kinds in KINDS.items() for k in kinds}
    per_type: dict[str, Any] = {}
    fast: list[float] = []
    missed: list[dict] = []
    for name in KINDS:
        mine = [i for i in incidents if i["name"] == name]
        candidates = [e for e in eps if kind_owner.get(e.kind) == name]
        matched_eps = [e for e in candidates
                       if any(matches(i, e, early_ns, late_ns) for i in mine)]
        delays = []
        for inc in mine:
            hits = [e for e in candidates if matches(inc, e, early_ns, late_ns)]
            if not hits:
                missed.append({k: inc[k] for k in ("name", "labels", "start_ns", "end_ns")})
                continue
            delays.append(max(0.0, (hits[0].starts_at_ns - inc["start_ns"]) / 1e9))
            if name == "error_burst":
                pages = [e for e in hits if e.kind == "burn_rate" and e.severity == "page"]
                fast.append(max(0.0, (pages[0].starts_at_ns - inc["start_ns"]) / 1e9)
                            if pages else math.inf)
        if not mine and not candidates:
            continue
        per_type[name] = {
            "incidents": len(mine), "detected": len(delays),
            "recall": round(len(delays) / len(mine), 4) if mine else None,
            "alert_episodes": len(candidates), "matching_episodes": len(matched_eps),
            "precision": round(len(matched_eps) / len(candidates), 4) if candidates else None,
            "delay_s": _delays(delays),
        }
    unexpected = [e for e in eps if e.kind not in kind_owner]
    total_inc = sum(t["incidents"] for t in per_type.values())
    total_det = sum(t["detected"] for t in per_type.values())
    total_eps = sum(t["alert_episodes"] for t in per_type.values()) + len(unexpected)
    total_match = sum(t["matching_episodes"] for t in per_type.values())
    false_alarms = [e for e in eps if kind_owner.get(e.kind) is None or not any(
        matches(i, e, early_ns, late_ns) for i in incidents if i["name"] == kind_owner[e.kind])]
    fast_finite = [d for d in fast if math.isfinite(d)]
    return {
        "per_type": per_type,
        "recall": round(total_det / total_inc, 4) if total_inc else None,
        "precision": round(total_match / total_eps, 4) if total_eps else None,
        "incidents": total_inc, "detected": total_det,
        "alert_episodes": total_eps, "matching_episodes": total_match,
        "unexpected_kind_episodes": len(unexpected),
        "fast_burn_delay_s": {**_delays(fast_finite),
                              "missed": len(fast) - len(fast_finite)},
        "missed_incidents": missed,
        "false_alarms": [{"kind": e.kind, "severity": e.severity, "labels": dict(e.labels),
                          "starts_at_ns": e.starts_at_ns} for e in false_alarms],
        "tolerance_s": {"early": early_s, "late": late_s},
    }


def meets_targets(result: Mapping[str, Any]) -> dict[str, bool]:
    """Each target of :data:`TARGETS`: met or not (overall and for every incident type)."""
    fast = result["fast_burn_delay_s"]
    types = result["per_type"].values()
    return {
        "recall": all(t["recall"] == TARGETS["recall"] for t in types if t["recall"] is not None)
        and result["recall"] == TARGETS["recall"],
        "precision": all(t["precision"] is None or t["precision"] >= TARGETS["precision"]
                         for t in types)
        and (result["precision"] or 0) >= TARGETS["precision"],
        "fast_burn": fast["max"] is not None and fast["missed"] == 0
        and fast["max"] <= TARGETS["fast_burn_max_s"],
    }


# --- the run ---------------------------------------------------------------------------------

async def _read_alerts(settings: Settings, timeout_s: float = 10.0) -> list[dict]:
    """Every message on the alerts topic, from its beginning to its end now."""
    from agentflux.status import read_topic
    return [a for _, a in await read_topic(settings, settings.topics.alerts, timeout_s=timeout_s)]


def _produce(settings: Settings, sim, end_ns: int) -> int:
    """Publish the simulator's events up to event time ``end_ns``; how many."""
    from ..runtime.emitter import Emitter

    n = 0
    with Emitter(settings, runtime="agentflux-bench", spool_dir="",
                 buffer_events=2_000_000) as em:
        for ev in sim.events():
            if ev["ts"] > end_ns:
                break
            em.emit(ev)
            n += 1
        if not em.flush(300):
            raise TimeoutError("the simulated events were not all acknowledged in 300 s")
        st = em.stats()
    if st.acked != n:
        raise RuntimeError(f"{n - st.acked} of {n} events were not acknowledged "
                           f"(failed {st.failed}, dropped {st.dropped})")
    return n


def _wait_processed(worker, settings: Settings, n: int, quiet_s: float, deadline_s: float) -> list[dict]:
    """Every event landed, every KPI window closed and landed, then the alerts topic unchanged
    for ``quiet_s`` (the detector judges a window when later KPI rows arrive; the last alert
    follows the last KPI rows within a moment)."""
    worker.wait_for(lambda m: m.get('agentflux_history_rows{table="events"}', 0)
                    + m.get('agentflux_history_rows{table="deadletters"}', 0) >= n,
                    deadline_s, f"{n:,} events to land")
    worker.wait_for(lambda m: m.get("agentflux_open_windows", 1) == 0
                    and m.get('agentflux_history_rows{table="kpis"}', -1)
                    == m.get("agentflux_kpi_windows_total", -2), deadline_s,
                    "every KPI window to close and land")
    end = time.monotonic() + deadline_s
    alerts = asyncio.run(_read_alerts(settings))
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < quiet_s:
        if time.monotonic() > end:
            raise TimeoutError("the alerts topic kept changing")
        time.sleep(1.0)  # polling the topic for the last alerts
        worker._alive_or_raise()
        again = asyncio.run(_read_alerts(settings))
        if len(again) != len(alerts):
            alerts, stable_since = again, time.monotonic()
    return alerts


def run(minutes: float, seed: int, console, agents: int = AGENTS,
        rules: Path = RULES_FILE, quiet_s: float = 8.0) -> dict[str, Any]:
    from ..cli import broker_for
    from ..harness import WorkerProcess
    from ..runtime.simulate import SimConfig, SyntheticRuntime
    from ..streams.topics import ensure_topics

    specs = schedule(minutes, agents)
    span_ns = int(minutes * 60e9)
    start_ns = time.time_ns() - span_ns - int(END_BEFORE_NOW_S * 1e9)
    events = int(minutes * 60 * agents * EVENTS_PER_AGENT_S * 2)  # a bound: ends at end_ns
    tmp = Path(tempfile.mkdtemp(prefix="agentflux-bench-alerts-"))
    try:
        with broker_for(Settings.from_env(), console) as base:
            run_id = f"bench-alerts-{uuid.uuid4().hex[:8]}"
            s = base.replace(app_id=run_id, topics=Topics.with_prefix(run_id), window_s=10.0,
                             grace_s=2.0, history_path=str(tmp / "history"))
            asyncio.run(ensure_topics(s))
            # generate first (the event-time span decides the event count), then publish
            cfg = SimConfig(agents=agents, events=events, seed=seed, start_ns=start_ns,
                            incidents=tuple(specs))
            sim = SyntheticRuntime(cfg)
            with contextlib.chdir(tmp):  # the worker's Faust data directory goes to its cwd
                worker = WorkerProcess.with_free_ports(
                    s, log_path=tmp / "worker.log", stop_timeout_s=5.0,
                    extra_env={"AGENTFLUX_FAILURE_RULES": str(rules)}).start()
            try:
                console.print(f"publishing {minutes:g} minutes of event time of {agents} agents "
                              f"(~{events // 2:,} events) with {len(specs)} incidents ...")
                t0 = time.monotonic()
                n = _produce(s, sim, start_ns + span_ns)
                publish_s = time.monotonic() - t0
                console.print(f"waiting for the worker to land {n:,} events and judge every "
                              "window ...")
                alerts = _wait_processed(worker, s, n, quiet_s, deadline_s=600)
                processed_s = time.monotonic() - t0
            except BaseException:
                log = tmp / "worker.log"
                if log.exists():
                    keep = s.log_dir / "bench-alerts-worker.log"
                    with contextlib.suppress(OSError):
                        keep.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(log, keep)
                        console.print(f"the worker's log: {keep}")
                raise
            finally:
                worker.stop(10.0)
                with contextlib.suppress(OSError):  # kept for a look afterwards
                    keep = s.log_dir / "bench-alerts-worker.log"
                    keep.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(tmp / "worker.log", keep)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    truth = [i.to_dict() for i in sim.incidents]
    last_ts = start_ns + span_ns
    result = score(truth, alerts)
    result.update(
        minutes_of_event_time=round(minutes, 1), agents=agents, seed=seed, events=n,
        alert_messages=len(alerts), publish_s=round(publish_s, 1),
        processed_s=round(processed_s, 1), rules=str(rules.name),
        event_time_start_ns=start_ns, event_time_end_ns=last_ts)
    result["targets_met"] = meets_targets(result)
    return result


def _table(result: dict[str, Any], console) -> None:
    from rich.table import Table

    table = Table(title=f"agentflux bench alerts: {result['minutes_of_event_time']:g} min of event "
                        f"time, {result['agents']} agents, {result['incidents']} incidents")
    for c in ("incident", "incidents", "detected", "recall", "episodes", "matching",
              "precision", "delay median s", "delay max s"):
        table.add_column(c, justify="left" if c == "incident" else "right")

    def pct(v):
        return "-" if v is None else f"{v * 100:.1f} %"

    for name, t in result["per_type"].items():
        table.add_row(name, str(t["incidents"]), str(t["detected"]), pct(t["recall"]),
                      str(t["alert_episodes"]), str(t["matching_episodes"]),
                      pct(t["precision"]), str(t["delay_s"]["median"] if t["delay_s"]["median"]
                                               is not None else "-"),
                      str(t["delay_s"]["max"] if t["delay_s"]["max"] is not None else "-"))
    table.add_row("all", str(result["incidents"]), str(result["detected"]), pct(result["recall"]),
                  str(result["alert_episodes"]), str(result["matching_episodes"]),
                  pct(result["precision"]), "", "", style="bold")
    console.print(table)
    fast = result["fast_burn_delay_s"]
    met = result["targets_met"]
    console.print(f"fast burn (page, error bursts): median {fast['median']} s, max {fast['max']} s"
                  + (f", {fast['missed']} not paged" if fast["missed"] else ""))
    console.print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}"
                                          for k, v in met.items())
                  + f" (recall 100 %, precision >= 95 %, fast burn <= "
                  f"{TARGETS['fast_burn_max_s']:g} s)")
    for m in result["missed_incidents"]:
        console.print(f"missed: {m['name']} {m['labels']}", markup=False)
    for f in result["false_alarms"][:20]:
        console.print(f"false alarm: {f['kind']} {f['labels']}", markup=False)


def main(minutes: float, seed: int, as_json: bool, console) -> int:
    if not math.isfinite(minutes) or minutes <= 0:
        raise ConfigError(f"--minutes-of-event-time {minutes:g}: give minutes > 0")
    if minutes > 300:
        raise ConfigError(f"--minutes-of-event-time {minutes:g}: at most 300 (a healthy agent "
                          "of the simulated fleet spends ~8 USD an hour: past 5 hours it "
                          "crosses the 50-USD daily agent budget on its own)")
    quiet = console
    if as_json:
        from rich.console import Console
        quiet = Console(stderr=True)
    result = run(minutes, seed, quiet)
    if as_json:
        print(json.dumps(result))
    else:
        _table(result, console)
    return 0
