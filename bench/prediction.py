"""Evaluation of the resource predictor (:mod:`agentflux.agents.predictor`) against the
specification's mean x 1.2 (:class:`agentflux.runtime.resources.ResourcePredictor`) on simulated
heavy-tailed agent usage. Issue 12's target: "under-provisioned runs <= 5 % with less
over-provisioning than mean x 1.2".

The simulation. Per usage *shape*, a sequence of ``runs`` agent runs of one philosophy, one every
``interval_s`` of simulated time (600 s by default: with VPA's 24 h half-life, 144 runs per
half-life). Each run uses CPU, memory and execution time, three independent draws from the shape
(scaled to 40 %, 300 MB and 20 s; every figure below is scale-free). Before each run, both
predictors recommend from the history so far:

* ours: :meth:`Predictor.recommend`'s ``target`` (p90 + margin of the decaying histograms), the
  predictor fed one ``resource.sample`` KPI row per run (a window holding that run's sample, a
  DDSketch as the pipeline's windows publish it, at the window's end);
* the specification's: ``ResourcePredictor.predict_requirements``, mean x 1.2 of the last 100 runs;

then the run's actual usage is compared with each. The first ``warmup`` runs (20) build the
history and are not scored (with no history the specification returns fixed defaults, which say
nothing about either method).

The figures, per shape (pooled over the three metrics; runs scored x 3) and over all shapes:

* ``under``: the share of runs whose usage exceeded the recommended target (under-provisioned);
* ``over``: over-provisioning, the reserved capacity left idle relative to the capacity used,
  ``sum(max(target - usage, 0)) / sum(usage)`` (0.5: for every unit used, half a unit reserved
  and idle). Also ``idle_share``, the share of the reserved capacity left idle,
  ``sum(max(target - usage, 0)) / sum(target)``, and ``shortfall``, the usage not covered,
  ``sum(max(usage - target, 0)) / sum(usage)``;
* ``matched``: the mean scaled to under-provision exactly as often as ours does (``k`` such that
  mean x k misses the same share of runs) and its over-provisioning: the fair comparison of the
  two statistics at equal risk, where mean x 1.2 buys its low over-provisioning with a high
  ``under``;
* ``decayed_mean_x_1_2``: the same figures for mean x 1.2 over the decaying history (the
  ``mean_x_1_2`` of the prediction documents);
* ``target_met``: ours under-provisions <= 5 % and over-provisions less than mean x 1.2.

The shapes, and what to expect:

* ``outliers``: most runs near a typical size (lognormal, sigma 0.2) and 2 % of them 10-50x
  larger: the realistic agent case (a run that loops, a huge tool output). A percentile ignores
  how large the outliers are; the mean does not (each outlier lifts mean x 1.2 for the next 100
  runs), so ours under-provisions about as often as the outliers occur and reserves far less.
  (With outliers in 10 % of runs or more they are the p90 itself and the target is theirs);
* ``outliers_shift``: the same with every run 3x larger from the middle on (a new model or
  prompt): until the decaying histogram's p90 has moved (a fraction of a half-life: the new
  runs need ~10 % of the weight) every run is under-provisioned, ~1.5 points of the figure;
* ``lognormal_0.5``, ``lognormal_1``, ``pareto_3``, ``pareto_2`` (alpha; Pareto x_min 1):
  continuous heavy tails. Here the target *cannot* hold as stated, and this reports it: on a
  stationary continuous distribution the only way to under-provision <= 5 % is to reserve at
  least its p95, which is above mean x 1.2 for all of these (lognormal sigma 1: p95 = 3.1 x the
  mean; Pareto 2: 2.2 x), so anything meeting the 5 % over-provisions more than mean x 1.2, which
  in turn under-provisions 17-28 % of these runs. p90 + 25 % is about their p93-p96: 4-6.5 %
  under. ``matched`` shows that at equal under-provisioning, mean x k and the percentile
  over-provision about the same on these (both estimate one threshold of a stationary
  distribution): the percentile's gain is on outliers and shifts, not on smooth tails.

Figures (``python -m agentflux.bench.prediction``, defaults, seed 0; seeds 1 and 2: ``under``
within a point; under / over):

==============  =============  =============  ==========================
shape           ours           mean x 1.2     mean x k at ours' under
==============  =============  =============  ==========================
outliers        2.7 % / 0.40   5.8 % / 0.55   k 1.42: 0.76
outliers_shift  4.2 % / 0.38   6.0 % / 0.52   k 1.33: 0.65
lognormal_0.5   3.9 % / 1.17   27.5 % / 0.33  k 2.14: 1.16
lognormal_1     6.5 % / 1.95   24.4 % / 0.54  k 2.87: 1.99
pareto_3        4.8 % / 0.88   17.4 % / 0.31  k 1.84: 0.89
pareto_2        6.1 % / 1.21   18.5 % / 0.40  k 2.14: 1.24
overall         4.7 % / 0.91   16.6 % / 0.46  k 2.15: 1.33
==============  =============  =============  ==========================

With VPA's margin of 0.15 instead of 0.25 (``--margin 0.15``), ``outliers_shift`` misses the 5 %
(5.4-5.7 %, seeds 0-2) and the continuous shapes are at 5.4-7.8 %; see
:attr:`PredictorPolicy.margin`.

Deterministic for a seed (numpy's default generator); a few seconds for the defaults.
``python -m agentflux.bench.prediction`` prints the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Callable

import numpy as np

from agentflux.agents.predictor import Predictor, PredictorPolicy
from agentflux.runtime.resources import ResourcePredictor
from agentflux.schemas.sketch import DDSketch

PHILOSOPHY = "bench"
# metric (as predicted by both) -> (the resource row's and the sample's name, the scale of a
# typical run)
METRICS = {"cpu_percent": ("cpu_percent", 40.0),
           "memory_mb": ("memory_mb", 300.0),
           "execution_time_seconds": ("execution_time_s", 20.0)}
UNDER_TARGET = 0.05
S = 10**9


def _outliers(rng: np.random.Generator, n: int, p: float = 0.02) -> np.ndarray:
    base = rng.lognormal(0.0, 0.2, n)
    hit = rng.random(n) < p
    return np.where(hit, base * rng.uniform(10.0, 50.0, n), base)


def _outliers_shift(rng: np.random.Generator, n: int) -> np.ndarray:
    x = _outliers(rng, n)
    x[n // 2:] *= 3.0
    return x


SHAPES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "outliers": _outliers,
    "outliers_shift": _outliers_shift,
    "lognormal_0.5": lambda rng, n: rng.lognormal(0.0, 0.5, n),
    "lognormal_1": lambda rng, n: rng.lognormal(0.0, 1.0, n),
    "pareto_3": lambda rng, n: rng.pareto(3.0, n) + 1.0,
    "pareto_2": lambda rng, n: rng.pareto(2.0, n) + 1.0,
}
# the shapes on which the target can hold (see the module's docstring)
ACHIEVABLE = ("outliers", "outliers_shift")


def _row(metric_name: str, value: float, start_ns: int, end_ns: int) -> dict:
    """A resource KPI row of one window holding one sample, as the pipeline publishes it."""
    s = DDSketch()
    s.add(float(value))
    return {"kind": "kpi", "dim": "resource", "type": "resource.sample", "name": metric_name,
            "philosophy": PHILOSOPHY, "window_start_ns": start_ns, "window_end_ns": end_ns,
            "count": 1, "sketch": s.to_dict()}


def _figures(usage: np.ndarray, target: np.ndarray) -> dict:
    idle = np.maximum(target - usage, 0.0).sum()
    return {"under": float(np.mean(usage > target)),
            "over": float(idle / usage.sum()),
            "idle_share": float(idle / target.sum()),
            "shortfall": float(np.maximum(usage - target, 0.0).sum() / usage.sum())}


def _simulate(shape: str, rng: np.random.Generator, runs: int, policy: PredictorPolicy,
              interval_s: float, warmup: int) -> dict[str, np.ndarray]:
    """Per scored run and metric (scale-free: divided by the metric's scale): usage, our
    target, mean x 1.2 (the specification's), and the mean itself."""
    gen = SHAPES[shape]
    draws = {m: gen(rng, runs) for m in METRICS}
    pred = Predictor(policy)
    spec = ResourcePredictor()
    cols: dict[str, list[float]] = {"usage": [], "ours": [], "spec": [], "decayed_spec": []}
    step = int(interval_s * S)
    for i in range(runs):
        if i >= warmup:
            rec = pred.recommend(PHILOSOPHY)
            req = spec.predict_requirements(PHILOSOPHY)
            for m, (_, scale) in METRICS.items():
                cols["usage"].append(draws[m][i])
                cols["ours"].append(rec[m]["target"] / scale)
                cols["decayed_spec"].append(rec[m]["mean_x_1_2"] / scale)
                cols["spec"].append(req[m] / scale)
        start = i * step
        used = {row_name: float(draws[m][i] * scale) for m, (row_name, scale) in METRICS.items()}
        for row_name, value in used.items():
            pred.observe(_row(row_name, value, start, start + step))
        spec.record_usage(PHILOSOPHY, used)
    return {k: np.asarray(v) for k, v in cols.items()}


def _report(c: dict[str, np.ndarray]) -> dict:
    ours = _figures(c["usage"], c["ours"])
    spec = _figures(c["usage"], c["spec"])
    # the mean scaled to miss as often as ours: k = the (1 - under) quantile of usage / mean
    ratio = np.sort(c["usage"] / (c["spec"] / 1.2))
    j = min(len(ratio) - 1, max(0, math.ceil((1.0 - ours["under"]) * len(ratio)) - 1))
    k = float(ratio[j])
    matched = _figures(c["usage"], c["spec"] / 1.2 * k)
    out = {"runs_scored": int(len(c["usage"])),
           "ours": {k_: round(v, 4) for k_, v in ours.items()},
           "mean_x_1_2": {k_: round(v, 4) for k_, v in spec.items()},
           "decayed_mean_x_1_2": {k_: round(v, 4) for k_, v in
                                  _figures(c["usage"], c["decayed_spec"]).items()},
           "matched": {"k": round(k, 3), **{k_: round(v, 4) for k_, v in matched.items()}},
           "target_met": bool(ours["under"] <= UNDER_TARGET and ours["over"] < spec["over"])}
    return out


def evaluate(runs: int = 1500, seed: int = 0, policy: PredictorPolicy | None = None,
             interval_s: float = 600.0, warmup: int = 20,
             shapes: tuple[str, ...] | None = None) -> dict:
    """The evaluation described in the module's docstring: ``{"settings", "shapes": {shape:
    figures}, "overall": figures, "achievable": figures over the shapes where the target can
    hold, "target_met_where_achievable"}``; JSON-able. ``policy`` defaults to the predictor's
    defaults (VPA's)."""
    policy = policy or PredictorPolicy()
    shapes = tuple(shapes or SHAPES)
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise ValueError(f"unknown shape(s) {unknown}; known: {list(SHAPES)}")
    if runs <= warmup:
        raise ValueError(f"runs ({runs}) must exceed warmup ({warmup})")
    root = np.random.default_rng(seed)
    seeds = root.integers(0, 2**63 - 1, len(SHAPES))
    per: dict[str, dict[str, np.ndarray]] = {}
    for name, s in zip(SHAPES, seeds.tolist()):
        if name in shapes:
            per[name] = _simulate(name, np.random.default_rng(s), runs, policy, interval_s,
                                  warmup)

    def pooled(names) -> dict:
        names = [n for n in names if n in per]
        if not names:
            return {}
        return _report({k: np.concatenate([per[n][k] for n in names]) for k in per[names[0]]})

    achievable = pooled(ACHIEVABLE)
    return {"settings": {"runs": runs, "seed": seed, "interval_s": interval_s, "warmup": warmup,
                         "half_life_s": policy.half_life_s,
                         "target_percentile": policy.target_percentile,
                         "margin": policy.margin, "under_target": UNDER_TARGET},
            "shapes": {n: _report(per[n]) for n in per},
            "overall": pooled(list(per)),
            "achievable": achievable,
            "target_met_where_achievable": all(_report(per[n])["target_met"]
                                               for n in ACHIEVABLE if n in per)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--interval-s", type=float, default=600.0)
    ap.add_argument("--half-life-s", type=float, default=PredictorPolicy.half_life_s)
    ap.add_argument("--target-percentile", type=float, default=PredictorPolicy.target_percentile)
    ap.add_argument("--margin", type=float, default=PredictorPolicy.margin)
    a = ap.parse_args(argv)
    policy = PredictorPolicy(half_life_s=a.half_life_s, target_percentile=a.target_percentile,
                             margin=a.margin)
    json.dump(evaluate(a.runs, a.seed, policy, a.interval_s), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
