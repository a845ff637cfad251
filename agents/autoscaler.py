"""The pool autoscaler: target sizes per container pool from the KPI windows of ``pool.acquire``.

Input. The closed tumbling windows (:mod:`agentflux.streams.windows`) of ``pool.acquire``, one
row per window, pool (``name``) and source partition, possibly in several revisions: ``count``
(acquisitions), ``sums``/``maxes`` of ``warm``, ``cold``, ``available`` (idle after the
acquire), ``in_use`` (in use after it, this one included) and ``target``. The pieces of one
window are added (a row id is counted once). ``progress`` markers say up to when each source
partition has published: a window is used only once it is complete (every source partition
past its end), and a window with no row at all that is complete counts as a window with no
demand, so demand that vanishes (only progress markers advancing) scales the pool down.

Demand per window ``i`` of length ``T``: the arrival rate ``lambda_i = count / T``; the mean
concurrency an arrival finds, ``sum(in_use) / count - 1`` (the ``-1``: the row's ``in_use``
includes the arrival itself), which by PASTA estimates the time-average concurrency ``L``;
the peak ``max(in_use)``; warm starts and misses (cold starts). Little's law gives the hold
time ``W = sum(L_i T) / sum(count_i)`` (container-seconds in use per acquisition) over the last
``hold_windows`` complete windows (a property of the workload that changes slowly; over a few
windows of a ramp ``L / lambda`` lags and is biased).

Forecast. The arrival rate over the last ``windows`` complete windows: its least-squares trend
counts only when it stands out of the noise (``|slope|`` above two standard errors: short
windows hold few arrivals, and extrapolating their noise would chase every blip); with a trend
the forecast is the fitted line ``horizon_s`` past the latest window, without one the median
window rate (a burst inside one window is not a rate that lasts).

Target: warm containers kept ready. A command's ``target`` is the number of warm (idle)
containers the pool keeps (the specification's ``pool_size``, per pool), and the pool replaces
each one taken at once, through a few creation slots, reusing released containers when they
come back first (:meth:`agentflux.runtime.pool.ContainerPool.set_target`): a fast local loop. So the spares need to cover only what arrives while a replacement starts: by Little's
law on the replenishment pipeline, ``a = lambda_f * tau`` acquisitions, ``tau`` the start
latency (the ``cold`` dimension's mean cold-start latency over ``hold_windows``, shrunk towards
the policy's ``start_latency_s`` by :data:`START_PRIOR` pseudo-starts; the policy's value until
a cold start shows the real one). Target ``ceil(a + z * sqrt(a))`` (``z`` = ``headroom``:
square-root head room, as in Halfin-Whitt staffing, so a busy pool needs proportionally fewer
spares than a percentage buffer would give it). The demand itself (``L_f = max(lambda_f * W,
L_now)`` in use) is reported with the command (``expected_total`` = in use + warm). With
``peak_floor`` the target is at least the latest window's peak concurrency times
``peak_factor``. ``min_size``/``max_size`` clamp it. (With target = in use + warm, which an
earlier version used, a warm container taken was replaced only by the next command, a control
period later, and the spares had to cover every rise of concurrency: about twice the idle
container-seconds of a static pool for the same warm-start rate.)

Stabilisation (the Kubernetes HPA's rules). A raw recommendation within ``tolerance`` (ratio)
of the current target is the current target. Recommendations are kept with their time: the
pool goes up to the least recommendation of the last ``scale_up_stabilization_s`` (0: at
once) and down to the greatest of the last ``scale_down_stabilization_s``, so it scales up fast
and down only after demand has stayed low for the whole window. A command is issued only when
the stabilised target differs from the last one issued (or, with ``heartbeat_s``, to repeat
the current target so that a restarted pool manager converges).

Commands are :func:`agentflux.commands.new_command` documents, unsigned (the loop signs them),
with a ``reason`` (``scale_up: ...``, ``scale_down: ...``, ``hold: ...``) and the ``inputs``
that produced them. The same class runs in the worker (:mod:`agentflux.agents.loop`), in the
simulator of :mod:`agentflux.bench.autoscale` and in the what-if replay
(:mod:`agentflux.whatif`), so a policy is evaluated offline with the code that would run it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from agentflux.commands import Generations, new_command

ACQUIRE = "pool.acquire"
START_PRIOR = 10  # pseudo-starts at the policy's start latency (see _evaluate)
MAX_START_FACTOR = 2.0  # the start latency used is at most this x the policy's

# the per-pool knobs (everything but the global ones below can be overridden under ``pools:``)
_GLOBAL = ("interval_s", "pools", "predictor")


@dataclass
class AutoscalerPolicy:
    """How the autoscaler sizes pools; ``pools`` holds per-pool overrides of the other fields
    (``{"react": {"max_size": 80}}``), ``predictor`` the resource predictor's section, passed
    through untouched (:class:`agentflux.agents.predictor.PredictorPolicy.from_dict`)."""

    interval_s: float = 10.0  # event time between evaluations (one per KPI window by default)
    min_size: int = 1
    max_size: int = 50
    tolerance: float = 0.1  # HPA's: a ratio within 10 % of the current target changes nothing
    scale_up_stabilization_s: float = 0.0
    scale_down_stabilization_s: float = 300.0
    headroom: float = 2.0  # z of square-root head room: a + z * sqrt(a)
    start_latency_s: float = 1.0  # a container's start until the pool's cold starts show it
    horizon_s: float = 30.0  # how far ahead the arrival-rate trend is extrapolated
    trend_significance: float = 2.0  # a trend counts above this many standard errors
    windows: int = 6  # complete windows the arrival rate and its trend are estimated over
    hold_windows: int = 30  # complete windows the hold time (Little's law) is estimated over
    peak_floor: bool = False  # target >= peak concurrency of the latest window * peak_factor
    peak_factor: float = 1.0
    heartbeat_s: float = 0.0  # > 0: repeat the current target this often (event time)
    image: str | None = None
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    predictor: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the key and the fix."""
        def need(ok: bool, key: str, msg: str) -> None:
            if not ok:
                raise ValueError(f"{key}: {msg}")
        for key in ("interval_s", "horizon_s", "start_latency_s"):
            v = getattr(self, key)
            need(_num(v) and v > 0, key, f"must be a number of seconds > 0, got {v!r}")
        for key in ("scale_up_stabilization_s", "scale_down_stabilization_s", "heartbeat_s"):
            v = getattr(self, key)
            need(_num(v) and v >= 0, key, f"must be a number of seconds >= 0, got {v!r} "
                 "(0 turns it off)")
        for key in ("min_size", "max_size", "windows", "hold_windows"):
            v = getattr(self, key)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 0, key,
                 f"must be a whole number >= 0, got {v!r}")
        need(self.hold_windows >= 1, "hold_windows", "must be >= 1 (e.g. 30)")
        need(self.windows >= 1, "windows", "must be >= 1 (the number of KPI windows the "
             "demand is estimated over, e.g. 6)")
        need(self.min_size <= self.max_size, "min_size",
             f"{self.min_size} is above max_size {self.max_size}: lower min_size or raise max_size")
        need(_num(self.tolerance) and 0 <= self.tolerance < 1, "tolerance",
             f"must be a ratio in [0, 1), e.g. 0.1 (HPA's), got {self.tolerance!r}")
        need(_num(self.trend_significance) and self.trend_significance >= 0,
             "trend_significance", "must be a number of standard errors >= 0, e.g. 2 (0: "
             f"every trend counts), got {self.trend_significance!r}")
        need(_num(self.headroom) and self.headroom >= 0, "headroom",
             f"must be a number >= 0 (z of L + z*sqrt(L), e.g. 2), got {self.headroom!r}")
        need(isinstance(self.peak_floor, bool), "peak_floor",
             f"must be true or false, got {self.peak_floor!r}")
        need(_num(self.peak_factor) and self.peak_factor > 0, "peak_factor",
             f"must be a number > 0, e.g. 1.0, got {self.peak_factor!r}")
        need(self.image is None or (isinstance(self.image, str) and self.image), "image",
             f"must be an image name or left out, got {self.image!r}")
        need(isinstance(self.predictor, dict), "predictor",
             f"must be a mapping (the predictor's policy), got {type(self.predictor).__name__}")
        need(isinstance(self.pools, dict), "pools",
             f"must be a mapping of pool name -> overrides, got {type(self.pools).__name__}")
        for name, over in self.pools.items():
            need(isinstance(over, dict), f"pools.{name}",
                 f"must be a mapping of overrides, got {type(over).__name__}")
            for k in over:
                need(k in _POOL_KEYS, f"pools.{name}.{k}",
                     f"unknown key (a pool can override: {', '.join(sorted(_POOL_KEYS))})")
            try:
                dataclasses.replace(self, pools={}, predictor={}, **over)
            except ValueError as exc:
                raise ValueError(f"pools.{name}.{exc}") from None
            except TypeError as exc:  # pragma: no cover - keys are checked above
                raise ValueError(f"pools.{name}: {exc}") from None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "AutoscalerPolicy":
        """A policy from a mapping (a parsed YAML file); unknown keys are errors (a typo must
        not silently leave a default in force)."""
        d = dict(d or {})
        if "autoscaler" in d:  # the documented layout: ``autoscaler:`` and ``predictor:``
            inner = d.pop("autoscaler")
            if not isinstance(inner, dict):
                raise ValueError(f"autoscaler: must be a mapping of keys, got "
                                 f"{type(inner).__name__}")
            for k in d:
                if k != "predictor":
                    raise ValueError(f"{k}: unknown top-level key (a policy file holds "
                                     "autoscaler: and predictor: sections)")
            if "predictor" in inner:
                raise ValueError("autoscaler.predictor: the predictor's section is top-level "
                                 "(next to autoscaler:)")
            d = {**inner, **d}
        known = {f.name for f in dataclasses.fields(cls)}
        for k in d:
            if k not in known:
                raise ValueError(f"{k}: unknown key (known: {', '.join(sorted(known))})")
        for k in ("pools", "predictor"):
            if d.get(k) is None:
                d.pop(k, None)
        if isinstance(d.get("pools"), dict):
            d["pools"] = {str(n): (dict(v) if isinstance(v, dict) else v)
                          for n, v in d["pools"].items()}
        # 3.0 in YAML is a whole number too
        for k in ("min_size", "max_size", "windows", "hold_windows"):
            if isinstance(d.get(k), float) and d[k].is_integer():
                d[k] = int(d[k])
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str) -> "AutoscalerPolicy":
        import yaml
        with open(path, encoding="utf-8") as f:
            try:
                doc = yaml.safe_load(f)
            except yaml.YAMLError as exc:
                raise ValueError(f"not valid YAML: {exc}") from None
        if doc is not None and not isinstance(doc, dict):
            raise ValueError(f"the policy must be a mapping of keys, got {type(doc).__name__}")
        return cls.from_dict(doc)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def for_pool(self, pool: str) -> "AutoscalerPolicy":
        """This policy with ``pool``'s overrides applied."""
        over = self.pools.get(pool)
        return dataclasses.replace(self, pools={}, predictor={}, **over) if over else self

    def replace(self, **changes: Any) -> "AutoscalerPolicy":
        return dataclasses.replace(self, **changes)


