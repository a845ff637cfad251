"""``agentflux bench soak --minutes M --rate R``: hold R events/s for M minutes and watch memory
and lag.

The rig: a broker (the configured one, the one ``agentflux up`` started, or an ephemeral local
one), topics of the run's own, one worker process with a history (Parquet segments) in a scratch
directory, and an :class:`~agentflux.runtime.emitter.Emitter` in this process fed by a paced
synthetic runtime (:class:`~agentflux.runtime.simulate.SyntheticRuntime` in live mode: event
times are the wall clock, so windows close as they would in production; events are generated
lazily, never held). The generator emits in 100 slices a second on a schedule of ``R`` events/s
from the start, so a slice that comes late is caught up by the next one.

Sampled every second: the worker's RSS (psutil on its pid); this process's RSS, reported as the
*emitter* RSS (it includes the generator, the sampler and the progress display); the worker's
``agentflux_consumer_lag`` gauges (records, summed over partitions); ``landed lag`` = events
emitted - events in the history (``agentflux_history_rows``), in events and in seconds (the age
of the oldest event not yet landed, from the per-second emitted counts); the achieved emit rate;
the emitter's buffered and pending events (pending also after every 10 ms slice of the
generator, so that a peak between samples shows: ``emitter_pending_max``). After the last emit
the run waits until every acked event has landed (``drain_s``).

Figures are compared over the steady part of the run: a warm-up of min(10 % of the run, 60 s)
is excluded (imports, the first segments written, the first windows closing), and the rest is
cut in thirds. Criteria (exit 0 when all pass):

* ``rate_held``: achieved rate >= 97 % of R, nothing dropped or failed;
* ``delivered``: acked == emitted and landed (+ dead-lettered) == acked;
* ``worker_memory_flat`` / ``emitter_memory_flat``: mean RSS of the last third within 10 % of
  the mean of the first third;
* ``lag_bounded``: landed lag never reached 5 s worth of events (5 R) while emitting, and the
  last third's maximum <= first third's maximum x 1.5 + R (not growing).

Ctrl-C stops the run, prints the summary of what was sampled so far and stops everything the
run started.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from agentflux.config import ConfigError, Settings, Topics

EVENTS_ROWS = 'agentflux_history_rows{table="events"}'
DL_ROWS = 'agentflux_history_rows{table="deadletters"}'
LAG_PREFIX = "agentflux_consumer_lag{"
MAX_WARMUP_S = 60.0
SLICES_PER_S = 100
DRAIN_DEADLINE_S = 180.0  # the drain may take max(this, the run's duration) ...
DRAIN_STALL_S = 60.0  # ... as long as something lands at least this often


@dataclass
class Sample:
    t: float  # seconds since the first emit
    phase: str  # "emit" or "drain"
    emitted: int
    acked: int
    dropped: int
    failed: int
    buffered: int
    pending: int
    pending_peak: int  # the most pending after any slice (10 ms) since the previous sample
    landed: int  # events in the history
    dead: int  # dead letters in the history
    lag_records: int  # sum of the worker's consumer-lag gauges
    landed_lag: int  # emitted - landed - dead (events not in the history yet)
    landed_lag_s: float  # age of the oldest event not in the history yet
    worker_rss_mb: float
    emitter_rss_mb: float
    rate: float  # events/s emitted since the previous sample
    worker_cpu: float  # % of one core since the previous sample
    emitter_cpu: float
    machine_cpu: float  # % of all cores busy since the previous sample (anything running)


class PacedGenerator:
    """Emits ``total`` synthetic events at ``rate`` events/s from a thread."""

    def __init__(self, emit: Callable[[dict], Any], rate: float, total: int, seed: int = 7,
                 agents: int = 64, probe: Callable[[], int] | None = None):
        self.emit, self.rate, self.total, self.seed, self.agents = emit, rate, total, seed, agents
        self.probe = probe  # read after every slice (the emitter's pending events)
        self.peak = 0  # the probe's maximum since the sampler last took it
        self.n = 0  # events emitted so far (read by the sampler)
        self.t0: float | None = None
        self.t_end: float | None = None  # when the last event was emitted
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-generator", daemon=True)

    def start(self) -> "PacedGenerator":
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        return not self._thread.is_alive() and self.t0 is not None

    def take_peak(self) -> int:
        peak, self.peak = self.peak, 0
        return peak

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
        try:
            events = SyntheticRuntime(SimConfig(events=self.total, agents=self.agents,
                                                seed=self.seed)).events()  # live time, lazy
            emit, rate, total, t0 = self.emit, self.rate, self.total, self.t0
            step = max(1, int(rate / SLICES_PER_S))
            n = 0
            while n < total and not self._stop.is_set():
                due = min(total, int(rate * (time.monotonic() - t0)) + 1)
                for ev in itertools.islice(events, due - n):
                    emit(ev)
                n = self.n = max(n, due)
                if self.probe is not None:
                    self.peak = max(self.peak, self.probe())
                wait = t0 + min(total, n + step) / rate - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)  # pacing the load generator
            self.t_end = time.monotonic()
        except BaseException as exc:  # reported by the sampler
            self.error = exc
            self.t_end = time.monotonic()


# --- statistics --------------------------------------------------------------------------------

def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _r(x: float, nd: int = 1) -> float | None:
    return None if x != x else round(x, nd)  # NaN -> null in JSON


def windows(duration_s: float) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """Warm-up, first third and last third (seconds since the first emit) of a run."""
    warmup = min(0.1 * duration_s, MAX_WARMUP_S)
    third = (duration_s - warmup) / 3
    return warmup, (warmup, warmup + third), (duration_s - third, duration_s)


def timeline(emit: list[Sample], points: int = 20) -> list[dict[str, Any]]:
    """The emit phase in ``points`` equal slices: mean rate, RSS and CPU, max landed lag."""
    if not emit:
        return []
    size = max(1, -(-len(emit) // points))
    out = []
    for i in range(0, len(emit), size):
        part = emit[i:i + size]
        out.append({
            "t": round(part[-1].t), "rate": round(_mean([s.rate for s in part])),
            "worker_rss_mb": _r(_mean([s.worker_rss_mb for s in part])),
            "emitter_rss_mb": _r(_mean([s.emitter_rss_mb for s in part])),
            "landed_lag_max": max(s.landed_lag for s in part),
            "lag_records_max": max(s.lag_records for s in part),
            "emitter_pending_max": max(s.pending_peak for s in part),
            "worker_cpu": _r(_mean([s.worker_cpu for s in part])),
            "machine_cpu": _r(_mean([s.machine_cpu for s in part]))})
    return out


def summarise(samples: list[Sample], rate: float, minutes: float, duration_s: float,
              extra: dict[str, Any]) -> dict[str, Any]:
    """The figures and the criteria from the samples of a (possibly partial) run."""
    emit = [s for s in samples if s.phase == "emit"]
    last = samples[-1] if samples else None
    warmup, first_w, last_w = windows(duration_s)
    first = [s for s in emit if first_w[0] <= s.t <= first_w[1]]
    final = [s for s in emit if last_w[0] <= s.t <= last_w[1]]

    def col(rows: list[Sample], name: str) -> list[float]:
        vals = [getattr(s, name) for s in rows]
        return [v for v in vals if v == v]  # NaN: the worker was gone at that sample

    w_first, w_last = _mean(col(first, "worker_rss_mb")), _mean(col(final, "worker_rss_mb"))
    e_first, e_last = _mean(col(first, "emitter_rss_mb")), _mean(col(final, "emitter_rss_mb"))
    lag_first = max(col(first, "landed_lag"), default=float("nan"))
    lag_last = max(col(final, "landed_lag"), default=float("nan"))
    lag_max = max(col(emit, "landed_lag"), default=float("nan"))
    emitted = last.emitted if last else 0
    acked = last.acked if last else 0
    landed = last.landed if last else 0
    dead = last.dead if last else 0
    dropped = last.dropped if last else 0
    failed = last.failed if last else 0
    achieved = emitted / duration_s if duration_s > 0 else 0.0
    # whole seconds of the steady part (the last sample of the emit phase may be a partial one)
    steady_rates = [s.rate for s in emit[1:-1] if s.t >= warmup]
    w_ratio = w_last / w_first if w_first == w_first and w_first > 0 else float("nan")
    e_ratio = e_last / e_first if e_first == e_first and e_first > 0 else float("nan")
    out: dict[str, Any] = {
        "minutes": minutes, "rate": rate, "cpu_count": os.cpu_count(),
        "duration_s": round(duration_s, 1), "samples": len(samples),
        "warmup_s": round(warmup, 1), "first_third_s": [round(x, 1) for x in first_w],
        "last_third_s": [round(x, 1) for x in last_w],
        "events_target": extra.get("events_target"), "emitted": emitted, "acked": acked,
        "landed": landed, "dead_lettered": dead, "dropped": dropped, "failed": failed,
        "achieved_rate": round(achieved), "rate_1s_min": round(min(steady_rates, default=0.0)),
        "drain_s": extra.get("drain_s"),
        "worker_rss_mb_first_third": _r(w_first), "worker_rss_mb_last_third": _r(w_last),
        "worker_rss_ratio": _r(w_ratio, 3),
        "worker_rss_mb_max": _r(max(col(samples, "worker_rss_mb"), default=float("nan"))),
        "emitter_rss_mb_first_third": _r(e_first), "emitter_rss_mb_last_third": _r(e_last),
        "emitter_rss_ratio": _r(e_ratio, 3),
        "emitter_rss_mb_max": _r(max(col(samples, "emitter_rss_mb"), default=float("nan"))),
        "lag_records_max": max(col(emit, "lag_records"), default=0),
        "lag_records_p99": _pct(col(emit, "lag_records"), 0.99) if emit else 0,
        "landed_lag_events_max": lag_max if emit else 0,
        "landed_lag_events_p99": _pct(col(emit, "landed_lag"), 0.99) if emit else 0,
        "landed_lag_events_first_third_max": lag_first if first else None,
        "landed_lag_events_last_third_max": lag_last if final else None,
        "landed_lag_s_max": _r(max(col(emit, "landed_lag_s"), default=float("nan")), 2),
        "landed_lag_s_p99": _r(_pct(col(emit, "landed_lag_s"), 0.99), 2),
        "emitter_buffered_max": max(col(emit, "buffered"), default=0),
        "emitter_pending_max": max(col(emit, "pending_peak"), default=0),
        "ack_p50_ms": extra.get("ack_p50_ms"), "ack_p99_ms": extra.get("ack_p99_ms"),
        # where the 2 cores went while emitting (the broker and anything else: machine - both)
        "worker_cpu_pct_mean": _r(_mean(col(emit[1:], "worker_cpu"))),
        "emitter_cpu_pct_mean": _r(_mean(col(emit[1:], "emitter_cpu"))),
        "machine_cpu_pct_mean": _r(_mean(col(emit[1:], "machine_cpu"))),
        "timeline": timeline(emit),
    }
    crit = {
        "rate_held": bool(emit) and achieved >= 0.97 * rate and dropped == 0 and failed == 0,
        "delivered": bool(last) and acked == emitted and landed + dead == acked,
        "worker_memory_flat": bool(first and final) and abs(w_ratio - 1) <= 0.10,
        "emitter_memory_flat": bool(first and final) and abs(e_ratio - 1) <= 0.10,
        "lag_bounded": bool(first and final) and lag_max < 5 * rate
        and lag_last <= lag_first * 1.5 + rate,
    }
    for k, v in crit.items():
        out[f"pass_{k}"] = bool(v)
    out["ok"] = all(crit.values()) and not extra.get("interrupted") and not extra.get("aborted")
    out["interrupted"] = bool(extra.get("interrupted"))
    out["aborted"] = extra.get("aborted")
    out["notes"] = [
        f"warm-up of {warmup:.0f} s (min(10 % of the run, {MAX_WARMUP_S:.0f} s)) excluded from "
        "the first third",
        "emitter RSS is this process: the Emitter plus the synthetic generator, the sampler and "
        "the progress display",
    ]
    return out


# --- the run ---------------------------------------------------------------------------------

def _run_settings(base: Settings, work: Path) -> Settings:
    from agentflux.localkafka import free_port
    run = f"soak-{uuid.uuid4().hex[:8]}"
    return base.replace(app_id=run, topics=Topics.with_prefix(run),
                        history_path=str(work / f"{run}-history"), metrics_port=free_port(),
                        web_port=free_port())


class Sampler:
    """Takes one :class:`Sample` from the worker, the emitter and this process."""

    def __init__(self, worker: Any, emitter: Any, gen: PacedGenerator):
        import psutil
        self.worker, self.emitter, self.gen = worker, emitter, gen
        self.wproc = psutil.Process(worker.pid)
        self.me = psutil.Process()
        self._psutil = psutil
        self._cpu_prev = self._cpu_times()
        psutil.cpu_percent()  # starts the machine-wide interval
        self.samples: list[Sample] = []
        self._metrics: dict[str, float] = {}
        # (t, emitted) at the start and at every sample, to date when an event was emitted
        self._times: list[float] = [0.0]
        self._emitted: list[int] = [0]

    def _cpu_times(self) -> tuple[float, float, float]:
        try:
            w = sum(self.wproc.cpu_times()[:2])
        except Exception:
            w = float("nan")
        return time.monotonic(), w, sum(self.me.cpu_times()[:2])

    def take(self, phase: str) -> Sample:
        try:  # the worker's figures first: emitted is then read later, lag is never understated
            self._metrics = self.worker.metrics()
        except OSError:
            pass  # keep the last figures (a scrape timed out on a busy machine)
        m = self._metrics
        st = self.emitter.stats()
        t = time.monotonic() - self.gen.t0
        landed, dead = int(m.get(EVENTS_ROWS, 0)), int(m.get(DL_ROWS, 0))
        lag_records = int(sum(v for k, v in m.items() if k.startswith(LAG_PREFIX)))
        try:
            wrss = self.wproc.memory_info().rss / 2**20
        except Exception:  # the worker is gone: reported by the caller
            wrss = float("nan")
        prev = self.samples[-1] if self.samples else None
        rate = ((st.emitted - prev.emitted) / (t - prev.t) if prev and t > prev.t
                else st.emitted / t if t > 0 else 0.0)
        self._times.append(t)
        self._emitted.append(st.emitted)
        landed_lag = max(0, st.emitted - landed - dead)
        now_cpu = self._cpu_times()
        dt = max(1e-6, now_cpu[0] - self._cpu_prev[0])
        wcpu = (now_cpu[1] - self._cpu_prev[1]) / dt * 100
        ecpu = (now_cpu[2] - self._cpu_prev[2]) / dt * 100
        self._cpu_prev = now_cpu
        s = Sample(t=t, phase=phase, emitted=st.emitted, acked=st.acked, dropped=st.dropped,
                   failed=st.failed, buffered=st.buffered, pending=st.pending,
                   pending_peak=max(st.pending, self.gen.take_peak()), landed=landed,
                   dead=dead, lag_records=lag_records, landed_lag=landed_lag,
                   landed_lag_s=self._age(landed + dead, t) if landed_lag else 0.0,
                   worker_rss_mb=wrss, emitter_rss_mb=self.me.memory_info().rss / 2**20,
                   rate=rate, worker_cpu=wcpu, emitter_cpu=ecpu,
                   machine_cpu=self._psutil.cpu_percent())
        self.samples.append(s)
        return s

    def _age(self, landed: int, now: float) -> float:
        """Seconds since event number ``landed + 1`` was emitted (the oldest not landed),
        interpolated between the samples' emitted counts."""
        em, ts = self._emitted, self._times
        i = bisect.bisect_right(em, landed)  # first sample that had emitted more than `landed`
        if i == 0 or i >= len(em):
            return 0.0
        e0, e1, t0, t1 = em[i - 1], em[i], ts[i - 1], ts[i]
        t_emit = t0 + (t1 - t0) * (landed + 1 - e0) / (e1 - e0)
        return max(0.0, now - t_emit)


