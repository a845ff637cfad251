import asyncio
import random

import pytest

from agentflux.runtime.executor import AsyncExecutor, Budget, charge
from agentflux.runtime.instrument import CountingEmitter, Instrumentation
from agentflux.runtime.prompt_cache import DEFAULT_PRICES, PrefixRegistry, PromptPart
from agentflux.runtime.router import AllModelsFailed, ModelRouter, ModelSpec, NoCapableModel
from agentflux.schemas import check

MODELS = [
    ModelSpec("big", "anthropic", frozenset({"tools", "vision", "long_context"}), 3.0, 15.0, 0.95, 2000),
    ModelSpec("mid", "openai", frozenset({"tools", "long_context"}), 2.5, 10.0, 0.85, 1500),
    ModelSpec("small", "openai", frozenset({"tools"}), 0.15, 0.6, 0.6, 600),
]


def valid(sink):
    assert sink.events
    for e in sink.events:
        assert check(e) is None, check(e).message()


# --- router -----------------------------------------------------------------------------------

def test_weights_decide_between_cost_and_quality():
    cheap = ModelRouter(MODELS, weights={"cost": 1, "latency": 0, "quality": 0})
    good = ModelRouter(MODELS, weights={"cost": 0, "latency": 0, "quality": 1})
    assert cheap.route({"tools"}).chosen == "small"
    assert good.route({"tools"}).chosen == "big"
    assert good.route({"vision"}).candidates == ("big",)
    with pytest.raises(NoCapableModel):
        good.route({"audio"})


def test_observed_latency_moves_the_choice():
    r = ModelRouter(MODELS, weights={"cost": 0, "latency": 1, "quality": 0}, latency_alpha=1.0)
    assert r.route({"long_context"}).chosen == "mid"
    r.observe_latency("mid", 9000)
    assert r.route({"long_context"}).chosen == "big"


def test_capability_cache_is_used_and_reset_by_new_models():
    r = ModelRouter(MODELS)
    r.route({"tools"})
    r.route({"tools"})
    assert (r.cache_misses, r.cache_hits) == (1, 1)
    r.add_model(ModelSpec("new", "openai", frozenset({"tools"}), 0.01, 0.01, 0.1, 100))
    assert "new" in r.route({"tools"}).candidates


async def test_fallback_chain_with_backoff_and_decision_events():
    sink = CountingEmitter()
    slept = []

    async def fake_sleep(s):
        slept.append(s)

    r = ModelRouter(MODELS, instrumentation=Instrumentation(sink), rng=random.Random(1),
                    weights={"cost": 0, "latency": 0, "quality": 1}, sleep=fake_sleep,
                    backoff_base_s=0.1)
    calls = []

    async def call(model):
        calls.append(model)
        if model != "small":
            raise ConnectionError(f"{model} overloaded")
        return "answer"

    model, result = await r.call_with_fallback(call, {"tools"})
    assert (model, result) == ("small", "answer") and calls == ["big", "mid", "small"]
    assert len(slept) == 2 and 0 <= slept[0] <= 0.1 and 0 <= slept[1] <= 0.2
    decisions = sink.of_type("routing.decision")
    assert [d["attrs"]["chosen"] for d in decisions] == ["big", "mid", "small"]
    assert [d["attrs"].get("fallback_from") for d in decisions] == [None, "big", "mid"]
    assert all(d["attrs"]["decision_us"] > 0 for d in decisions)
    valid(sink)


async def test_all_models_failing_is_reported_with_each_error():
    async def nope(sleep_s):
        pass

    r = ModelRouter(MODELS, sleep=nope)

    async def fail(model):
        raise TimeoutError(model)

    with pytest.raises(AllModelsFailed) as err:
        await r.call_with_fallback(fail, {"tools"})
    assert set(err.value.errors) == {"big", "mid", "small"}


def test_bad_weights_raise():
    with pytest.raises(ValueError):
        ModelRouter(MODELS, weights={"speed": 1})


# --- executor ---------------------------------------------------------------------------------

async def test_parallel_calls_respect_max_concurrency_and_partial_failures():
    sink = CountingEmitter()
    ex = AsyncExecutor(max_concurrency=3, instrumentation=Instrumentation(sink))
    running = peak = 0

    def make(i):
        async def call():
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1
            if i == 4:
                raise ValueError("tool 4 broke")
            return i * i
        return call

    res = await ex.gather({f"t{i}": make(i) for i in range(8)})
    assert peak == 3
    assert res.results == {f"t{i}": i * i for i in range(8) if i != 4}
    assert isinstance(res.errors["t4"], ValueError) and not res.ok
    assert sum(res.best_effort(lambda r: list(r.values()))) == sum(i * i for i in range(8)) - 16
    outcomes = [e["attrs"]["outcome"] for e in sink.of_type("executor.task")]
    assert outcomes.count("ok") == 7 and outcomes.count("failed") == 1
    valid(sink)


