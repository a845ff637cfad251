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


def bench_compression(console=None) -> dict:
    """The compressor on the real evaluation sets (:mod:`agentflux.bench.compression`: the
    development set, ``compression_*``, and the held-out ones, ``compression_holdout_*``,
    ``compression_holdout2_*`` and ``compression_holdout3_*``; YAML, diffs and CSV:
    ``compression_structured_*`` and ``compression_structured_holdout_*``; files shown with
    their line numbers and search results: ``compression_numbered_*``; directory listings:
    ``compression_listings_*``), with
    head-and-tail truncation to the same size as the baseline and the compressor without the
    query (``no_query``) beside it; the project's own synthetic
    corpus alongside (``compression_own_corpus_ratio``) for continuity; and the time it takes
    on pathological inputs (``compression_hostile_*``: runs of dots, tabs, spaces, brackets...,
    :data:`agentflux.bench.compression.HOSTILE`)."""
    from agentflux.bench import compression
    from agentflux.bench.corpus import corpus
    from agentflux.runtime.compress import ContextCompressor

    sets = [("", compression.DATA)]
    for prefix, root in (("holdout_", compression.HOLDOUT), ("holdout2_", compression.HOLDOUT2),
                         ("holdout3_", compression.HOLDOUT3),
                         ("structured_", compression.STRUCTURED),
                         ("structured_holdout_", compression.STRUCTURED_HOLDOUT),
                         ("numbered_", compression.NUMBERED),
                         ("listings_", compression.LISTINGS)):
        if (root / "manifest.json").exists():
            sets.append((prefix, root))
    out: dict = {}
    for prefix, root in sets:
        docs = len(compression.load(root))
        if console is not None:
            from rich.progress import Progress
            with Progress(console=console, transient=True) as bar:
                task = bar.add_task(f"compressing the {prefix or 'development '}set",
                                    total=docs * len(compression.TARGETS))
                real = compression.evaluate(root=root, progress=lambda: bar.advance(task))
        else:
            real = compression.evaluate(root=root)
        out[f"compression_{prefix}documents"] = real["documents"]
        out[f"compression_{prefix}kinds"] = real["kinds"]
        out[f"compression_{prefix}facts"] = real["facts"]
        for target, figs in real["targets"].items():
            for who in ("compressor", "head_and_tail", "no_query"):
                for k, v in figs[who].items():
                    out[f"compression_{prefix}{target}_{who}_{k}"] = v
            out[f"compression_{prefix}{target}_missing"] = {
                d["id"]: d["missing"] for d in figs["documents"] if d["missing"]}
        out[f"compression_{prefix}targets_met"] = compression.targets_met(real)
    for k, v in compression.hostile().items():  # pathological inputs: time stays linear
        out[f"compression_hostile_{k}"] = v
    c = ContextCompressor()
    own = [c.compress(s.text, s.query) for s in corpus(seed=3, per_kind=5)]
    out["compression_own_corpus_ratio"] = round(statistics.median(r.ratio for r in own), 2)
    return out


def main(as_json: bool, console) -> int:
    result = {}
    result.update(bench_cache())
    result.update(bench_routing())
    result.update(bench_compression(None if as_json else console))
    return report(result, as_json, console)
