"""The optimizer's resource predictions: the pipeline's published ones when there are, the local
predictor's otherwise; malformed prediction values are ignored and counted. (The subscriber
against the real broker: tests/integration/test_pool_manager.py.)"""

from __future__ import annotations

import orjson

from agentflux.config import Settings
from agentflux.runtime.optimizer import PerformanceOptimizer
from agentflux.runtime.predictions import PredictionSubscriber, check_prediction
from agentflux.runtime.resources import DEFAULT_REQUIREMENTS


def prediction(philosophy="react", tool=None, issued=1, cpu=33.0, mem=256.0, t=4.5) -> dict:
    rec = {"execution_time_seconds": {"target": t, "lower": t / 2, "upper": t * 2}}
    if tool is None:
        rec.update(cpu_percent={"target": cpu, "lower": 1.0, "upper": 90.0},
                   memory_mb={"target": mem, "lower": 10.0, "upper": 900.0})
    return {"v": 1, "key": philosophy if tool is None else f"{philosophy}/{tool}",
            "philosophy": philosophy, "tool": tool, "issued_at_ns": issued, "as_of_ns": issued,
            "half_life_s": 3600.0, "samples": 50, "weight": 40.0, "confidence": 0.8,
            "recommendation": rec, "mean_x_1_2": {"cpu_percent": 1.0, "memory_mb": 1.0,
                                                  "execution_time_seconds": 1.0},
            "issuer": "test"}


def subscriber() -> PredictionSubscriber:
    """A subscriber fed by hand (never started: no broker in a unit test)."""
    return PredictionSubscriber(Settings.from_env(env={}))


def test_without_a_subscriber_the_optimizer_predicts_locally():
    o = PerformanceOptimizer(enable_gc_optimization=False)
    assert o.predict_resource_requirements({"philosophy": "react"}) == DEFAULT_REQUIREMENTS
    assert o.prediction_source({"philosophy": "react"}) == "local"
    o.track_agent_resources({"philosophy": "react"},
                            {"cpu_percent": 10.0, "memory_usage_mb": 100.0, "execution_time": 5.0})
    assert o.predict_resource_requirements({"philosophy": "react"}) == {
        "cpu_percent": 12.0, "memory_mb": 120.0, "execution_time_seconds": 6.0}


def test_published_prediction_wins_for_its_philosophy_only():
    sub = subscriber()
    sub._take(b"react", orjson.dumps(prediction(issued=1, cpu=20.0)))
    sub._take(b"react", orjson.dumps(prediction(issued=2, cpu=33.0)))
    sub._take(b"react/search", orjson.dumps(prediction(tool="search", issued=3, t=0.2)))
    o = PerformanceOptimizer(enable_gc_optimization=False, predictions=sub)
    assert o.predict_resource_requirements({"philosophy": "react"}) == {
        "cpu_percent": 33.0, "memory_mb": 256.0, "execution_time_seconds": 4.5}
    assert o.prediction_source({"philosophy": "react"}) == "pipeline"
    assert o.prediction_source({"philosophy": "chain_of_thought"}) == "local"
    cot = {"philosophy": "chain_of_thought"}
    assert o.predict_resource_requirements(cot) == DEFAULT_REQUIREMENTS
    tool = sub.latest("react", "search")
    assert tool["recommendation"]["execution_time_seconds"]["target"] == 0.2
    assert o.prediction_stats == {"pipeline": 1, "local": 1, "malformed": 0}


def test_malformed_values_are_ignored_and_counted():
    sub = subscriber()
    sub._take(b"react", orjson.dumps(prediction(issued=5)))
    for bad in (b"{not json", b"[]", orjson.dumps({"v": 2}),
                orjson.dumps({**prediction(issued=9), "recommendation": {"cpu_percent": {}}}),
                orjson.dumps({**prediction(issued=9), "recommendation": {
                    "cpu_percent": {"target": "high"}}})):
        sub._take(b"react", bad)
    assert sub.malformed == 5
    assert sub.latest("react")["issued_at_ns"] == 5  # the good one stays
    # an older document delivered later does not replace a newer one
    sub._take(b"react", orjson.dumps(prediction(issued=4, cpu=1.0)))
    assert sub.latest("react")["issued_at_ns"] == 5
    # a tombstone removes the key
    sub._take(b"react", None)
    assert sub.latest("react") is None


def test_a_philosophy_prediction_without_the_three_targets_falls_back_locally():
    sub = subscriber()
    # valid as a document (a tool-shaped recommendation) but under a philosophy key
    doc = prediction(issued=1)
    doc["recommendation"] = {"execution_time_seconds": {"target": 1.0}}
    sub._take(b"react", orjson.dumps(doc))
    o = PerformanceOptimizer(enable_gc_optimization=False, predictions=sub)
    assert o.predict_resource_requirements({"philosophy": "react"}) == DEFAULT_REQUIREMENTS
    assert o.prediction_source({"philosophy": "react"}) == "local"
    assert o.prediction_stats["malformed"] == 1


def test_check_prediction_reasons():
    assert check_prediction(prediction()) is None
    assert check_prediction(prediction(tool="search")) is None
    assert check_prediction("x") == "not a JSON object"
    assert check_prediction({**prediction(), "recommendation": None}) == "no recommendation"
    assert "no numeric target" in check_prediction(
        {**prediction(), "recommendation": {"cpu_percent": {"target": float("nan")}}})
