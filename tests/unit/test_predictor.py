"""The resource predictor (agents/predictor.py): its decaying histogram against numpy, decay and
the reference shift, the confidence-widened bounds, the prediction documents others read, the
policy's validation, and the evaluation's target on the outlier shape (bench/prediction.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agentflux.agents.predictor import (METRICS, DecayingHistogram, Predictor, PredictorPolicy,
                                        MAX_DECAY_EXPONENT)
from agentflux.bench.prediction import evaluate
from agentflux.schemas.sketch import DDSketch

S = 10**9
DAY = 86400.0
RATIO = 1.05


def within_bucket(est: float, true: float, extra: float = 1.0) -> bool:
    """The histogram returns the upper edge of the bucket holding the true value: never below
    it, at most one bucket (5 %) above."""
    return true * (1 - 1e-9) / extra <= est <= true * RATIO * extra * (1 + 1e-9)


def row(name: str, values, start_s: float, end_s: float, philosophy: str = "react",
        dim: str = "resource", type_: str = "resource.sample") -> dict:
    s = DDSketch()
    s.add_many(list(values))
    return {"kind": "kpi", "dim": dim, "type": type_, "name": name, "philosophy": philosophy,
            "window_start_ns": int(start_s * S), "window_end_ns": int(end_s * S),
            "count": s.count, "errors": 0, "sums": {}, "maxes": {}, "sketch": s.to_dict()}


def resource_rows(values, start_s: float, end_s: float, philosophy: str = "react") -> list[dict]:
    return [row(n, values, start_s, end_s, philosophy)
            for n in ("cpu_percent", "memory_mb", "execution_time_s")]


# -- the histogram ---------------------------------------------------------------------------

@pytest.mark.parametrize("dist", ["lognormal", "uniform", "pareto", "small"])
def test_percentiles_match_numpy_within_a_bucket(dist):
    rng = np.random.default_rng(7)
    x = {"lognormal": rng.lognormal(3.0, 1.0, 5000), "uniform": rng.uniform(10, 20, 3000),
         "pareto": rng.pareto(2.0, 4000) + 1.0, "small": rng.uniform(0.002, 0.05, 1000)}[dist]
    h = DecayingHistogram()
    h.add_many(x, t_s=0.0)
    for q in (0.01, 0.1, 0.5, 0.9, 0.95, 0.99, 1.0):
        true = float(np.quantile(x, q, method="inverted_cdf"))
        assert within_bucket(h.percentile(q), true), (q, h.percentile(q), true)
    assert h.mean() == pytest.approx(x.mean(), rel=1e-12)
    assert h.samples == len(x) and h.total_weight() == pytest.approx(len(x))


def test_single_adds_equal_a_batch_and_empty_is_none():
    x = np.random.default_rng(1).lognormal(0, 1, 300)
    a, b = DecayingHistogram(), DecayingHistogram()
    for v in x:
        a.add(float(v), 1.0, 5.0)
    b.add_many(x, 5.0)
    np.testing.assert_allclose(a.weights, b.weights)
    e = DecayingHistogram()
    assert e.is_empty() and e.percentile(0.9) is None and e.mean() is None
    assert e.total_weight() == 0.0


def test_an_old_sample_weighs_half_per_half_life():
    h = DecayingHistogram(half_life_s=3600.0)
    h.add(10.0, 1.0, t_s=1000.0)
    assert h.total_weight(1000.0) == pytest.approx(1.0)
    assert h.total_weight(1000.0 + 3600.0) == pytest.approx(0.5)
    assert h.total_weight(1000.0 + 3 * 3600.0) == pytest.approx(0.125)
    # a newer sample one half-life later weighs twice the old one: 1 : 2
    h.add(100.0, 1.0, t_s=1000.0 + 3600.0)
    assert h.total_weight() == pytest.approx(1.5)
    assert within_bucket(h.percentile(0.33), 10.0)
    assert within_bucket(h.percentile(0.34), 100.0)
    assert h.mean() == pytest.approx((10.0 + 2 * 100.0) / 3)


def test_reference_moves_forward_without_overflow():
    hl = 60.0
    h = DecayingHistogram(half_life_s=hl)
    t = 0.0
    for i in range(1000):  # 500 half-lives: factors would reach 2 ** 500 without the shift
        h.add(1.0 if i < 990 else 50.0, 1.0, t)
        t += hl / 2
    assert np.isfinite(h.weights).all() and h.weights.max() < 2.0 ** (MAX_DECAY_EXPONENT + 2)
    assert h.reference_s > 0
    # the last 10 samples dominate: 1 - 2 ** -5 of the weight
    assert within_bucket(h.percentile(0.5), 50.0)
    assert h.total_weight() == pytest.approx(sum(2 ** (-k / 2) for k in range(1000)))


def test_a_regime_shift_moves_the_p90_within_a_half_life():
    rng = np.random.default_rng(3)
    h = DecayingHistogram(half_life_s=DAY)
    hour = 3600.0
    t = 0.0
    for _ in range(24 * 10):  # ten days at ~1
        h.add_many(rng.lognormal(0, 0.1, 5), t)
        t += hour
    assert h.percentile(0.9) < 1.3
    shift = t
    moved_at = None
    while t < shift + 3 * DAY:  # then ~3
        h.add_many(3 * rng.lognormal(0, 0.1, 5), t)
        t += hour
        if moved_at is None and h.percentile(0.9) > 2.5:
            moved_at = t - shift
    assert moved_at is not None and moved_at <= DAY / 2  # ~10 % of the weight: ~4 h
    assert h.percentile(0.5) > 2.5  # after 3 half-lives the median has moved too


def test_add_sketch_equals_adding_the_values():
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.lognormal(4, 1.2, 2000), np.zeros(50)])
    s = DDSketch()
    s.add_many(x)
    a, b = DecayingHistogram(), DecayingHistogram()
    a.add_sketch(s.to_dict(), t_s=10.0)
    b.add_many(x, t_s=10.0)
    assert a.samples == b.samples == len(x)
    for q in (0.01, 0.1, 0.5, 0.9, 0.95, 0.99):
        # the sketch's 1 % accuracy may move a value across a bucket edge: one bucket either way
        assert within_bucket(a.percentile(q), b.percentile(q), extra=RATIO * 1.01), q
    assert a.mean() == pytest.approx(b.mean(), rel=1e-9)  # the sketch's exact sum
    # scaled (ms -> s), and the DDSketch object itself
    c = DecayingHistogram()
    c.add_sketch(s, t_s=10.0, scale=1e-3)
    assert c.mean() == pytest.approx(b.mean() * 1e-3)
    assert within_bucket(c.percentile(0.9), a.percentile(0.9) * 1e-3, extra=RATIO)


def test_merge_equals_one_histogram():
    rng = np.random.default_rng(5)
    hl = 100.0
    one, a, b = (DecayingHistogram(half_life_s=hl) for _ in range(3))
    for i in range(300):
        v, t = rng.lognormal(0, 1, 3), i * 10.0
        one.add_many(v, t)
        (a if i % 2 else b).add_many(v, t)
    b.merge(a)  # their references differ (the shift happens at different samples)
    assert b.total_weight() == pytest.approx(one.total_weight(), rel=1e-9)
    np.testing.assert_allclose(b.weights / b.weights.sum(), one.weights / one.weights.sum(),
                               atol=1e-12)
    assert b.mean() == pytest.approx(one.mean(), rel=1e-9)
    with pytest.raises(ValueError):
        b.merge(DecayingHistogram(half_life_s=hl * 2))


def test_histogram_round_trip():
    h = DecayingHistogram(half_life_s=500.0, ratio=1.1)
    for i in range(100):
        h.add(float(i + 1), 1.0, i * 20.0)
    back = DecayingHistogram.from_dict(json.loads(json.dumps(h.to_dict())))
    np.testing.assert_array_equal(back.weights, h.weights)
    assert (back.reference_s, back.samples, back.first_s, back.last_s, back.weighted_sum) == (
        h.reference_s, h.samples, h.first_s, h.last_s, h.weighted_sum)
    assert back.percentile(0.9) == h.percentile(0.9)


# -- the policy ------------------------------------------------------------------------------

def test_policy_defaults_and_yaml_section():
    assert PredictorPolicy.from_dict(None) == PredictorPolicy()
    assert PredictorPolicy.from_dict({}) == PredictorPolicy()
    p = PredictorPolicy.from_dict({"half_life_s": 3600, "margin": 0.1, "full_confidence_s": 60})
    assert p.half_life_s == 3600.0 and isinstance(p.half_life_s, float) and p.margin == 0.1
    d = PredictorPolicy()
    assert (d.half_life_s, d.target_percentile, d.lower_percentile, d.upper_percentile) == (
        86400.0, 0.9, 0.5, 0.95)


@pytest.mark.parametrize("section, words", [
    ({"half_life_s": 0}, ["predictor.half_life_s", "positive number of seconds"]),
    ({"half_life_s": "1d"}, ["predictor.half_life_s", "remove the quotes"]),
    ({"target_percentile": 90}, ["predictor.target_percentile", "0.9 for p90"]),
    ({"target_percentile": 0.99}, ["lower_percentile <= target_percentile <= upper_percentile"]),
    ({"margin": -0.1}, ["predictor.margin", "non-negative fraction"]),
    ({"full_confidence_samples": 2.5}, ["predictor.full_confidence_samples", "whole number"]),
    ({"bucket_ratio": 1.0}, ["predictor.bucket_ratio", "1.05"]),
    ({"upper_exponent": -1}, ["predictor.upper_exponent", ">= 0"]),
    ({"half_lfe_s": 10}, ["unknown key(s) half_lfe_s", "known keys: half_life_s"]),
    ({"min_value": 10, "max_value": 1}, ["min_value must be below max_value"]),
    ({"publish_every_s": True}, ["predictor.publish_every_s"]),
])
def test_policy_errors_name_the_key_and_the_fix(section, words):
    with pytest.raises(ValueError) as e:
        PredictorPolicy.from_dict(section)
    for w in words:
        assert w in str(e.value), str(e.value)


def test_policy_section_must_be_a_mapping():
    with pytest.raises(ValueError, match="mapping"):
        PredictorPolicy.from_dict([1, 2])


# -- the predictor ---------------------------------------------------------------------------

def test_prediction_document_format():
    p = Predictor()
    rng = np.random.default_rng(2)
    for w in range(10):
        for r in resource_rows(rng.lognormal(3, 0.5, 20), w * 60.0, w * 60.0 + 60.0):
            assert p.observe(r)
        assert p.observe(row("search", rng.lognormal(5, 0.5, 10), w * 60.0, w * 60.0 + 60.0,
                             dim="name", type_="tool.call"))
    docs = p.predictions(now_ns=700 * S, issuer="worker-1")
    assert [d["key"] for d in docs] == ["react", "react/search"]
    keys = {"v", "key", "philosophy", "tool", "issued_at_ns", "as_of_ns", "half_life_s",
            "samples", "weight", "confidence", "recommendation", "mean_x_1_2", "issuer"}
    for d in docs:
        assert set(d) == keys
        assert d["v"] == 1 and d["philosophy"] == "react" and d["issuer"] == "worker-1"
        assert d["issued_at_ns"] == 700 * S and d["as_of_ns"] == 600 * S
        assert isinstance(d["samples"], int) and isinstance(d["weight"], float)
        assert isinstance(d["half_life_s"], float) and 0 <= d["confidence"] <= 1
        for m, r in d["recommendation"].items():
            assert set(r) == {"target", "lower", "upper"}
            assert all(isinstance(v, float) and v > 0 for v in r.values())
            assert r["lower"] <= r["target"] <= r["upper"]
            assert isinstance(d["mean_x_1_2"][m], float)
        json.dumps(d)
    phil, tool = docs
    assert phil["tool"] is None and set(phil["recommendation"]) == set(METRICS)
    assert phil["samples"] == 200 and phil["weight"] == pytest.approx(200, rel=1e-2)
    assert tool["tool"] == "search" and set(tool["recommendation"]) == {"execution_time_seconds"}
    assert set(tool["mean_x_1_2"]) == {"execution_time_seconds"} and tool["samples"] == 100
    # tool durations are ms in the rows, seconds in the prediction: e^5 ms ~ 0.15 s
    assert 0.1 < tool["recommendation"]["execution_time_seconds"]["target"] < 1.0


def test_the_target_is_the_p90_with_the_margin_and_mean_x_1_2_the_mean():
    x = np.random.default_rng(4).lognormal(2, 0.7, 2000)
    p = Predictor()
    p.observe_many(resource_rows(x, 0.0, 60.0))
    h = DecayingHistogram()
    h.add_sketch(row("memory_mb", x, 0, 60)["sketch"], 60.0)
    rec = p.recommend("react")["memory_mb"]
    assert rec["target"] == pytest.approx(h.percentile(0.9) * 1.25)
    assert within_bucket(rec["target"] / 1.25, float(np.quantile(x, 0.9, method="inverted_cdf")),
                         extra=1.01 * RATIO)
    assert rec["mean_x_1_2"] == pytest.approx(x.mean() * 1.2)


def test_rows_that_are_not_the_predictors_are_ignored():
    p = Predictor()
    good = row("cpu_percent", [10.0, 20.0], 0, 60)
    ignored = [{"kind": "progress", "partition": 0, "watermark_ns": 1},
               {**good, "dim": "name"},  # resource.sample's name row
               {**good, "name": "memory_percent"},
               {**good, "philosophy": ""},
               {**good, "philosophy": None},
               {**good, "kind": "kpi_batch"},
               row("search", [5.0], 0, 60, dim="agent", type_="tool.call"),
               row("gpt", [5.0], 0, 60, dim="name", type_="llm.call"),
               {**good, "sketch": None}]
    assert not any(p.observe(d) for d in ignored)
    assert p.predictions(61 * S) == [] and p.rows_malformed == 0
    assert not p.observe({**good, "window_end_ns": "soon"}) and p.rows_malformed == 1
    assert not p.observe({**good, "sketch": [1, 2]}) and p.rows_malformed == 2
    assert not p.observe({**good, "sketch": {"count": 2}}) and p.rows_malformed == 3
    assert p.predictions(61 * S) == [] and p.keys() == []
    # pieces of one window (several partitions) add up
    assert p.observe(good) and p.observe(row("cpu_percent", [30.0], 0, 60))
    (doc,) = p.predictions(61 * S)
    assert doc["samples"] == 3
    assert doc["recommendation"]["memory_mb"] is None and doc["mean_x_1_2"]["memory_mb"] is None
    assert doc["mean_x_1_2"]["cpu_percent"] == pytest.approx(20.0 * 1.2)


def test_small_values_keep_their_digits():
    p = Predictor()
    p.observe(row("search", [0.5, 0.6, 0.7], 0, 60, dim="name", type_="tool.call"))  # ms
    (d,) = p.predictions(60 * S)
    r = d["recommendation"]["execution_time_seconds"]
    assert 0.0005 < r["target"] < 0.001 and r["lower"] > 0
    assert d["mean_x_1_2"]["execution_time_seconds"] == pytest.approx(0.00072)


def test_confidence_widens_the_bounds_for_short_histories():
    policy = PredictorPolicy(full_confidence_s=1000.0, full_confidence_samples=50,
                             lower_multiplier=0.5)
    x = np.random.default_rng(8).lognormal(1, 0.5, 10)
    p = Predictor(policy)
    seen = []
    for w in range(12):  # 100 s windows, 10 samples each: full confidence at 1000 s
        p.observe_many(resource_rows(x, w * 100.0, (w + 1) * 100.0))
        (d,) = p.predictions((w + 1) * 100 * S)
        r = d["recommendation"]["cpu_percent"]
        seen.append((d["confidence"], r["lower"] / r["target"], r["upper"] / r["target"]))
    conf = [c for c, _, _ in seen]
    assert conf[0] == pytest.approx(0.1) and conf[-1] == 1.0
    assert conf == sorted(conf)
    lows = [lo for _, lo, _ in seen[:10]]
    ups = [up for _, _, up in seen[:10]]
    assert lows == sorted(lows) and ups == sorted(ups, reverse=True)  # narrowing
    assert ups[0] > 5 and lows[0] < 0.5
    # at full confidence the bounds are the percentiles plus the margin, nothing more
    rec = p.recommend("react")["cpu_percent"]
    h = p._keys[("react", None)].hists["cpu_percent"]
    assert rec["upper"] == pytest.approx(h.percentile(0.95) * 1.25)
    assert rec["lower"] == pytest.approx(h.percentile(0.5) * 1.25)
    # few samples over a long span: confidence limited by the samples
    q = Predictor(policy)
    q.observe(row("cpu_percent", [1.0, 2.0], 0, 5000))
    assert q.confidence("react") == pytest.approx(2 / 50)


def test_bound_factors_are_vpas_with_d_from_the_confidence():
    p = PredictorPolicy()
    lo, up = p.bound_factors(0.5)  # d = 1: VPA's one day
    assert up == pytest.approx(2.0) and lo == pytest.approx(1.001 ** -2)
    assert p.bound_factors(1.0) == (1.0, 1.0)
    assert math.isfinite(p.bound_factors(0.0)[1])


def test_only_changed_issues_moved_keys_and_refreshes():
    policy = PredictorPolicy(publish_change=0.05, publish_every_s=600.0,
                             full_confidence_s=60.0, full_confidence_samples=1)
    p = Predictor(policy)
    p.observe_many(resource_rows([10.0] * 20, 0, 60))
    p.observe(row("search", [100.0], 0, 60, dim="name", type_="tool.call"))
    assert len(p.predictions(60 * S, only_changed=True)) == 2
    assert p.predictions(61 * S, only_changed=True) == []
    p.observe_many(resource_rows([10.1] * 20, 60, 120))  # within a bucket: nothing moved
    assert p.predictions(121 * S, only_changed=True) == []
    p.observe_many(resource_rows([40.0] * 40, 120, 180))  # the p90 moves
    assert [d["key"] for d in p.predictions(181 * S, only_changed=True)] == ["react"]
    assert [d["key"] for d in p.predictions(661 * S, only_changed=True)] == ["react/search"]
    assert len(p.predictions(662 * S)) == 2  # without the option: every key


def test_idle_keys_are_forgotten():
    p = Predictor(PredictorPolicy(forget_after_s=3600.0))
    p.observe_many(resource_rows([1.0], 0, 60))
    p.observe_many(resource_rows([1.0], 3000, 3060, philosophy="cot"))
    assert [d["key"] for d in p.predictions(3000 * S)] == ["cot", "react"]
    assert [d["key"] for d in p.predictions(3700 * S)] == ["cot"] and p.keys() == ["cot"]


def test_predictor_state_round_trip():
    rng = np.random.default_rng(9)
    p = Predictor()
    for w in range(20):
        p.observe_many(resource_rows(rng.lognormal(2, 1, 5), w * 60.0, w * 60.0 + 60.0))
        p.observe(row("search", rng.lognormal(5, 1, 3), w * 60.0, w * 60.0 + 60.0,
                      dim="name", type_="tool.call"))
    back = Predictor.from_dict(json.loads(json.dumps(p.to_dict())))
    assert back.predictions(1300 * S, "w") == p.predictions(1300 * S, "w")


# -- the evaluation --------------------------------------------------------------------------

def test_evaluation_meets_the_target_on_the_outlier_shape():
    r = evaluate(runs=400, seed=1, shapes=("outliers",))
    json.dumps(r)
    f = r["shapes"]["outliers"]
    assert f["runs_scored"] == (400 - 20) * 3
    assert f["ours"]["under"] <= 0.05
    assert f["ours"]["over"] < f["mean_x_1_2"]["over"]
    assert f["target_met"] and r["target_met_where_achievable"]
    # at the same under-provisioning, the mean needs more reserve than the percentile
    assert f["matched"]["under"] == pytest.approx(f["ours"]["under"], abs=0.002)
    assert f["matched"]["over"] > f["ours"]["over"]
    assert evaluate(runs=400, seed=1, shapes=("outliers",)) == r  # deterministic


def test_evaluation_reports_continuous_tails_honestly():
    r = evaluate(runs=300, seed=0, shapes=("lognormal_1",))
    f = r["shapes"]["lognormal_1"]
    # mean x 1.2 under-provisions a large share of a lognormal's runs; ours far fewer, and
    # reserves more: the target is reported as not met
    assert f["mean_x_1_2"]["under"] > 0.15 > f["ours"]["under"]
    assert f["ours"]["over"] > f["mean_x_1_2"]["over"] and not f["target_met"]
    with pytest.raises(ValueError, match="unknown shape"):
        evaluate(runs=50, shapes=("normal",))
