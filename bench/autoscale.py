"""``agentflux bench autoscale``: pool sizing policies under a bursty trace.

Three policies size one warm pool per philosophy against the same demand:

* ``static``: the specification's default, ``ContainerPool(pool_size=10)`` pre-warmed with 10;
* ``reactive``: the specification's dynamic pre-warming ("Pre-Warming Strategies"): the pool
  starts with the startup pre-warm (5), and every check interval (60 s in the specification,
  scaled with the benchmark's time compression) a pool whose availability is below 20 % of
  ``pool_size`` gets 3 more;
* ``autoscaler``: the closed loop, :class:`agentflux.agents.autoscaler.Autoscaler` fed with the
  KPI rows the pipeline's tumbling windows would publish for the simulated acquisitions, its
  commands applied by a pool manager whose pool keeps ``target`` warm containers ready
  (:meth:`~agentflux.runtime.pool.ContainerPool.set_target`: each one taken replaced through a
  few creation slots, released containers reused first).

The demand is a trace of ``(arrival_s, hold_s)`` per pool: :func:`bursty_trace` compresses a
daily cycle (night trough, day peak) into a few minutes and adds sharp bursts, so a static pool
of 10 both misses at the peak and idles at night.

Two ways to run a policy over a trace:

* :func:`simulate` (virtual time, a discrete-event simulation; milliseconds for minutes of
  trace): the figures for every policy including the closed loop, and what the what-if replay
  (:mod:`agentflux.whatif`) runs over recorded demand;
* :func:`drive` (real time, a real :class:`~agentflux.runtime.pool.ContainerPool` over a real
  backend: processes, or containers through the Docker API): legs (a) and (b) of the benchmark
  (:func:`run_legs`); leg (c), the closed loop through Kafka, reuses the driver and the trace.

Figures per policy: warm-start rate, cold starts, idle container-seconds (the integral over
time of warm containers nobody uses), p99 acquire latency (ms).

Time compression. A day compressed into minutes would make every control period (the KPI
window, the specification's 60 s check, the HPA's 300 s scale-down window) shorter than a
container start if it were compressed by the same factor; instead the control periods are
scaled by one *control* factor, :data:`CONTROL_SCALE` (0.1: a 1 s KPI window for the
pipeline's 10 s, a 6 s pre-warm check for the specification's 60 s), and the autoscaler's
scale-down stabilisation is 3 s (:func:`default_policy`: the HPA's 300 s scaled would hold a
peak's size for a fifth of the compressed day).

What the figures say (the simulator, :func:`default_policy`, seeds 1-8 of
:func:`bursty_trace`, on which the policy was chosen). With :data:`PODMAN`, the engine model
measured here (creations and removals share two slots), the static pool reaches 89-93 % warm
starts with 974-1,122 idle container-seconds; the closed loop 97.8-100 % with 2-19 % fewer
idle container-seconds (11 % on average). On held-out seeds 9-24 it holds on all 16 (96.1-100 %
warm, 5-24 % fewer). With the default engine (a 1 s median start, unlimited concurrency) it
holds on seeds 1-8 and on 13 of 16 held-out seeds (the other three: 94.0-94.7 % warm with
7-26 % fewer idle container-seconds). What makes it possible is the pool's fast local loop: a
warm container taken is replaced at once through a few creation slots, released containers
reused first, so the autoscaler sizes only the spares for the acquisitions expected while one
starts; the random bursts (4 x 8 arrivals within a second, ~6.6 % of the arrivals, some at
night) are what keeps a floor of 3 warm containers and decides the last per cent. (An engine
without a throughput limit in the simulator hid what sank the first real run: each
acquisition cost a creation and a removal, podman saturated, and the closed loop through Kafka
reached 72 % warm.) The real-time legs and the closed loop through Kafka:
``agentflux bench autoscale`` (:mod:`agentflux.bench.closedloop`).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from agentflux.agents.autoscaler import Autoscaler, AutoscalerPolicy

Trace = list[tuple[float, float]]  # (arrival_s, hold_s), sorted by arrival

CONTROL_SCALE = 0.1
SPEC_POOL_SIZE = 10  # the specification's default ContainerPool(pool_size=10)
SPEC_CHECK_S = 60.0  # its monitor_and_prewarm loop sleeps 60 s
SPEC_THRESHOLD_PERCENT = 20.0  # pre-warm when utilization_percent (available / size) < 20
SPEC_PREWARM_COUNT = 3
SPEC_STARTUP_PREWARM = 5  # warm_pools_on_startup: count=5
WARM_LATENCY_S = 0.002  # a warm acquire in the simulator: a list pop and bookkeeping
EPOCH_NS = 1_764_201_600 * 10**9  # the simulator's t = 0 as event time (2025-11-27 00:00 UTC)


# -- the trace --------------------------------------------------------------------------------

def bursty_trace(seed: int = 7, duration_s: float = 150.0, *, trough: float = 1.0,
                 peak: float = 24.0, hold_median_s: float = 2.5, hold_sigma: float = 0.6,
                 bursts: int = 4, burst_size: int = 8, burst_span_s: float = 1.0,
                 day_shape: float = 3.0) -> Trace:
    """A compressed day plus bursts: concurrency (arrival rate x mean hold) follows a raised
    cosine to the power ``day_shape`` (3: a working day of about a third of the cycle, a long night)
    from ``trough`` at the start and end (night) to ``peak`` in the middle (day), arrivals
    Poisson at that rate; ``bursts`` times (uniform over the middle 80 %) ``burst_size`` extra
    arrivals land within ``burst_span_s``. Hold times are lognormal (median ``hold_median_s``,
    shape ``hold_sigma``: a heavy-ish right tail), capped at 10 x the median."""
    rng = random.Random(seed)
    mean_hold = hold_median_s * math.exp(hold_sigma ** 2 / 2)

    def hold() -> float:
        return min(rng.lognormvariate(math.log(hold_median_s), hold_sigma), 10 * hold_median_s)

    def conc(t: float) -> float:
        x = 0.5 - 0.5 * math.cos(2 * math.pi * t / duration_s)
        return trough + (peak - trough) * x ** day_shape

    lam_max = peak / mean_hold
    out: Trace = []
    t = 0.0
    while True:  # thinning of a homogeneous process at the peak rate
        t += rng.expovariate(lam_max)
        if t >= duration_s:
            break
        if rng.random() < conc(t) / peak:
            out.append((t, hold()))
    for _ in range(bursts):
        b = rng.uniform(0.1 * duration_s, 0.9 * duration_s)
        out.extend((b + rng.uniform(0, burst_span_s), hold()) for _ in range(burst_size))
    out.sort()
    return [(round(a, 6), round(h, 6)) for a, h in out if a < duration_s]


def trace_stats(trace: Trace) -> dict[str, Any]:
    """Arrivals, mean hold and the peak and least concurrency of a trace (per second)."""
    if not trace:
        return {"arrivals": 0}
    ev = sorted([(a, 1) for a, _ in trace] + [(a + h, -1) for a, h in trace])
    n = peak = 0
    for _, d in ev:
        n += d
        peak = max(peak, n)
    return {"arrivals": len(trace), "duration_s": round(max(a for a, _ in trace), 3),
            "mean_hold_s": round(sum(h for _, h in trace) / len(trace), 3),
            "peak_concurrency": peak,
            "mean_concurrency": round(sum(h for _, h in trace) / max(a + h for a, h in trace), 3)}


# -- policies ---------------------------------------------------------------------------------

@dataclass
class Static:
    """``ContainerPool(pool_size=size)`` pre-warmed with ``size``: releases go back while fewer
    than ``size`` are idle."""
    size: int = SPEC_POOL_SIZE
    name: str = "static"


@dataclass
class Reactive:
    """The specification's dynamic pre-warming over ``ContainerPool(pool_size=size)``."""
    size: int = SPEC_POOL_SIZE
    check_s: float = SPEC_CHECK_S * CONTROL_SCALE
    threshold_percent: float = SPEC_THRESHOLD_PERCENT
    count: int = SPEC_PREWARM_COUNT
    initial: int = SPEC_STARTUP_PREWARM
    name: str = "reactive"


