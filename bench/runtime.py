"""``agentflux bench runtime``: the runtime components' own costs.

Per-operation figures are medians over repeated blocks of 1,000 calls (block time / 1,000), so
the timer's own cost does not dominate sub-microsecond operations.
"""

from __future__ import annotations

import statistics

from agentflux.bench import report
import time


def _per_call_us(fn, n_blocks: int = 200, block: int = 1000) -> list[float]:
    out = []
    clock = time.perf_counter_ns
    for _ in range(n_blocks):
        t = clock()
        for _ in range(block):
            fn()
        out.append((clock() - t) / block / 1000)
    return out


def bench_cache() -> dict:
    from agentflux.runtime.cache import PerformanceCache
    from agentflux.runtime.instrument import CountingEmitter, Instrumentation

    plain = PerformanceCache(max_size=10_000)
    instrumented = PerformanceCache(max_size=10_000, instrumentation=Instrumentation(CountingEmitter()),
                                    lookup_sample_rate=0.01)
    keys = [f"tool:{i}" for i in range(5000)]
    for k in keys:
        plain.set(k, {"v": k})
        instrumented.set(k, {"v": k})
    it = iter(range(10**9))
    get_plain, get_instr = [], []
    for _ in range(20):  # alternate the two so drift (frequency, other load) hits both alike
        get_plain += _per_call_us(lambda: plain.get(keys[next(it) % 5000]), n_blocks=20)
        get_instr += _per_call_us(lambda: instrumented.get(keys[next(it) % 5000]), n_blocks=20)
    lru = PerformanceCache(max_size=1000)
    set_us = _per_call_us(lambda: lru.set(f"k{next(it)}", 1))
    base = statistics.median(get_plain)
    return {"cache_get_median_us": round(base, 3), "cache_set_median_us": round(statistics.median(set_us), 3),
            "cache_get_instrumented_median_us": round(statistics.median(get_instr), 3),
            "instrumentation_overhead_pct": round((statistics.median(get_instr) - base) / base * 100, 1)}


def bench_routing() -> dict:
    from agentflux.runtime.agentsim import MODEL_SPECS
    from agentflux.runtime.instrument import CountingEmitter, Instrumentation
    from agentflux.runtime.router import ModelRouter

    router = ModelRouter(MODEL_SPECS, instrumentation=Instrumentation(CountingEmitter(keep=10)))
    lat = []
    clock = time.perf_counter_ns
    for _ in range(20_000):
        t = clock()
        router.route({"tools"}, 2000, 200)
        lat.append((clock() - t) / 1000)
    lat.sort()
    return {"routing_p50_us": round(lat[len(lat) // 2], 2), "routing_p99_us": round(lat[int(len(lat) * 0.99)], 2)}


def bench_compression() -> dict:
    from agentflux.bench.corpus import corpus
    from agentflux.runtime.compress import ContextCompressor

    c = ContextCompressor()
    samples = corpus(seed=3, per_kind=5)
    ratios, kept, total, ms = [], 0, 0, []
    by_kind: dict[str, list[float]] = {}
    for s in samples:
        r = c.compress(s.text, s.query)
        ratios.append(r.ratio)
        by_kind.setdefault(s.kind, []).append(r.ratio)
        must = s.must_keep()
        kept += sum(f in r.text for f in must)
        total += len(must)
        ms.append(r.duration_ms)
    return {"compression_ratio": round(statistics.median(ratios), 2),
            "compression_ratio_min": round(min(ratios), 2),
            "compression_ratio_by_kind": {k: round(statistics.median(v), 2) for k, v in by_kind.items()},
            "compression_key_facts_kept": round(kept / total, 4),
            "compression_ms_p50": round(statistics.median(ms), 2),
            "compression_ms_max": round(max(ms), 2),
            "compression_samples": len(samples)}


def main(as_json: bool, console) -> int:
    result = {}
    result.update(bench_cache())
    result.update(bench_routing())
    result.update(bench_compression())
    return report(result, as_json, console)
