"""The seed specification's pool, predictor and optimizer scenarios."""

import asyncio
import itertools

import pytest

from agentflux.runtime.instrument import CountingEmitter, Instrumentation
from agentflux.runtime.optimizer import PerformanceOptimizer
from agentflux.runtime.pool import ContainerPool, ProcessBackend
from agentflux.runtime.resources import DEFAULT_REQUIREMENTS, ResourcePredictor
from agentflux.schemas import check


def counter_create():
    ids = itertools.count(1)

    async def create():
        return f"c{next(ids)}"
    return create


def assert_valid_events(sink):
    assert sink.events, "no events were emitted"
    for e in sink.events:
        assert check(e) is None, check(e).message()


# --- pool -------------------------------------------------------------------------------------

async def test_pool_cold_start():
    sink = CountingEmitter()
    pool = ContainerPool(pool_size=2, instrumentation=Instrumentation(sink))
    cid, warm = await pool.acquire("react", counter_create())
    assert (cid, warm) == ("c1", False)
    (ev,) = sink.of_type("pool.acquire")
    assert ev["attrs"]["warm"] is False and ev["attrs"]["startup_ms"] >= 0
    assert_valid_events(sink)


async def test_pool_warm_start_and_release():
    pool = ContainerPool(pool_size=2)
    create = counter_create()
    cid, _ = await pool.acquire("react", create)
    assert await pool.release("react", cid)
    assert pool.available("react") == 1
    again, warm = await pool.acquire("react", create)
    assert (again, warm) == (cid, True)
    assert pool.get_pool_stats()["warm_start_rate_percent"] == 50.0


async def test_pool_max_size_enforcement():
    pool = ContainerPool(pool_size=2)
    create = counter_create()
    ids = [(await pool.acquire("react", create))[0] for _ in range(3)]
    kept = [await pool.release("react", c) for c in ids]
    assert kept == [True, True, False] and pool.available("react") == 2


async def test_pool_pre_warm():
    pool = ContainerPool(pool_size=3)
    assert await pool.pre_warm("cot", counter_create(), count=5) == 3
    assert pool.available("cot") == 3
    _, warm = await pool.acquire("cot", counter_create())
    assert warm


async def test_pool_stats():
    pool = ContainerPool(pool_size=10)
    await pool.pre_warm("react", counter_create(), count=8)
    await pool.pre_warm("chain_of_thought", counter_create(), count=5)
    stats = pool.get_pool_stats()
    assert stats["pool_size"] == 10 and stats["warm_start_enabled"] is True
    assert stats["pools"]["react"]["available"] == 8
    assert stats["pools"]["react"]["utilization_percent"] == 80.0
    assert stats["pools"]["chain_of_thought"]["utilization_percent"] == 50.0


async def test_process_backend_creates_and_destroys_real_processes():
    backend = ProcessBackend()
    pool = ContainerPool(pool_size=1, backend=backend)
    a, _ = await pool.acquire("react")
    b, _ = await pool.acquire("react")
    assert backend.alive(a) and backend.alive(b)
    await pool.release("react", a)
    await pool.release("react", b)  # pool full: destroyed
    assert backend.alive(a) and not backend.alive(b)
    assert await pool.drain() == 1 and not backend.alive(a)


# --- predictor --------------------------------------------------------------------------------

def test_predictor_default_requirements():
    p = ResourcePredictor()
    assert p.predict_requirements("unknown") == DEFAULT_REQUIREMENTS
    assert p.get_prediction_confidence("unknown") == 0.0


def test_predictor_learning_from_usage():
    p = ResourcePredictor()
    p.record_usage("react", {"cpu_percent": 40.0, "memory_usage_mb": 100.0, "execution_time": 10.0})
    p.record_usage("react", {"cpu_percent": 50.0, "memory_usage_mb": 200.0, "execution_time": 20.0})
    assert p.predict_requirements("react") == {"cpu_percent": 54.0, "memory_mb": 180.0,
                                               "execution_time_seconds": 18.0}


def test_predictor_confidence_and_history_limit():
    p = ResourcePredictor(history_size=10)
    for i in range(5):
        p.record_usage("react", {"cpu_percent": 10.0})
    assert p.get_prediction_confidence("react") == 0.5
    for i in range(20):
        p.record_usage("react", {"cpu_percent": 100.0})
    assert p.history_length("react") == 10
    assert p.get_prediction_confidence("react") == 1.0
    assert p.predict_requirements("react")["cpu_percent"] == 120.0  # old samples are gone


# --- optimizer --------------------------------------------------------------------------------

def test_optimizer_initialization():
    o = PerformanceOptimizer(cache_size=500, pool_size=4, enable_gc_optimization=False)
    assert (o.enable_caching, o.enable_pooling, o.enable_gc_optimization) == (True, True, False)
    assert o.get_performance_metrics()["cache_stats"]["max_size"] == 500
    assert o.get_performance_metrics()["pool_stats"]["pool_size"] == 4


async def test_optimizer_start_stop_and_background_loop():
    o = PerformanceOptimizer(loop_interval_s=0.01)
    await o.start()
    assert o.running
    deadline = asyncio.get_running_loop().time() + 5
    while o.loop_iterations < 2:
        assert asyncio.get_running_loop().time() < deadline, "background loop did not run"
        await asyncio.sleep(0.01)
    await o.stop()
    assert not o.running
    assert o.get_performance_metrics()["optimization_metrics"]["gc_collections"] >= 2