_POOL_KEYS = {f.name for f in dataclasses.fields(AutoscalerPolicy)} - set(_GLOBAL)


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class _Window:
    start_ns: int
    end_ns: int
    count: int = 0
    warm: float = 0.0
    cold: float = 0.0
    cold_ms_sum: float = 0.0  # cold-start latencies (the ``cold`` dimension's rows)
    cold_n: int = 0
    in_use_sum: float = 0.0
    in_use_max: float = 0.0
    target_sum: float = 0.0
    target_max: float = 0.0
    row_ids: set = field(default_factory=set)  # the pieces counted (a redelivery is one)


@dataclass
class _Pool:
    windows: dict[int, _Window] = field(default_factory=dict)  # start -> window
    size_ns: int = 0  # the window length the rows show
    first_start_ns: int | None = None
    evaluated_to_ns: int = 0  # the complete horizon of the last evaluation
    recs: deque = field(default_factory=deque)  # (t_ns, recommendation)
    target: int | None = None  # last issued
    issued_at_ns: int = 0
    observed_target: int | None = None  # the pool's own target, from its rows
    hold_s: float = 0.0  # last hold-time estimate (kept while there are no arrivals)
    start_s: float | None = None  # last cold-start latency estimate


class Autoscaler:
    """Target sizes per pool from ``pool.acquire`` KPI rows (see the module docstring).

    ``observe(doc)`` takes KPI rows and progress markers (anything else is ignored);
    ``decide(now_ns)`` evaluates the pools whose complete windows advanced by ``interval_s``
    and returns the commands to issue (unsigned)."""

    def __init__(self, policy: AutoscalerPolicy | None = None, *, issuer: str = "",
                 clock: Callable[[], int] = time.time_ns):
        self.policy = policy or AutoscalerPolicy()
        self.issuer = issuer
        self.clock = clock
        self.generations = Generations(clock)
        self.pools: dict[str, _Pool] = {}
        self.progress: dict[int, int] = {}  # source partition -> done_before_ns
        self.partitions = 0
        self.last_inputs: dict[str, dict] = {}  # pool -> inputs of its latest evaluation

    # -- input ----------------------------------------------------------------------------

    def observe(self, doc: Mapping[str, Any]) -> None:
        kind = doc.get("kind")
        if kind == "progress":
            p, t = doc.get("source_partition"), doc.get("done_before_ns")
            if isinstance(p, int) and isinstance(t, int):
                self.progress[p] = max(self.progress.get(p, 0), t)
                n = doc.get("partitions")
                if isinstance(n, int) and n > 0:
                    self.partitions = max(self.partitions, n)
            return
        dim = doc.get("dim", "name")
        if kind != "kpi" or doc.get("type") != ACQUIRE or dim not in ("name", "cold"):
            return
        name = doc.get("name")
        start, end = doc.get("window_start_ns"), doc.get("window_end_ns")
        if not name or not isinstance(start, int) or not isinstance(end, int) or end <= start:
            return
        ps = self.pools.setdefault(str(name), _Pool())
        pol = self.policy.for_pool(name)
        if start < ps.evaluated_to_ns - ps.size_ns * max(pol.windows, pol.hold_windows):
            return  # older than any window still used
        ps.size_ns = ps.size_ns or end - start
        if ps.first_start_ns is None or start < ps.first_start_ns:
            ps.first_start_ns = start
        w = ps.windows.get(start)
        if w is None:
            w = ps.windows[start] = _Window(start, end)
        rid = doc.get("row_id")
        if rid:
            if rid in w.row_ids:
                return
            w.row_ids.add(rid)
        if dim == "cold":  # how long a container takes to start: the cold starts' latency
            n, total = doc.get("duration_count"), doc.get("duration_sum_ms")
            if isinstance(n, int) and n > 0 and _num(total) and total >= 0:
                w.cold_n += n
                w.cold_ms_sum += float(total)
            return
        count = int(doc.get("count") or 0)
        sums, maxes = doc.get("sums") or {}, doc.get("maxes") or {}
        w.count += count
        w.warm += float(sums.get("warm") or 0)
        w.cold += float(sums.get("cold") if sums.get("cold") is not None
                        else count - float(sums.get("warm") or 0))
        w.in_use_sum += float(sums.get("in_use") or 0)
        w.in_use_max = max(w.in_use_max, float(maxes.get("in_use") or 0))
        w.target_sum += float(sums.get("target") or 0)
        w.target_max = max(w.target_max, float(maxes.get("target") or 0))

    def horizon_ns(self, now_ns: int) -> int:
        """Windows ending at or before this are complete: every source partition has
        progressed past it; without progress markers, one window length behind ``now_ns``."""
        if self.partitions and len(self.progress) >= self.partitions:
            return min(self.progress.get(p, 0) for p in range(self.partitions))
        if self.progress and not self.partitions:
            return min(self.progress.values())
        size = max((ps.size_ns for ps in self.pools.values()), default=0)
        return now_ns - size

    # -- decisions ------------------------------------------------------------------------

    def decide(self, now_ns: int) -> list[dict[str, Any]]:
        """The commands due at event time ``now_ns`` (unsigned; issuer set to this issuer)."""
        horizon = self.horizon_ns(now_ns)
        out = []
        for name, ps in self.pools.items():
            if not ps.size_ns or ps.first_start_ns is None:
                continue
            pol = self.policy.for_pool(name)
            # the end of the last complete window on the grid of the pool's windows
            last_end = ps.first_start_ns + (horizon - ps.first_start_ns) // ps.size_ns * ps.size_ns
            if last_end <= ps.first_start_ns:
                continue
            if ps.evaluated_to_ns and last_end - ps.evaluated_to_ns < pol.interval_s * 1e9 - 1:
                continue
            ps.evaluated_to_ns = last_end
            cmd = self._evaluate(name, ps, pol, last_end, now_ns)
            if cmd is not None:
                out.append(cmd)
        return out

    def _evaluate(self, name: str, ps: _Pool, pol: AutoscalerPolicy, last_end: int,
                  now_ns: int) -> dict[str, Any] | None:
        size = ps.size_ns
        T = size / 1e9
        keep = max(pol.windows, pol.hold_windows)
        starts = [last_end - size * k for k in range(keep, 0, -1)]
        starts = [s for s in starts if s >= ps.first_start_ns]
        kept = [ps.windows.get(s) or _Window(s, s + size) for s in starts]
        for s in [s for s in ps.windows if s < starts[0]]:  # done with them
            del ps.windows[s]
        used = kept[-pol.windows:]
        held = kept[-pol.hold_windows:]
        lam = [w.count / T for w in used]
        arrivals = sum(w.count for w in used)
        # the hold time over the longer ``hold_windows`` (a property of the workload that
        # changes slowly; over a few windows of a ramp, L / lambda lags and is biased low)
        h_arr = sum(w.count for w in held)
        if h_arr:
            ps.hold_s = sum(max(0.0, w.in_use_sum / w.count - 1.0) * T
                            for w in held if w.count) / h_arr
        hold = ps.hold_s
        # the start latency: the cold starts' mean, shrunk towards the policy's value by
        # START_PRIOR pseudo-starts (a pool that is mostly warm has a few cold starts, and one
        # slow one must not double its spares)
        cold_n = sum(w.cold_n for w in held)
        if cold_n:
            ps.start_s = ((pol.start_latency_s * START_PRIOR
                           + sum(w.cold_ms_sum for w in held) / 1000.0)
                          / (START_PRIOR + cold_n))
        tau = ps.start_s if ps.start_s is not None else pol.start_latency_s
        # at most MAX_START_FACTOR x the policy's: cold starts slowed by an overloaded engine
        # (many creations at once) would otherwise ask for more spares, more creations, slower
        # starts: a loop that feeds itself
        tau = min(tau, pol.start_latency_s * MAX_START_FACTOR)
        last = used[-1]
        for w in reversed(used):
            if w.count:
                ps.observed_target = int(round(w.target_max))
                break
        # the arrival rate's level and trend, robust to a burst: the median window rate and
        # the Theil-Sen slope (the median of the slopes between every pair of windows: one
        # window holding a burst moves neither); the trend counts only when it stands out of
        # the noise (above ``trend_significance`` standard errors of the least-squares
        # slope), the forecast then ``horizon_s`` past the latest window
        n = len(lam)
        slope = 0.0
        lam_f = sum(lam[-2:]) / len(lam[-2:])
        if n >= 3:
            xs = [(i + 0.5) * T for i in range(n)]
            mx, my = sum(xs) / n, sum(lam) / n
            den = sum((x - mx) ** 2 for x in xs)
            ols = sum((x - mx) * (y - my) for x, y in zip(xs, lam)) / den if den else 0.0
            resid = sum((y - my - ols * (x - mx)) ** 2 for x, y in zip(xs, lam))
            se = math.sqrt(resid / (n - 2) / den) if den else 0.0
            level = _median(lam)
            if abs(ols) > pol.trend_significance * se:
                slope = _median([(lam[j] - lam[i]) / (xs[j] - xs[i])
                                 for i in range(n) for j in range(i + 1, n)])
            lam_f = level + slope * (n * T + pol.horizon_s - mx)
        lam_f = max(0.0, lam_f)
        recent = used[-2:]
        c_recent = sum(w.count for w in recent)
        L_last = max(0.0, sum(w.in_use_sum for w in recent) / c_recent - 1.0) if c_recent else 0.0
        L_f = max(lam_f * hold, L_last)
        # the warm spares: what arrives while a replacement starts (Little's law on the
        # replenishment pipeline), with square-root head room
        a = lam_f * tau
        staffing = math.ceil(a + pol.headroom * math.sqrt(a) - 1e-9) if a > 0 else 0
        peak = int(last.in_use_max)
        floor = math.ceil(peak * pol.peak_factor - 1e-9) if pol.peak_floor else 0
        raw = max(staffing, floor)
        raw = min(max(raw, pol.min_size), pol.max_size)
        current = ps.target if ps.target is not None else ps.observed_target
        rec = raw
        within = current is not None and current > 0 and abs(raw / current - 1) <= pol.tolerance
        if within:
            rec = current
        t = now_ns
        if ps.target is None and not ps.recs and current is not None:
            # a fresh autoscaler (a restart, a rebalance) takes the pool's own target as a
            # recommendation just made: it scales up at once but down only after the window
            ps.recs.append((t - 1, current))
        ps.recs.append((t, rec))
        keep = max(pol.scale_up_stabilization_s, pol.scale_down_stabilization_s) * 1e9
        while ps.recs and ps.recs[0][0] < t - keep:
            ps.recs.popleft()
        up_recs = [r for tr, r in ps.recs if tr >= t - pol.scale_up_stabilization_s * 1e9]
        down_recs = [r for tr, r in ps.recs if tr >= t - pol.scale_down_stabilization_s * 1e9]
        up, down = min(up_recs), max(down_recs)
        base = current if current is not None else rec
        stabilised = base
        if base < up:
            stabilised = up
        if base > down:
            stabilised = down
        if current is None:
            stabilised = rec
        stabilised = min(max(stabilised, pol.min_size), pol.max_size)
        warm_rate = (sum(w.warm for w in used) / arrivals) if arrivals else None
        misses = int(round(sum(w.cold for w in used)))
        inputs = {
            "arrival_rate_per_s": round(lam[-1], 4), "arrival_rate_mean_per_s":
            round(arrivals / (n * T), 4), "hold_time_s": round(hold, 4),
            "concurrency_mean": round(L_last, 3), "concurrency_peak": peak,
            "trend_per_s2": round(slope, 5), "forecast_arrival_rate_per_s": round(lam_f, 4),
            "forecast_concurrency": round(L_f, 3), "concurrency_forecast": round(L_f, 3),
            "start_latency_s": round(tau, 4), "expected_arrivals_during_start": round(a, 3),
            "expected_total": round(L_f + stabilised, 3), "headroom_z": pol.headroom,
            "warm_start_rate": None if warm_rate is None else round(warm_rate, 4),
            "misses": misses, "acquires": arrivals, "current_target": current,
            "raw_recommendation": raw, "within_tolerance": bool(within),
            "stabilised_recommendation": stabilised, "windows_used": n,
            "window_s": T, "as_of_ns": last_end,
        }
        self.last_inputs[name] = inputs
        heartbeat = (pol.heartbeat_s > 0 and ps.target is not None
                     and now_ns - ps.issued_at_ns >= pol.heartbeat_s * 1e9)
        if ps.target is not None and stabilised == ps.target and not heartbeat:
            return None
        if current is None or stabilised > current:
            why = (f"scale_up: {a:.1f} acquisitions expected while a container starts "
                   f"(arrivals {lam_f:.2f}/s, trend {slope:+.3f}/s^2, x start {tau:.2f}s) + "
                   f"headroom {pol.headroom:g}*sqrt -> {staffing} warm, {misses} misses in "
                   f"{n} windows (in use ~{L_f:.1f}: hold {hold:.2f}s)")
            if current is None:
                why = "scale_up" + why[8:] if stabilised > (ps.observed_target or 0) else \
                    ("scale_down" + why[8:] if stabilised < (ps.observed_target or 0)
                     else "hold" + why[8:])
        elif stabilised < current:
            why = (f"scale_down: recommendations stayed at or below {stabilised} warm for "
                   f"{pol.scale_down_stabilization_s:g}s ({a:.1f} acquisitions expected per "
                   f"start of {tau:.2f}s)")
        else:
            why = (f"hold: {'heartbeat' if ps.target is not None else 'first decision'}, "
                   f"target {stabilised} (raw {raw}{', within tolerance' if within else ''}; "
                   f"down only after {pol.scale_down_stabilization_s:g}s)")
        ps.target = stabilised
        ps.issued_at_ns = now_ns
        return new_command(name, stabilised, self.generations.next(name), why, inputs,
                           min_size=pol.min_size, max_size=pol.max_size, image=pol.image,
                           issuer=self.issuer, issued_at_ns=self.clock())

    def reissue(self, name: str, now_ns: int, why: str) -> dict[str, Any] | None:
        """A new command for the target last issued to pool ``name`` (None: none issued):
        for a target its pool manager never got (decided on a backlog, not sent)."""
        ps = self.pools.get(name)
        if ps is None or ps.target is None:
            return None
        pol = self.policy.for_pool(name)
        ps.issued_at_ns = now_ns
        return new_command(name, ps.target, self.generations.next(name), why,
                           dict(self.last_inputs.get(name, {})), min_size=pol.min_size,
                           max_size=pol.max_size, image=pol.image, issuer=self.issuer,
                           issued_at_ns=self.clock())

    # -- state ----------------------------------------------------------------------------

    def targets(self) -> dict[str, int]:
        """The last target issued per pool."""
        return {n: ps.target for n, ps in self.pools.items() if ps.target is not None}

    def state(self) -> dict[str, Any]:
        """What a restart needs to carry on (JSON-able): targets, recommendations in the
        stabilisation windows, hold-time estimates; the windows themselves are rebuilt from
        the rows that follow."""
        return {"pools": {n: {"target": ps.target, "issued_at_ns": ps.issued_at_ns,
                              "recs": list(map(list, ps.recs)), "hold_s": ps.hold_s,
                              "evaluated_to_ns": ps.evaluated_to_ns}
                          for n, ps in self.pools.items()}}

    @classmethod
    def from_state(cls, policy: AutoscalerPolicy, state: Mapping[str, Any],
                   **kw: Any) -> "Autoscaler":
        a = cls(policy, **kw)
        for n, s in (state.get("pools") or {}).items():
            ps = a.pools[n] = _Pool()
            ps.target, ps.issued_at_ns = s.get("target"), int(s.get("issued_at_ns") or 0)
            ps.recs = deque((int(t), int(r)) for t, r in s.get("recs") or ())
            ps.hold_s = float(s.get("hold_s") or 0.0)
            ps.evaluated_to_ns = int(s.get("evaluated_to_ns") or 0)
        return a


def replay(policy: AutoscalerPolicy, docs: Iterable[Mapping[str, Any]],
           **kw: Any) -> list[dict[str, Any]]:
    """The commands an autoscaler with ``policy`` issues over ``docs`` (KPI rows and progress
    markers in the order they were published), deciding after each document at its event
    time: the offline counterpart of the worker's loop."""
    a = Autoscaler(policy, **kw)
    now = 0
    out: list[dict[str, Any]] = []
    for d in docs:
        now = max(now, int(d.get("done_before_ns") or d.get("window_end_ns") or 0))
        a.observe(d)
        out.extend(a.decide(now))
    return out


__all__ = ["AutoscalerPolicy", "Autoscaler", "replay"]
