"""``agentflux bench autoscale``: the three legs of the pool-sizing benchmark in real time, the
closed loop through Kafka, and the predictor's evaluation.

Every leg replays the same :func:`~agentflux.bench.autoscale.bursty_trace` against a real
:class:`~agentflux.runtime.pool.ContainerPool` over the same backend (containers through the
Docker Engine API, podman here; or local processes with ``--backend process``), measured by
the same driver (:func:`~agentflux.bench.autoscale.drive`):

* (a) ``static``: the specification's ``ContainerPool(pool_size=10)`` pre-warmed with 10;
* (b) ``reactive``: the specification's dynamic pre-warming below 20 % availability;
* (c) ``closed_loop``: nothing sizes the pool in-process. The pool's acquisitions go to Kafka
  through the emitter, a real worker process (1 s KPI windows: the benchmark compresses a day
  into minutes) windows them, its autoscaler issues signed commands to the commands topic, and
  a :class:`~agentflux.runtime.poolmanager.PoolManager` consuming that topic applies them to
  the pool: the loop the product runs, end to end.

The result also carries the discrete-event simulator's figures for the same trace (seeded
start latencies; :func:`~agentflux.bench.autoscale.compare`) and the resource predictor's
evaluation on heavy-tailed usage (:func:`agentflux.bench.prediction.evaluate`), and which
targets hold: closed loop >= 95 % warm starts with fewer idle container-seconds than (a); the
predictor's under-provisioned runs <= 5 % with less over-provisioning than mean x 1.2.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from agentflux.config import ConfigError, SecretStr, Settings, Topics

POOL = "react"
BENCH_LABEL = "agentflux.bench"


def _backend(kind: str, work: Path, console: Any) -> tuple[Any, Any, str]:
    """``(backend, closer, description)``: podman's Docker API (containers) or processes."""
    from agentflux.runtime.pool import DockerBackend, ProcessBackend
    if kind == "process":
        return ProcessBackend(), None, "local processes"
    if kind != "podman":
        raise ConfigError(f"--backend {kind!r}: give podman (containers through the Docker "
                          "API) or process")
    from agentflux.localdocker import PodmanService
    svc = PodmanService(work / "podman").start()
    image = svc.ensure_image()
    run = uuid.uuid4().hex[:8]
    backend = DockerBackend(svc.client(), image, labels={BENCH_LABEL: run})

    def close() -> None:
        client = svc.client()
        for c in client.containers.list(all=True, filters={"label": f"{BENCH_LABEL}={run}"}):
            with contextlib.suppress(Exception):
                c.remove(force=True)
        svc.stop()

    return backend, close, f"containers through the Docker API (podman, image {image})"


async def _progress(console: Any, label: str, seconds: float, coro: Any) -> Any:
    """Run ``coro`` with a progress bar over the trace's ``seconds``."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    task = asyncio.ensure_future(coro)
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        bar = progress.add_task(label, total=seconds)
        t0 = time.monotonic()
        while not task.done():
            progress.update(bar, completed=min(seconds, time.monotonic() - t0))
            await asyncio.wait([task], timeout=0.5)
    return task.result()


def _policy_file(policy: Any, path: Path) -> Path:
    import yaml
    d = policy.to_dict()
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


async def closed_leg(s: Settings, backend: Any, trace: list, policy: Any, work: Path,
                     console: Any, seconds: float) -> dict[str, Any]:
    """Leg (c): a pool whose only sizing is the pool manager applying the worker's commands."""
    from agentflux.bench.autoscale import SPEC_POOL_SIZE, drive, engine_counts
    from agentflux.runtime.emitter import Emitter
    from agentflux.runtime.instrument import Instrumentation
    from agentflux.runtime.pool import ContainerPool
    from agentflux.runtime.poolmanager import PoolManager

    emitter = Emitter(s, linger_ms=1).start()
    instr = Instrumentation(emitter, agent_id="bench-runtime", philosophy=POOL)
    pool = ContainerPool(pool_size=SPEC_POOL_SIZE, backend=backend, instrumentation=instr)
    manager = PoolManager(s, pool, pools=[POOL], min_size=policy.min_size,
                          max_size=policy.max_size,
                          image_allowlist={getattr(backend, "image", "")} - {""},
                          instrumentation=instr, state_file=work / "pool-manager.json",
                          report_every_s=1.0)
    before = engine_counts(backend)
    try:
        await manager.start()
        # the same start as the static pool: 10 warm; from then on the commands size it
        await pool.reconcile_to(POOL, SPEC_POOL_SIZE)
        out = await _progress(console, "(c) closed loop through Kafka", seconds,
                              drive(pool, trace, POOL))
    finally:
        await manager.stop()
        await pool.drain()
        await asyncio.to_thread(emitter.close)
    return {"policy": "closed_loop", **out, **engine_counts(backend, before),
            "replacements_dropped": pool.replacements_dropped,
            "commands": {"applied": manager.applied, "duplicate": manager.duplicates,
                         "rejected": dict(manager.rejected)}}


