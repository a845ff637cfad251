"""``agentflux bench pipeline``: throughput of one worker on the real broker, the per-event
Faust baseline on the same broker, and the emitter's cost in the caller.

* ``events_per_s``: N events are produced first (batch records of 1,000, as the Emitter sends
  them); then one worker process starts and the clock runs from its first consumed record until
  the DuckDB history holds all N (read from its /metrics). Worker RSS is sampled throughout.
* ``baseline_events_per_s``: the same kind of events, one per record, through a per-event Faust
  agent doing the same work (bench/baseline.py).
* ``emit_median_us``: the median wall time of one ``Emitter.emit()`` call with a live producer.
* ``ack_p99_ms``: write-to-ack p99 (emit() call to broker ack, acks=all) at a paced 10,000
  events/s for a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from agentflux.bench import report
from agentflux.config import Settings, Topics

RECORD_EVENTS = 1000


def _events(n: int, seed: int):
    from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
    return SyntheticRuntime(SimConfig(events=n, agents=64, seed=seed)).events()


async def _produce(settings: Settings, topic: str, n: int, per_record: int, progress=None) -> None:
    from aiokafka import AIOKafkaProducer
    from agentflux.schemas.wire import encode_batch
    producer = AIOKafkaProducer(**settings.kafka_client_kwargs(), linger_ms=5,
                                max_batch_size=4 * 1024 * 1024, max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        chunk: list[bytes] = []
        pending = []
        for i, ev in enumerate(_events(n, seed=n), 1):
            chunk.append(orjson.dumps(ev))
            if len(chunk) == per_record or i == n:
                value = encode_batch(chunk) if per_record > 1 else chunk[0]
                pending.append(await producer.send(topic, value, key=ev["session_id"].encode()))
                chunk = []
                if len(pending) >= 2000:
                    await asyncio.gather(*pending)
                    pending = []
                if progress and i % 10_000 == 0:
                    progress(10_000)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _settings_for(base: Settings, tmp: Path, name: str) -> Settings:
    from agentflux.localkafka import free_port
    run = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    return base.replace(app_id=run, topics=Topics.with_prefix(run), window_s=10.0, grace_s=2.0,
                        duckdb_path=str(tmp / f"{run}.duckdb"), metrics_port=free_port(),
                        web_port=free_port())


def bench_pipeline(base: Settings, n: int, tmp: Path, console) -> dict:
    import psutil

    from agentflux.harness import WorkerProcess
    from agentflux.streams.topics import ensure_topics

    s = _settings_for(base, tmp, "pipeline")
    asyncio.run(ensure_topics(s))
    console.print(f"producing {n:,} events in records of {RECORD_EVENTS} ...")
    asyncio.run(_produce(s, s.topics.events, n, RECORD_EVENTS))
    worker = WorkerProcess(s, log_path=tmp / "worker.log")
    t_start = time.perf_counter()
    worker.start()
    proc = psutil.Process(worker.pid)
    rss: list[tuple[float, float]] = []
    t0 = rows0 = None
    rows = 0
    try:
        while rows < n:
            m = worker.metrics()
            rows = int(m.get('agentflux_history_rows{table="events"}', 0))
            now = time.perf_counter()
            if t0 is None and m.get("agentflux_records_total", 0) > 0:
                t0, rows0 = now, rows
            rss.append((now - t_start, proc.memory_info().rss / 2**20))
            if now - t_start > 1800:
                raise TimeoutError(f"only {rows} of {n} events landed in 30 min")
            time.sleep(0.05)  # sampling cadence of a benchmark, not test synchronisation
        t1 = time.perf_counter()
    finally:
        worker.stop()
    third = max(1, len(rss) // 3)
    return {
        "events": n,
        "events_per_s": round((n - rows0) / (t1 - t0)),
        "end_to_end_s_incl_startup": round(t1 - t_start, 2),
        "worker_peak_rss_mb": round(max(r for _, r in rss), 1),
        "worker_rss_mb_first_third_max": round(max(r for _, r in rss[:third]), 1),
        "worker_rss_mb_last_third_max": round(max(r for _, r in rss[-third:]), 1),
    }


def bench_baseline(base: Settings, n: int, tmp: Path, console) -> dict:
    from agentflux.localkafka import free_port
    from agentflux.streams.topics import ensure_topics

    s = _settings_for(base, tmp, "baseline")
    asyncio.run(ensure_topics(s))
    console.print(f"producing {n:,} events, one per record, for the per-event baseline ...")
    asyncio.run(_produce(s, s.topics.events, n, 1))
    proc = subprocess.run(
        [sys.executable, "-m", "agentflux.bench.baseline", "--bootstrap", s.bootstrap_servers,
         "--topic", s.topics.events, "--events", str(n), "--db", str(tmp / "baseline.duckdb"),
         "--web-port", str(free_port())], capture_output=True, text=True, timeout=1800)
    lines = [l for l in proc.stdout.splitlines() if l.startswith('{"events"')]
    if not lines:
        raise RuntimeError(f"baseline failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    r = json.loads(lines[-1])
    return {"baseline_events": n, "baseline_events_per_s": round(r["events_per_s"])}


def bench_emitter(base: Settings, tmp: Path, console, rate: int = 10_000, seconds: float = 4.0) -> dict:
    from agentflux.runtime.emitter import Emitter
    from agentflux.streams.topics import ensure_topics

    s = _settings_for(base, tmp, "emitter")
    asyncio.run(ensure_topics(s))
    evs = list(_events(100_000, seed=5))
    # 1. the cost of emit() in the caller, with the producer live in the background
    with Emitter(s, buffer_events=len(evs) + 1) as em:
        clock = time.perf_counter_ns
        costs = []
        for ev in evs:
            t = clock()
            em.emit(ev)
            costs.append(clock() - t)
        em.flush(120)
    # 2. write-to-ack latency at a paced rate
    console.print(f"emitting at {rate:,} events/s for {seconds:.0f} s ...")
    with Emitter(s, linger_ms=1.0) as em:
        step = rate // 100  # 100 bursts a second
        t_next = time.perf_counter()
        i = 0
        end = t_next + seconds
        while t_next < end:
            for _ in range(step):
                em.emit(evs[i % len(evs)])
                i += 1
            t_next += 0.01
            delay = t_next - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing the load generator
        em.flush(60)
        st = em.stats()
    return {"emit_median_us": round(statistics.median(costs) / 1000, 3),
            "emit_p99_us": round(sorted(costs)[int(len(costs) * 0.99)] / 1000, 3),
            "ack_p50_ms": round(st.ack_p50_ms, 3), "ack_p99_ms": round(st.ack_p99_ms, 3),
            "ack_rate_events_per_s": rate, "emitter_failed": st.failed, "emitter_dropped": st.dropped}


def main(events: int, baseline_events: int, as_json: bool, console) -> int:
    from agentflux.cli import broker_for

    quiet = console
    if as_json:
        from rich.console import Console
        quiet = Console(stderr=True)
    import shutil
    tmp = Path(tempfile.mkdtemp(prefix="agentflux-bench-"))
    try:
        with broker_for(Settings.from_env(), quiet) as settings:
            result = {"cpu_count": os.cpu_count()}
            result.update(bench_pipeline(settings, events, tmp, quiet))
            result.update(bench_baseline(settings, baseline_events, tmp, quiet))
            result["ratio"] = round(result["events_per_s"] / result["baseline_events_per_s"], 2)
            result.update(bench_emitter(settings, tmp, quiet))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report(result, as_json, console)