@dataclass
class Closed:
    """The autoscaler on KPI windows of ``window_s``, deciding ``decision_delay_s`` after a
    window ends (the window's grace, publication, the loop), the pool manager applying a
    command ``apply_delay_s`` later; the pool starts at ``initial_target``."""
    policy: AutoscalerPolicy = field(default_factory=lambda: default_policy())
    window_s: float = 10.0 * CONTROL_SCALE
    decision_delay_s: float = 1.5
    apply_delay_s: float = 0.1
    initial_target: int = SPEC_POOL_SIZE
    max_starting: int = 3  # the pool's replacement slots (ContainerPool's MAX_STARTING)
    name: str = "autoscaler"


def default_policy(**over: Any) -> AutoscalerPolicy:
    """The benchmark's autoscaler policy: the control periods scaled by :data:`CONTROL_SCALE`
    (1 s windows, the rate over the last 2 of them, a 3 s scale-down window), z = 1, at
    least 3 warm (a burst at night), a 1 s start latency until cold starts show the real one.
    Chosen on the simulator over seeds 1-8 of :func:`bursty_trace`, checked on seeds 9-24
    (see the module docstring); deploy/autoscaler.yaml documents real-time values."""
    p = AutoscalerPolicy(interval_s=10.0 * CONTROL_SCALE, headroom=1.0,
                         scale_down_stabilization_s=3.0, horizon_s=10.0 * CONTROL_SCALE,
                         windows=2, hold_windows=30, min_size=3, max_size=60,
                         start_latency_s=1.0)
    return p.replace(**over) if over else p