async def test_parallel_calls_are_faster_than_sequential():
    ex = AsyncExecutor(max_concurrency=10)

    async def io():
        await asyncio.sleep(0.05)
        return 1

    t0 = asyncio.get_running_loop().time()
    res = await ex.gather({f"c{i}": io for i in range(5)})
    assert len(res.results) == 5
    assert asyncio.get_running_loop().time() - t0 < 5 * 0.05 * 0.6


async def test_speculative_first_success_wins_and_losers_are_cancelled():
    sink = CountingEmitter()
    ex = AsyncExecutor(instrumentation=Instrumentation(sink))
    cancelled = []

    def alt(name, delay, fail=False):
        async def call():
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                cancelled.append(name)
                raise
            if fail:
                raise RuntimeError(name)
            return name
        return call

    name, result = await ex.speculative({"fast_fail": alt("fast_fail", 0.0, True),
                                         "mid": alt("mid", 0.02), "slow": alt("slow", 5)})
    assert (name, result) == ("mid", "mid") and cancelled == ["slow"]
    outcomes = {e["attrs"]["task"]: e["attrs"]["outcome"] for e in sink.of_type("executor.task")}
    assert outcomes == {"fast_fail": "failed", "mid": "won", "slow": "cancelled"}
    with pytest.raises(ExceptionGroup):
        await ex.speculative({"a": alt("a", 0, True)})


async def test_budget_is_enforced_across_parallel_calls():
    ex = AsyncExecutor(max_concurrency=2)

    def spend(tokens):
        async def call():
            await asyncio.sleep(0.01)
            charge(tokens=tokens, cost_usd=tokens / 1e6)
            await asyncio.sleep(1)
            return tokens
        return call

    budget = Budget(max_tokens=250)
    res = await ex.gather({f"c{i}": spend(100) for i in range(6)}, budget)
    assert res.budget_exceeded
    assert budget.tokens <= 300  # stopped right after crossing the limit
    assert len(res.results) < 6 and (res.errors or res.cancelled)

    wall = Budget(max_wall_s=0.1)

    async def slow():
        await asyncio.sleep(5)

    res = await ex.gather({"a": slow, "b": slow}, wall)
    assert res.budget_exceeded and sorted(res.cancelled) == ["a", "b"]


# --- prompt prefixes --------------------------------------------------------------------------

def test_shared_context_first_query_last_and_recursive_calls_hit():
    sink = CountingEmitter()
    reg = PrefixRegistry(instrumentation=Instrumentation(sink))
    shared = PromptPart("shared", "def f(x):\n    return x\n" * 300)
    system = PromptPart("system", "You are a code reviewer.")
    first = reg.build([PromptPart("query", "Is f pure?"), shared, system], "anthropic")
    assert [p.kind for p in first.parts] == ["system", "shared", "query"]
    assert not first.hit and first.cache_write_tokens == first.prefix_tokens
    second = reg.build([system, shared, PromptPart("query", "Does f allocate?")], "anthropic")
    assert second.hit and second.prefix_id == first.prefix_id
    assert second.cache_read_tokens == second.prefix_tokens and second.input_tokens > second.prefix_tokens
    p = DEFAULT_PRICES["anthropic"]
    price = p.input_usd_per_mtok / 1e6
    rest = second.input_tokens - second.prefix_tokens
    assert second.cost_usd == pytest.approx((rest + second.prefix_tokens * 0.1) * price)
    assert first.cost_usd == pytest.approx((first.input_tokens - first.prefix_tokens
                                            + first.prefix_tokens * 1.25) * price)
    assert reg.get_stats()["hit_rate_percent"] == 50.0 and reg.get_stats()["savings_usd"] > 0
    assert [e["attrs"]["outcome"] for e in sink.of_type("prompt_cache.lookup")] == ["miss", "hit"]
    valid(sink)


def test_short_prefixes_are_not_cacheable_and_providers_price_differently():
    reg = PrefixRegistry()
    tiny = reg.build([PromptPart("system", "hi"), PromptPart("query", "q")], "openai")
    assert tiny.prefix_id is None and tiny.cost_usd == tiny.cost_without_cache_usd
    shared = PromptPart("shared", "context line\n" * 800)
    reg.build([shared, PromptPart("query", "a")], "openai")
    hit = reg.build([shared, PromptPart("query", "b")], "openai")
    assert hit.hit
    rest = hit.input_tokens - hit.prefix_tokens
    assert hit.cost_usd == pytest.approx((rest + hit.prefix_tokens * 0.5) * 2.5 / 1e6)
    with pytest.raises(ValueError):
        reg.build([shared], "nobody")


def test_a_growing_history_still_reads_the_stable_head_from_the_cache():
    reg = PrefixRegistry()
    system = PromptPart("system", "You are an agent.")
    shared = PromptPart("shared", "reference manual line\n" * 600)
    first = reg.build([system, shared, PromptPart("query", "q1")], "anthropic")
    step2 = reg.build([system, shared, PromptPart("history", "tool said A " * 50),
                       PromptPart("query", "q2")], "anthropic")
    assert not first.hit and step2.hit
    assert step2.cache_read_tokens == first.prefix_tokens
    assert step2.cache_write_tokens == step2.prefix_tokens - first.prefix_tokens
