"""The seed specification's cache scenarios, plus the tool-result cache."""

import pytest

from agentflux.runtime.cache import CacheEntry, PerformanceCache, ToolResultCache, canonical_key
from agentflux.runtime.instrument import CountingEmitter, Instrumentation


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_cache_entry_creation():
    c = Clock()
    e = CacheEntry("v", ttl_seconds=300, clock=c)
    assert (e.value, e.created_at, e.expires_at, e.access_count) == ("v", 1000.0, 1300.0, 0)
    assert e.last_accessed == e.created_at


def test_cache_entry_expiration():
    c = Clock()
    e = CacheEntry("v", ttl_seconds=10, clock=c)
    c.t += 10
    assert not e.is_expired()
    c.t += 0.001
    assert e.is_expired()


def test_cache_entry_access_tracking():
    c = Clock()
    e = CacheEntry("v", clock=c)
    c.t += 5
    assert e.access() == "v" and e.access() == "v"
    assert e.access_count == 2 and e.last_accessed == 1005.0


def test_cache_set_get_and_miss():
    cache = PerformanceCache()
    cache.set("a", {"x": 1})
    assert cache.get("a") == {"x": 1}
    assert cache.get("missing") is None


def test_cache_expiration():
    c = Clock()
    cache = PerformanceCache(default_ttl=5, clock=c)
    cache.set("a", 1)
    cache.set("b", 2, ttl=60)
    c.t += 6
    assert cache.get("a") is None and cache.get("b") == 2


def test_cache_invalidation_and_clear():
    cache = PerformanceCache()
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.invalidate("a") and not cache.invalidate("a")
    assert cache.get("a") is None and cache.get("b") == 2
    cache.clear()
    assert len(cache) == 0 and cache.get("b") is None


def test_cache_stats():
    cache = PerformanceCache(max_size=10)
    cache.set("a", 1)
    for _ in range(3):
        cache.get("a")
    cache.get("nope")
    assert cache.get_stats() == {"size": 1, "max_size": 10, "hits": 3, "misses": 1,
                                 "hit_rate_percent": 75.0}


def test_cache_eviction_on_max_size():
    cache = PerformanceCache(max_size=3)
    for i in range(10):
        cache.set(f"k{i}", i)
    assert len(cache) == 3
    assert [cache.get(f"k{i}") for i in range(7, 10)] == [7, 8, 9]


def test_cache_lru_eviction():
    cache = PerformanceCache(max_size=3)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.set("c", 3)
    cache.get("a")  # a is now most recently used
    cache.set("d", 4)  # evicts b
    assert cache.get("b") is None
    assert cache.get("a") == 1 and cache.get("c") == 3 and cache.get("d") == 4


def test_expired_entries_are_evicted_before_lru():
    c = Clock()
    cache = PerformanceCache(max_size=3, clock=c)
    cache.set("old", 1, ttl=1)
    cache.set("b", 2, ttl=100)
    cache.set("c", 3, ttl=100)
    cache.get("old")  # most recently used, but about to expire
    c.t += 2
    cache.set("d", 4)
    assert "old" not in cache
    assert cache.get("b") == 2 and cache.get("c") == 3 and cache.get("d") == 4


def test_stats_events_report_deltas_and_sampled_lookups_agree():
    sink = CountingEmitter()
    cache = PerformanceCache(instrumentation=Instrumentation(sink), lookup_sample_rate=1.0)
    cache.set("a", 1)
    for k in ("a", "a", "x", "a"):
        cache.get(k)
    first = cache.report(1.0)
    cache.get("y")
    second = cache.report(1.0)
    assert (first["hits"], first["misses"]) == (3, 1)
    assert (second["hits"], second["misses"]) == (0, 1)
    lookups = sink.of_type("cache.lookup")
    assert sum(e["attrs"]["outcome"] == "hit" for e in lookups) == 3
    assert sum(e["attrs"]["outcome"] != "hit" for e in lookups) == 2
    assert len(sink.of_type("cache.stats")) == 2


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError):
        PerformanceCache(max_size=0)
    with pytest.raises(ValueError):
        PerformanceCache(lookup_sample_rate=2)


async def test_tool_result_cache_only_caches_idempotent_tools_and_clears_on_restore():
    sink = CountingEmitter()
    trc = ToolResultCache(instrumentation=Instrumentation(sink))
    trc.declare_idempotent("search")
    calls = []

    async def search(q, k=3):
        calls.append(q)
        return [q] * k

    r1, cached1 = await trc.call("search", {"q": "x", "k": 2}, search)
    r2, cached2 = await trc.call("search", {"k": 2, "q": "x"}, search)  # same args, other order
    assert r1 == r2 == ["x", "x"] and (cached1, cached2) == (False, True) and calls == ["x"]
    assert not trc.put("send_email", {"to": "a"}, "sent")
    assert trc.get("send_email", {"to": "a"}) is None
    assert trc.on_checkpoint_restore("ckpt-1") == 1
    assert trc.get("search", {"q": "x", "k": 2}) is None
    assert sink.of_type("checkpoint.restore")[0]["attrs"]["checkpoint_id"] == "ckpt-1"
    inv = sink.of_type("cache.invalidate")[0]["attrs"]
    assert inv["reason"] == "checkpoint_restore" and inv["count"] == 1


def test_canonical_key_ignores_argument_order():
    assert canonical_key("t", {"a": 1, "b": [1, 2]}) == canonical_key("t", {"b": [1, 2], "a": 1})
    assert canonical_key("t", {"a": 1}) != canonical_key("t", {"a": 2})