def run(duration_s: float, seed: int, backend_kind: str, console: Any,
        legs: tuple[str, ...] = ("static", "reactive", "closed_loop")) -> dict[str, Any]:
    from agentflux.bench.autoscale import (PODMAN, SPEC_POOL_SIZE, StartLatency, bursty_trace,
                                           compare, default_policy, run_leg, trace_stats)
    from agentflux.bench.prediction import evaluate
    from agentflux.cli import broker_for
    from agentflux.harness import WorkerProcess
    from agentflux.streams.topics import ensure_topics

    trace = bursty_trace(seed, duration_s)
    seconds = max(a + h for a, h in trace)
    policy = default_policy()
    work = Path(tempfile.mkdtemp(prefix="agentflux-bench-autoscale-"))
    result: dict[str, Any] = {"trace": {"seed": seed, **trace_stats(trace)},
                              "policy": policy.to_dict(), "legs": {}}
    backend, close, what = _backend(backend_kind, work, console)
    result["backend"] = what
    try:
        console.print(f"a bursty trace of {len(trace)} acquisitions over {duration_s:g} s; "
                      f"each leg replays it in real time against {what}")
        for leg in [x for x in legs if x != "closed_loop"]:
            label = {"static": f"(a) static pool of {SPEC_POOL_SIZE}",
                     "reactive": "(b) reactive pre-warm below 20 %"}[leg]
            result["legs"][leg] = asyncio.run(_progress(console, label, seconds,
                                                        run_leg(leg, backend, trace, POOL)))
        if "closed_loop" in legs:
            with broker_for(Settings.from_env(), console) as base:
                run_id = f"bench-autoscale-{uuid.uuid4().hex[:8]}"
                s = base.replace(app_id=run_id, topics=Topics.with_prefix(run_id),
                                 window_s=1.0, grace_s=0.3, history_path=str(work / "history"),
                                 command_keys=SecretStr(secrets.token_hex(16)),
                                 autoscaler_policy=str(_policy_file(policy,
                                                                    work / "autoscaler.yaml")))
                asyncio.run(ensure_topics(s))
                with contextlib.chdir(work):  # the worker's Faust data directory
                    worker = WorkerProcess.with_free_ports(
                        s, log_path=work / "worker.log", stop_timeout_s=5.0).start()
                try:
                    result["legs"]["closed_loop"] = asyncio.run(
                        closed_leg(s, backend, trace, policy, work, console, seconds))
                finally:
                    worker.stop(10.0)
                    keep = s.log_dir / "bench-autoscale-worker.log"
                    with contextlib.suppress(OSError):
                        keep.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(work / "worker.log", keep)
                result["history"] = _history_figures(s)
    finally:
        if close is not None:
            close()
    # the simulator with the engine model of the backend (podman's measured throughput)
    engine = PODMAN if backend_kind == "podman" else StartLatency()
    result["simulated_engine"] = dataclasses.asdict(engine)
    result["simulated"] = {k: {x: v.get(x) for x in ("warm_start_rate", "cold_starts",
                                                     "idle_container_s", "p99_acquire_ms")}
                           for k, v in compare(trace, latency=engine, seed=seed).items()}
    result["predictor"] = evaluate(seed=seed)
    result["targets"] = _targets(result)
    shutil.rmtree(work, ignore_errors=True)
    return result


def _history_figures(s: Settings) -> dict[str, Any]:
    """What the closed loop left in its history: commands and predictions landed."""
    from agentflux.sinks.catalog import connect
    try:
        con = connect(s.history_path)
    except Exception as exc:  # a figure, not the benchmark: say why it is missing
        return {"error": repr(exc)}
    try:
        n_cmd, first, last = con.execute(
            "SELECT count(*), min(target), max(target) FROM pool_commands").fetchone()
        n_pred = con.execute("SELECT count(*) FROM predictions").fetchone()[0]
        return {"pool_commands": n_cmd, "min_target": first, "max_target": last,
                "predictions": n_pred}
    finally:
        con.close()


def _targets(result: dict[str, Any]) -> dict[str, Any]:
    legs = result["legs"]
    out: dict[str, Any] = {}
    c, st = legs.get("closed_loop"), legs.get("static")
    if c and st:
        out["closed_loop_warm_start_rate_ge_95pct"] = (c["warm_start_rate"] or 0) >= 0.95
        out["closed_loop_idle_below_static"] = c["idle_container_s"] < st["idle_container_s"]
    pred = result.get("predictor") or {}
    if pred:
        overall = pred["overall"]
        out["predictor_under_le_5pct"] = overall["ours"]["under"] <= 0.05
        out["predictor_less_over_than_mean_x_1_2"] = (overall["ours"]["over"]
                                                      < overall["mean_x_1_2"]["over"])
        out["predictor_less_over_than_a_mean_at_equal_under"] = (overall["ours"]["over"]
                                                                 < overall["matched"]["over"])
        out["predictor_target_met_where_achievable"] = pred["target_met_where_achievable"]
    return out


def main(duration_s: float, seed: int, backend: str, as_json: bool, console: Any) -> int:
    if not 10 <= duration_s <= 3600:
        raise ConfigError(f"--duration {duration_s:g}: give 10..3600 seconds of trace (150 "
                          "compresses a day with its bursts; each leg takes that long)")
    quiet = console
    if as_json:
        from rich.console import Console
        quiet = Console(stderr=True)
    result = run(duration_s, seed, backend, quiet)
    if as_json:
        print(json.dumps(result))
        return 0
    from agentflux.bench.autoscale import render
    console.print(render(result), markup=False, highlight=False)
    console.print(f"targets: {result['targets']}", markup=False, highlight=False)
    return 0