async def test_optimizer_container_creation_with_and_without_pool():
    sink = CountingEmitter()
    o = PerformanceOptimizer(enable_pooling=False, instrumentation=Instrumentation(sink))
    cid, m = await o.optimize_container_creation({"philosophy": "react"}, counter_create())
    assert cid == "c1" and m["warm_start"] is False and m["startup_time_ms"] >= 0
    assert_valid_events(sink)
    pooled = PerformanceOptimizer(pool_size=2)
    create = counter_create()
    cid, _ = await pooled.optimize_container_creation({"philosophy": "react"}, create)
    await pooled.release_container({"philosophy": "react"}, cid)
    cid2, m2 = await pooled.optimize_container_creation({"philosophy": "react"}, create)
    assert cid2 == cid and m2["warm_start"] is True
    assert pooled.get_performance_metrics()["warm_start_rate_percent"] == 50.0


def test_optimizer_tool_metadata_and_pattern_caching():
    o = PerformanceOptimizer()
    o.cache_tool_metadata("calculator", {"name": "Calculator"})
    o.cache_execution_pattern("react:basic", {"steps": ["think", "act", "observe"]})
    assert o.get_cached_tool_metadata("calculator") == {"name": "Calculator"}
    assert o.get_cached_pattern("react:basic")["steps"][0] == "think"
    assert o.get_cached_tool_metadata("nope") is None
    om = o.get_performance_metrics()["optimization_metrics"]
    assert (om["cache_hits"], om["cache_misses"]) == (2, 1)



def test_tool_metadata_lives_600_s_and_patterns_300_s():
    from agentflux.runtime.cache import PerformanceCache
    t = [0.0]
    o = PerformanceOptimizer()
    o._cache = PerformanceCache(1000, clock=lambda: t[0])  # the same cache, on a test clock
    o.cache_tool_metadata("calc", {"n": 1})
    o.cache_execution_pattern("p", {"s": 1})
    t[0] = 299.0
    assert o.get_cached_pattern("p") and o.get_cached_tool_metadata("calc")
    t[0] = 301.0
    assert o.get_cached_pattern("p") is None and o.get_cached_tool_metadata("calc")
    t[0] = 601.0
    assert o.get_cached_tool_metadata("calc") is None


def test_optimizer_resource_tracking_and_prediction():
    sink = CountingEmitter()
    o = PerformanceOptimizer(instrumentation=Instrumentation(sink))

    class Agent:
        agent_id = "a1"

    agent = Agent()
    o.track_agent_resources(agent, {"philosophy": "react", "cpu_percent": 45.0,
                                    "memory_usage_mb": 180.0, "execution_time": 25.0})
    assert o.tracked_agents == 1
    assert o.predict_resource_requirements({"philosophy": "react"}) == {
        "cpu_percent": 54.0, "memory_mb": 216.0, "execution_time_seconds": 30.0}
    del agent
    import gc
    gc.collect()
    assert o.tracked_agents == 0  # weak references: no leak
    assert_valid_events(sink)


async def test_optimizer_memory_optimization_enabled_and_disabled():
    sink = CountingEmitter()
    o = PerformanceOptimizer(instrumentation=Instrumentation(sink))
    r = await o.optimize_memory()
    assert r["enabled"] is True and r["memory_before_mb"] > 0
    assert set(r) >= {"objects_collected", "memory_after_mb", "memory_released_mb"}
    assert sink.of_type("memory.gc")
    assert_valid_events(sink)
    assert await PerformanceOptimizer(enable_gc_optimization=False).optimize_memory() == {"enabled": False}


def test_optimizer_performance_metrics_shape():
    m = PerformanceOptimizer().get_performance_metrics()
    assert set(m) == {"optimization_metrics", "cache_stats", "pool_stats", "warm_start_rate_percent"}
    assert set(m["optimization_metrics"]) == {"cache_hits", "cache_misses", "warm_starts",
                                              "cold_starts", "gc_collections", "memory_released_mb"}


async def test_optimizer_reports_cache_deltas_every_interval_while_running():
    sink = CountingEmitter()
    o = PerformanceOptimizer(instrumentation=Instrumentation(sink), stats_interval_s=0.01)
    await o.start()
    o.cache_tool_metadata("t", {"x": 1})
    for _ in range(5):
        o.get_cached_tool_metadata("t")
    o.get_cached_tool_metadata("missing")
    deadline = asyncio.get_running_loop().time() + 5
    while len(sink.of_type("cache.stats")) < 3:
        assert asyncio.get_running_loop().time() < deadline, "no periodic cache.stats"
        await asyncio.sleep(0.01)
    await o.stop()
    stats = [e["attrs"] for e in sink.of_type("cache.stats")]
    assert sum(s["hits"] for s in stats) == 5 and sum(s["misses"] for s in stats) == 1
    assert_valid_events(sink)


def test_process_sampler_emits_resource_samples():
    import os
    import subprocess
    import sys

    from agentflux.runtime.resources import ResourceSampler
    sink = CountingEmitter()
    child = subprocess.Popen([sys.executable, "-c", "x = bytearray(30_000_000); input()"],
                             stdin=subprocess.PIPE)
    try:
        sampler = ResourceSampler(Instrumentation(sink))
        mine = sampler.sample_process(os.getpid(), "react")
        assert mine["memory_mb"] > 10 and mine["execution_time_s"] > 0
        import time
        deadline = time.monotonic() + 10
        while sampler.sample_process(child.pid)["memory_mb"] < 30:
            assert time.monotonic() < deadline, "child never reached 30 MB"
            time.sleep(0.01)  # polling interval of a condition wait
    finally:
        child.kill()
        child.wait()
    assert_valid_events(sink)