@dataclass
class StartLatency:
    """The container engine: a creation takes a lognormal time (median ``median_s``, shape
    ``sigma``). With ``slots`` > 0 the engine does that many operations at once and queues the
    rest (first come, first served): creations (cold starts, replacements, pre-warming) and
    removals (``destroy_s`` each) share its throughput, as podman's here do (about 11 creations
    a second at any concurrency, a removal costing about as much as a creation); with 0 every
    creation runs at once (an engine that never saturates)."""
    median_s: float = 1.0
    sigma: float = 0.4
    slots: int = 0
    destroy_s: float = 0.0

    def sample(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median_s), self.sigma)


# podman's Docker API on this 2-core machine (``containers.run`` of busybox ``sleep``, measured
# alone: 0.13 s a creation, ~11 a second at 2-8 at once; a forced removal ~0.12 s), slowed
# about 2x for the broker, the worker and the driver sharing the machine in the benchmark
PODMAN = StartLatency(median_s=0.25, sigma=0.3, slots=2, destroy_s=0.2)


# -- the simulator ----------------------------------------------------------------------------

def _p99(xs: Sequence[float]) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


class _Sim:
    """One pool under one policy, in virtual time."""

    def __init__(self, pool: str, trace: Trace, policy: Any, latency: StartLatency,
                 seed: int, record: bool):
        self.pool, self.trace, self.policy, self.latency = pool, trace, policy, latency
        self.rng = random.Random(seed)
        self.record = record
        self.q: list = []
        self.seq = 0
        self.now = 0.0
        self.idle = 0
        self.in_use = 0
        self.starting = 0  # replacements being created
        self.queued = 0  # replacements waiting for one of the pool's slots
        self.dropped = 0  # replacements not needed by the time they got a slot
        self.free: list[float] = [0.0] * latency.slots  # when each engine slot is free
        self.target = 0
        self.idle_s = 0.0
        self.last_t = 0.0
        self.until = 0.0
        self.lat: list[float] = []
        self.warm = self.cold = self.created = self.destroyed = 0
        self.events: list[dict] = []  # recorded pool.acquire / pool.release
        self.acq: list[tuple[float, bool, float, int, int, int]] = []  # for the KPI windows
        self.commands: list[dict] = []
        self.target_trace: list[tuple[float, int]] = []

    def push(self, t: float, kind: str, data: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.q, (t, self.seq, kind, data))

    def advance(self, t: float) -> None:
        a, b = min(self.last_t, self.until), min(t, self.until)
        if b > a:
            self.idle_s += self.idle * (b - a)
        self.last_t = t
        self.now = t

    def engine(self, service_s: float) -> float:
        """When an engine operation asked for now ends (queued behind others with slots)."""
        if not self.free:
            return self.now + service_s
        begin = max(self.now, heapq.heappop(self.free))
        heapq.heappush(self.free, begin + service_s)
        return begin + service_s

    def create(self) -> float:
        self.created += 1
        return self.engine(self.latency.sample(self.rng))

    def destroy(self, n: int = 1) -> None:
        for _ in range(n):
            self.destroyed += 1
            self.engine(self.latency.destroy_s)

    def start(self, n: int) -> None:
        for _ in range(n):
            self.starting += 1
            self.push(self.create(), "ready")

    def reconcile(self) -> None:
        """The pool manager of the closed loop (:class:`~agentflux.runtime.pool.ContainerPool`
        with a target of its own): ``target`` warm containers kept ready, each one taken
        replaced through at most ``max_starting`` creations at once (one that gets its slot
        after releases refilled the pool is dropped), surplus idle ones destroyed."""
        if not isinstance(self.policy, Closed):
            return
        if self.idle > self.target:
            n = self.idle - self.target
            self.idle -= n
            self.destroy(n)
        missing = self.target - self.idle - self.starting - self.queued
        if missing > 0:
            self.queued += missing
        while self.queued and self.starting < self.policy.max_starting:
            self.queued -= 1
            if self.idle + self.starting >= self.target:
                self.dropped += 1
            else:
                self.start(1)

    def run(self) -> dict[str, Any]:
        pol = self.policy
        self.until = max((a + h for a, h in self.trace), default=0.0) + 5.0
        if isinstance(pol, Static):
            self.idle = pol.size
            self.target = pol.size
            self.created += pol.size
        elif isinstance(pol, Reactive):
            self.idle = pol.initial
            self.target = pol.size
            self.created += pol.initial
            self.push(pol.check_s, "check")
        else:
            self.target = pol.initial_target
            self.idle = pol.initial_target
            self.created += pol.initial_target
            self.scaler = Autoscaler(pol.policy, clock=lambda: EPOCH_NS + int(self.now * 1e9))
            self.push(pol.window_s + pol.decision_delay_s, "decide", 0)
        self.target_trace.append((0.0, self.target))
        for a, h in self.trace:
            self.push(a, "arrive", h)
        while self.q:
            t, _, kind, data = heapq.heappop(self.q)
            if kind in ("check", "decide") and t > self.until:
                continue
            self.advance(t)
            if kind == "arrive":
                self._arrive(data)
            elif kind == "acquired":
                self._acquired(*data)
            elif kind == "release":
                self._release()
            elif kind == "ready":
                self.starting -= 1
                if isinstance(pol, Closed) and self.idle >= self.target:
                    self.destroy()  # releases refilled the pool, or the target went down
                else:
                    self.idle += 1
                self.reconcile()
            elif kind == "check":
                self._check()
            elif kind == "decide":
                self._decide(data)
            elif kind == "apply":
                self.target = data
                self.target_trace.append((self.now, data))
                self.reconcile()
        self.advance(self.until)
        n = self.warm + self.cold
        return {"policy": pol.name, "acquires": n, "warm_starts": self.warm,
                "cold_starts": self.cold,
                "warm_start_rate": round(self.warm / n, 4) if n else None,
                "idle_container_s": round(self.idle_s, 1),
                "p99_acquire_ms": round(_p99(self.lat) * 1000, 1),
                "p50_acquire_ms": round(sorted(self.lat)[len(self.lat) // 2] * 1000, 1)
                if self.lat else 0.0,
                "containers_created": self.created, "containers_destroyed": self.destroyed,
                "replacements_dropped": self.dropped,
                "commands": len(self.commands), "seconds": round(self.until, 1)}

    def _arrive(self, hold: float) -> None:
        if self.idle > 0:
            self.idle -= 1
            self.push(self.now + WARM_LATENCY_S, "acquired", (True, WARM_LATENCY_S, hold))
            self.in_use += 1  # taken now; counted in use from the pop
            self.reconcile()
        else:
            lat = self.create() - self.now
            self.push(self.now + lat, "acquired", (False, lat, hold))
            self.reconcile()

    def _acquired(self, warm: bool, lat: float, hold: float) -> None:
        if warm:
            self.warm += 1
        else:
            self.cold += 1
            self.in_use += 1
        self.lat.append(lat)
        self.acq.append((self.now, warm, self.idle, self.in_use, self.target, lat * 1000))
        if self.record:
            self.events.append({"type": "pool.acquire", "t": self.now, "pool": self.pool,
                                "warm": warm, "startup_ms": round(lat * 1000, 3),
                                "available": self.idle, "in_use": self.in_use,
                                "target": self.target})
        self.push(self.now + hold, "release")
        self.reconcile()

    def _release(self) -> None:
        self.in_use -= 1
        pol = self.policy
        keep = self.idle < (self.target if isinstance(pol, Closed) else pol.size)
        if keep:
            self.idle += 1
        else:
            self.destroy()
        if self.record:
            self.events.append({"type": "pool.release", "t": self.now, "pool": self.pool,
                                "available": self.idle, "in_use": self.in_use,
                                "target": self.target})
        self.reconcile()

    def _check(self) -> None:
        pol = self.policy
        if self.idle / pol.size * 100 < pol.threshold_percent:
            n = min(pol.count, max(0, pol.size - self.idle))
            self.start(n)
        self.push(self.now + pol.check_s, "check")

    def _decide(self, k: int) -> None:
        """Window ``k`` ended ``decision_delay_s`` ago: its row and a progress marker reach the
        autoscaler, which decides; the next window's decision is scheduled."""
        pol = self.policy
        ws = pol.window_s
        start, end = k * ws, (k + 1) * ws
        for row in window_rows(self.pool, self.acq, start, end, k):
            self.scaler.observe(row)
        self.acq = [x for x in self.acq if x[0] >= end]
        now_ns = EPOCH_NS + int(round(end * 1e9))
        self.scaler.observe({"kind": "progress", "source_partition": 0,
                             "done_before_ns": now_ns, "partitions": 1})
        for c in self.scaler.decide(now_ns):
            self.commands.append({**c, "t": self.now})
            self.push(self.now + pol.apply_delay_s, "apply", c["target"])
        self.push(self.now + ws, "decide", k + 1)


def window_rows(pool: str, acquires: Iterable[tuple], start_s: float, end_s: float,
                k: int = 0, philosophy: str | None = None) -> list[dict]:
    """The ``pool.acquire`` KPI rows the pipeline would publish for the acquisitions
    ``(t, warm, available, in_use, target[, startup_ms])`` in ``[start_s, end_s)`` (none if
    there are none), in the shape of :meth:`agentflux.streams.windows.WindowRow.to_dict`: the
    ``name`` row and, with start-up times, the ``cold`` row of the cold starts' latency."""
    xs = [x for x in acquires if start_s <= x[0] < end_s]
    if not xs:
        return []
    sums = {"warm": sum(1 for x in xs if x[1]), "cold": sum(1 for x in xs if not x[1]),
            "available": sum(x[2] for x in xs), "in_use": sum(x[3] for x in xs),
            "target": sum(x[4] for x in xs)}
    maxes = {"warm": int(any(x[1] for x in xs)), "cold": int(any(not x[1] for x in xs)),
             "available": max(x[2] for x in xs), "in_use": max(x[3] for x in xs),
             "target": max(x[4] for x in xs)}
    s_ns, e_ns = EPOCH_NS + int(round(start_s * 1e9)), EPOCH_NS + int(round(end_s * 1e9))
    rows = [{"kind": "kpi", "row_id": f"sim-{pool}-{k}", "worker": "sim", "dim": "name",
             "type": "pool.acquire", "name": pool, "philosophy": philosophy or pool,
             "window_start_ns": s_ns, "window_end_ns": e_ns, "revision": 0,
             "source_partition": 0, "count": len(xs), "errors": 0, "sums": sums,
             "maxes": maxes}]
    cold = [x[5] for x in xs if not x[1] and len(x) > 5]
    if cold:
        rows.append({**rows[0], "row_id": f"sim-{pool}-{k}-cold", "dim": "cold",
                     "count": len(cold), "duration_count": len(cold),
                     "duration_sum_ms": float(sum(cold))})
    return rows


def simulate(trace: Trace | Mapping[str, Trace], policy: Any, *,
             latency: StartLatency | None = None, seed: int = 1,
             record: bool = False) -> dict[str, Any]:
    """Figures of ``policy`` (:class:`Static`, :class:`Reactive`, :class:`Closed`) over
    ``trace`` (one pool's, or ``{pool: trace}``), in virtual time; per pool and in total.
    With ``record`` the simulated ``pool.acquire``/``pool.release`` events and the commands
    are returned too (``events``, ``commands``)."""
    traces = trace if isinstance(trace, Mapping) else {"react": trace}
    latency = latency or StartLatency()
    per: dict[str, Any] = {}
    events: list[dict] = []
    commands: list[dict] = []
    lat: list[float] = []
    for i, (pool, tr) in enumerate(sorted(traces.items())):
        sim = _Sim(pool, list(tr), policy, latency, seed + i, record)
        per[pool] = sim.run()
        events += sim.events
        commands += sim.commands
        lat += sim.lat
    total = _total(per, lat)
    total["policy"] = getattr(policy, "name", type(policy).__name__)
    out = {**total, "pools": per}
    if record:
        out["events"] = sorted(events, key=lambda e: e["t"])
        out["commands"] = commands
    return out


def _total(per: Mapping[str, Mapping[str, Any]], lat: Sequence[float]) -> dict[str, Any]:
    warm = sum(p["warm_starts"] for p in per.values())
    cold = sum(p["cold_starts"] for p in per.values())
    n = warm + cold
    return {"acquires": n, "warm_starts": warm, "cold_starts": cold,
            "warm_start_rate": round(warm / n, 4) if n else None,
            "idle_container_s": round(sum(p["idle_container_s"] for p in per.values()), 1),
            "p99_acquire_ms": round(_p99(lat) * 1000, 1),
            "commands": sum(p.get("commands", 0) for p in per.values())}


def compare(trace: Trace | Mapping[str, Trace], policies: Iterable[Any] | None = None, *,
            latency: StartLatency | None = None, seed: int = 1) -> dict[str, Any]:
    """Every policy over the same trace (virtual time): ``{policy name: figures}``."""
    policies = list(policies) if policies is not None else [Static(), Reactive(), Closed()]
    return {p.name: simulate(trace, p, latency=latency, seed=seed) for p in policies}


# -- real time: a real ContainerPool over a real backend ---------------------------------------

async def drive(pool: Any, trace: Trace, pool_name: str = "react", *, sample_s: float = 0.05,
                controller: Any = None) -> dict[str, Any]:
    """Replay ``trace`` in real time against ``pool`` (a
    :class:`~agentflux.runtime.pool.ContainerPool` with a backend): an acquire at each arrival,
    its release after the hold, all concurrently; ``controller`` (a coroutine function of
    ``(pool, pool_name, stop_event)``) runs alongside (the reactive pre-warming, or nothing).
    Idle container-seconds integrate ``pool.available(pool_name)`` sampled every ``sample_s``
    (and at every acquire and release)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    lat: list[float] = []
    warm = cold = 0
    idle_s = 0.0
    last = [t0, pool.available(pool_name)]
    stop = asyncio.Event()

    def sample() -> None:
        nonlocal idle_s
        now = loop.time()
        idle_s += last[1] * (now - last[0])
        last[0], last[1] = now, pool.available(pool_name)

    async def sampler() -> None:
        while not stop.is_set():
            sample()
            try:
                await asyncio.wait_for(stop.wait(), sample_s)
            except asyncio.TimeoutError:
                pass

    async def one(arrival: float, hold: float) -> None:
        nonlocal warm, cold
        delay = t0 + arrival - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        a = time.perf_counter()
        sample()
        cid, w = await pool.acquire(pool_name)
        lat.append(time.perf_counter() - a)
        sample()
        if w:
            warm += 1
        else:
            cold += 1
        await asyncio.sleep(hold)
        sample()
        await pool.release(pool_name, cid)
        sample()

    tasks = [asyncio.create_task(sampler())]
    if controller is not None:
        tasks.append(asyncio.create_task(controller(pool, pool_name, stop)))
    try:
        await asyncio.gather(*(one(a, h) for a, h in trace))
    finally:
        sample()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    n = warm + cold
    return {"acquires": n, "warm_starts": warm, "cold_starts": cold,
            "warm_start_rate": round(warm / n, 4) if n else None,
            "idle_container_s": round(idle_s, 1), "p99_acquire_ms": round(_p99(lat) * 1000, 3),
            "p50_acquire_ms": round(sorted(lat)[len(lat) // 2] * 1000, 3) if lat else 0.0,
            "seconds": round(loop.time() - t0, 1)}


def reactive_controller(check_s: float = SPEC_CHECK_S * CONTROL_SCALE,
                        threshold_percent: float = SPEC_THRESHOLD_PERCENT,
                        count: int = SPEC_PREWARM_COUNT):
    """The specification's ``monitor_and_prewarm`` (every ``check_s``: a pool whose
    ``utilization_percent`` is below the threshold gets ``count`` more), as a controller for
    :func:`drive`; ``get_pool_stats`` lists a pool only once it has been used, as in the
    specification."""
    async def run(pool: Any, pool_name: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            stats = pool.get_pool_stats()
            for name, s in stats["pools"].items():
                if s["utilization_percent"] < threshold_percent:
                    await pool.pre_warm(name, count=count)
            try:
                await asyncio.wait_for(stop.wait(), check_s)
            except asyncio.TimeoutError:
                pass
    return run


async def run_leg(leg: str, backend: Any, trace: Trace, pool_name: str = "react", *,
                  size: int = SPEC_POOL_SIZE, check_s: float = SPEC_CHECK_S * CONTROL_SCALE,
                  instrumentation: Any = None) -> dict[str, Any]:
    """One leg in real time: ``static`` (pre-warmed with ``size``) or ``reactive`` (the startup
    pre-warm of 5, then the specification's monitor); the pool is drained afterwards."""
    from agentflux.runtime.pool import ContainerPool
    pool = ContainerPool(pool_size=size, backend=backend, instrumentation=instrumentation)
    before = engine_counts(backend)
    try:
        if leg == "static":
            await pool.pre_warm(pool_name, count=size)
            out = await drive(pool, trace, pool_name)
        elif leg == "reactive":
            await pool.pre_warm(pool_name, count=SPEC_STARTUP_PREWARM)
            out = await drive(pool, trace, pool_name, controller=reactive_controller(check_s))
        else:
            raise ValueError(f"unknown leg {leg!r} (static or reactive; the closed loop runs "
                             "through the worker)")
    finally:
        await pool.drain()
    return {"policy": leg, **out, **engine_counts(backend, before),
            "pool_stats": {k: v for k, v in pool.get_pool_stats().items() if k != "pools"}}


def engine_counts(backend: Any, before: Mapping[str, int] | None = None) -> dict[str, int]:
    """Containers the backend created and destroyed (since ``before``, another result of this):
    the engine work a policy costs."""
    now = {"containers_created": getattr(backend, "created", 0),
           "containers_destroyed": getattr(backend, "destroyed", 0)}
    return {k: v - (before or {}).get(k, 0) for k, v in now.items()}


def run_legs(backend: Any = None, duration_s: float = 150.0, seed: int = 7,
             legs: Sequence[str] = ("static", "reactive"), **trace_kw: Any) -> dict[str, Any]:
    """Legs (a) static and (b) reactive in real time over :func:`bursty_trace` (``backend``:
    a :class:`~agentflux.runtime.pool.ProcessBackend` by default), plus the simulator's
    figures for all three policies over the same trace (with the backend's start latency it
    does not model: the default container model)."""
    from agentflux.runtime.pool import ProcessBackend
    backend = backend or ProcessBackend()
    trace = bursty_trace(seed, duration_s, **trace_kw)
    out: dict[str, Any] = {"trace": {"seed": seed, **trace_stats(trace)},
                           "control_scale": CONTROL_SCALE, "legs": {}}
    for leg in legs:
        out["legs"][leg] = asyncio.run(run_leg(leg, backend, trace))
    out["simulated"] = {k: {x: v[x] for x in ("warm_start_rate", "cold_starts",
                                              "idle_container_s", "p99_acquire_ms")}
                        for k, v in compare(trace, seed=seed).items()}
    return out


FIGURES = (("warm_start_rate", "warm-start rate"), ("cold_starts", "cold starts"),
           ("idle_container_s", "idle container-s"), ("p99_acquire_ms", "p99 acquire ms"))


def render(result: Mapping[str, Any]) -> str:
    """:func:`run_legs`' result as a table: the real-time legs, then the simulator's figures
    for every policy over the same trace."""
    cols = [(f"{k} (real)", v) for k, v in result.get("legs", {}).items()]
    cols += [(f"{k} (sim)", v) for k, v in result.get("simulated", {}).items()]
    return f"trace: {result.get('trace')}\n" + figures_table(cols, min_width=14)


def figures_table(cols: Sequence[tuple[str, Mapping[str, Any]]], min_width: int = 12) -> str:
    """Columns of :data:`FIGURES` side by side (``(heading, figures)`` each), as text."""
    width = max([min_width] + [len(c) for c, _ in cols])
    lines = [f"{'':20}" + "".join(f"{c:>{width + 2}}" for c, _ in cols)]
    for key, label in FIGURES:
        cells = []
        for _, f in cols:
            v = f.get(key)
            cells.append("-" if v is None else (f"{v:.1%}" if key == "warm_start_rate"
                                                else f"{v:g}"))
        lines.append(f"{label:20}" + "".join(f"{c:>{width + 2}}" for c in cells))
    return "\n".join(lines) + "\n"


__all__ = ["PODMAN", "Closed", "Reactive", "Static", "StartLatency", "bursty_trace", "compare",
           "default_policy", "drive", "engine_counts", "figures_table", "reactive_controller", "render", "run_leg", "run_legs",
           "simulate",
           "trace_stats", "window_rows"]