def soak(settings: Settings, minutes: float, rate: float, work: Path, console: Any,
         progress_console: Any = None, emitter_kw: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the soak on ``settings``' broker (topics, worker and history of its own under
    ``work``); returns the summary, also after Ctrl-C. ``emitter_kw``: Emitter options (the
    command uses the defaults, as a runtime would)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from agentflux.harness import WorkerProcess
    from agentflux.runtime.emitter import Emitter
    from agentflux.streams.topics import ensure_topics

    s = _run_settings(settings, work)
    asyncio.run(ensure_topics(s))
    duration = minutes * 60.0
    total = max(1, round(rate * duration))
    extra: dict[str, Any] = {"events_target": total}
    worker = em = gen = None
    sampler: Sampler | None = None
    t_emit_end = None
    try:
        log = work / "worker.log"
        console.print(f"broker {s.bootstrap_servers}; worker log {log}")
        worker = WorkerProcess(s, log_path=log).start(ready_timeout_s=120)
        em = Emitter(s, **{"runtime": "agentflux-soak", "spool_dir": "",
                           **(emitter_kw or {})}).start()
        gen = PacedGenerator(em.emit, rate, total, probe=lambda: em.stats().pending)
        sampler = Sampler(worker, em, gen)
        cols = (TextColumn("{task.description}"), BarColumn(),
                TextColumn("{task.completed:>5.0f}/{task.total:.0f} s"), TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"))
        with Progress(*cols, console=progress_console or console) as progress:
            task = progress.add_task(f"soak {rate:,.0f}/s", total=duration, info="")
            gen.start()
            next_t = gen.t0 + 1.0
            phase = "emit"
            drain_deadline = drain_moved = 0.0
            drain_landed = -1
            while True:
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # the sampling cadence of a benchmark
                next_t += 1.0 if phase == "emit" else 0.1
                if phase == "emit" and gen.done:
                    t_emit_end = gen.t_end
                    phase = "drain"
                    drain_moved = time.monotonic()
                    drain_deadline = drain_moved + max(DRAIN_DEADLINE_S, duration)
                smp = sampler.take(phase)
                progress.update(task, completed=min(duration, smp.t), info=(
                    f"{smp.rate:>7,.0f} ev/s  worker {smp.worker_rss_mb:5.0f} MB  emitter "
                    f"{smp.emitter_rss_mb:4.0f} MB  lag {smp.landed_lag:>7,} ev / "
                    f"{smp.lag_records:,} rec"))
                if gen.error is not None:
                    extra["aborted"] = f"generator failed: {gen.error!r}"
                    break
                if worker.proc.poll() is not None:
                    code = worker.proc.returncode
                    extra["aborted"] = f"the worker exited with {code} (see {log})"
                    break
                if phase == "drain":
                    if smp.pending == 0 and smp.landed + smp.dead >= smp.acked:
                        extra["drain_s"] = round(time.monotonic() - t_emit_end, 2)
                        break
                    now = time.monotonic()
                    if smp.landed + smp.dead > drain_landed:
                        drain_landed, drain_moved = smp.landed + smp.dead, now
                    if now - drain_moved > DRAIN_STALL_S or now > drain_deadline:
                        extra["aborted"] = (
                            f"{smp.landed + smp.dead:,} of {smp.acked:,} acked events landed "
                            f"{now - t_emit_end:.0f} s after the last emit (nothing landed for "
                            f"{now - drain_moved:.0f} s)")
                        break
    except KeyboardInterrupt:
        extra["interrupted"] = True
        console.print("[yellow]interrupted: stopping; summary of what was sampled so far[/yellow]")
    finally:
        if gen is not None:
            gen.stop()
        if em is not None:
            st = em.stats()
            extra["ack_p50_ms"] = _r(st.ack_p50_ms or float("nan"), 2)
            extra["ack_p99_ms"] = _r(st.ack_p99_ms or float("nan"), 2)
            em.close(5 if extra.get("interrupted") else 30)
        if worker is not None:
            worker.stop()
    samples = sampler.samples if sampler else []
    if gen is not None and gen.t0 is not None:
        end = t_emit_end or gen.t_end or (gen.t0 + samples[-1].t if samples else gen.t0)
        duration_s = max(0.0, end - gen.t0)
    else:
        duration_s = 0.0
    return summarise(samples, rate, minutes, duration_s, extra)


def print_table(r: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    def n(x: Any, fmt: str = ",.0f") -> str:
        return "-" if x is None else format(x, fmt)

    t = Table(title=f"soak: {r['rate']:,.0f} events/s for {r['minutes']:g} min "
                    f"({r['duration_s']:.0f} s emitting, {r['samples']} samples)")
    t.add_column("figure")
    t.add_column("value", justify="right")
    rows = [
        ("events emitted / acked / landed",
         f"{r['emitted']:,} / {r['acked']:,} / {r['landed']:,}"),
        ("dead-lettered / dropped / failed",
         f"{r['dead_lettered']:,} / {r['dropped']:,} / {r['failed']:,}"),
        ("achieved rate (slowest second)",
         f"{r['achieved_rate']:,} events/s ({r['rate_1s_min']:,})"),
        ("warm-up excluded; first / last third", f"{r['warmup_s']:.0f} s; "
         f"{r['first_third_s'][0]:.0f}-{r['first_third_s'][1]:.0f} s / "
         f"{r['last_third_s'][0]:.0f}-{r['last_third_s'][1]:.0f} s"),
        ("worker RSS mean first / last third (ratio; max)",
         f"{n(r['worker_rss_mb_first_third'])} / {n(r['worker_rss_mb_last_third'])} MB "
         f"(x{n(r['worker_rss_ratio'], '.3f')}; {n(r['worker_rss_mb_max'])} MB)"),
        ("emitter RSS (this process, incl. the generator)",
         f"{n(r['emitter_rss_mb_first_third'])} / {n(r['emitter_rss_mb_last_third'])} MB "
         f"(x{n(r['emitter_rss_ratio'], '.3f')}; {n(r['emitter_rss_mb_max'])} MB)"),
        ("consumer lag, records (max / p99)",
         f"{r['lag_records_max']:,} / {r['lag_records_p99']:,}"),
        ("landed lag, events (max / p99)",
         f"{r['landed_lag_events_max']:,} / {r['landed_lag_events_p99']:,}"),
        ("landed lag, events: first / last third max",
         f"{n(r['landed_lag_events_first_third_max'])} / "
         f"{n(r['landed_lag_events_last_third_max'])}"),
        ("landed lag, seconds (max / p99)",
         f"{n(r['landed_lag_s_max'], '.2f')} / {n(r['landed_lag_s_p99'], '.2f')}"),
        ("emitter buffered max (samples) / pending max (10 ms)",
         f"{r['emitter_buffered_max']:,} / {r['emitter_pending_max']:,}"),
        ("write-to-ack p50 / p99", f"{n(r['ack_p50_ms'], '.2f')} / {n(r['ack_p99_ms'], '.2f')} ms"),
        ("CPU while emitting: worker / emitter (% of a core); machine (% of all)",
         f"{n(r['worker_cpu_pct_mean'])} / {n(r['emitter_cpu_pct_mean'])} %; "
         f"{n(r['machine_cpu_pct_mean'])} %"),
        ("drain after the last emit", "-" if r["drain_s"] is None else f"{r['drain_s']:.2f} s"),
    ]
    for row in rows:
        t.add_row(*row)
    console.print(t)
    c = Table(title="criteria")
    c.add_column("criterion")
    c.add_column("rule")
    c.add_column("result")
    rules = {
        "rate_held": "achieved >= 97 % of the rate; nothing dropped or failed",
        "delivered": "acked == emitted; landed (+ dead letters) == acked",
        "worker_memory_flat": "last-third mean RSS within 10 % of the first third's",
        "emitter_memory_flat": "last-third mean RSS within 10 % of the first third's",
        "lag_bounded": "landed lag < 5 s of events; last-third max <= first-third max x 1.5 + 1 s",
    }
    for k, rule in rules.items():
        ok = r[f"pass_{k}"]
        c.add_row(k, rule, "[green]pass[/green]" if ok else "[red]FAIL[/red]")
    console.print(c)
    for note in r["notes"]:
        console.print(f"[dim]{note}[/dim]")
    if r["interrupted"]:
        console.print("[yellow]interrupted: a partial run[/yellow]")
    if r["aborted"]:
        console.print(f"[red]aborted: {r['aborted']}[/red]")


def main(minutes: float, rate: float, as_json: bool, console: Any) -> int:
    """``agentflux bench soak``: exit 0 when every criterion passed, 1 otherwise, 130 after
    Ctrl-C."""
    from agentflux.cli import broker_for

    if not minutes > 0:
        raise ConfigError(f"--minutes must be > 0, got {minutes!r}")
    if not rate >= 1:
        raise ConfigError(f"--rate must be >= 1 event/s, got {rate!r}")
    quiet = console
    if as_json:
        from rich.console import Console
        quiet = Console(stderr=True)
    work = Path(tempfile.mkdtemp(prefix="agentflux-soak-"))
    result = None
    interrupted = False
    try:
        with broker_for(Settings.from_env(), quiet) as settings:
            result = soak(settings, minutes, rate, work, quiet, quiet)
    except KeyboardInterrupt:  # while the broker or the worker was starting or stopping
        interrupted = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if result is None:
        quiet.print("[yellow]interrupted before the first sample[/yellow]")
        return 130
    if as_json:
        import json
        print(json.dumps(result))
    else:
        print_table(result, console)
    if result["interrupted"] or interrupted:
        return 130
    return 0 if result["ok"] else 1
