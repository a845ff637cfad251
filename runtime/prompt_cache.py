"""Prompt-prefix registry: structure prompts so provider prompt caches hit, and account for it.

Parts are ordered system, shared context (files, tools), history, then the query last, so
recursive calls that share context share a byte-identical prefix. The registry hashes the
prefix at each cache breakpoint (end of the shared context, end of the history); the longest
one seen before (and not expired by the provider's cache TTL) is read from the cache, the rest
of the prefix is written.
Savings are estimated from a provider price table: a cache write costs ``write_mult`` and a read
``read_mult`` times the input price (e.g. 1.25x / 0.1x for one provider, 1.0x / 0.5x for another).

Token accounting is normalised as in ``llm.call``: ``input_tokens`` includes cached tokens;
``cache_read_tokens`` / ``cache_write_tokens`` say how many were read from / written to the cache.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from agentflux.runtime.instrument import Instrumentation
from agentflux.runtime.tokens import DEFAULT_ENCODING, count_many

ORDER = {"system": 0, "shared": 1, "history": 2, "query": 3}


@dataclass(frozen=True)
class ProviderPricing:
    input_usd_per_mtok: float
    write_mult: float = 1.25
    read_mult: float = 0.1
    min_cacheable_tokens: int = 1024
    ttl_s: float = 300.0


DEFAULT_PRICES = {
    "anthropic": ProviderPricing(3.0, write_mult=1.25, read_mult=0.1, min_cacheable_tokens=1024),
    "openai": ProviderPricing(2.5, write_mult=1.0, read_mult=0.5, min_cacheable_tokens=1024),
}


@dataclass(frozen=True)
class PromptPart:
    kind: str  # system | shared | history | query
    text: str

    def __post_init__(self) -> None:
        if self.kind not in ORDER:
            raise ValueError(f"part kind must be one of {sorted(ORDER)}, got {self.kind!r}")


@dataclass(frozen=True)
class BuiltPrompt:
    parts: tuple[PromptPart, ...]
    prefix_id: str | None
    prefix_tokens: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    cost_without_cache_usd: float
    hit: bool

    @property
    def text(self) -> str:
        return "\n\n".join(p.text for p in self.parts)


class PrefixRegistry:
    def __init__(self, prices: Mapping[str, ProviderPricing] | None = None, *,
                 instrumentation: Instrumentation | None = None,
                 clock: Callable[[], float] = time.monotonic, encoding: str = DEFAULT_ENCODING):
        self.prices = dict(prices or DEFAULT_PRICES)
        self._seen: dict[tuple[str, str], float] = {}  # (provider, prefix hash) -> expires at
        self._instr = instrumentation
        self._clock = clock
        self._enc = encoding
        self.hits = self.misses = 0
        self.tokens_read = 0
        self.savings_usd = 0.0

    def build(self, parts: Sequence[PromptPart], provider: str) -> BuiltPrompt:
        pricing = self.prices.get(provider)
        if pricing is None:
            raise ValueError(f"no pricing for provider {provider!r}; known: {sorted(self.prices)}")
        ordered = tuple(sorted(parts, key=lambda p: ORDER[p.kind]))  # stable within a kind
        sizes = count_many([p.text for p in ordered], self._enc)
        total = sum(sizes)
        prefix_parts = [p for p in ordered if p.kind != "query"]
        prefix_tokens = sum(s for p, s in zip(ordered, sizes) if p.kind != "query")
        price = pricing.input_usd_per_mtok / 1e6
        base_cost = total * price
        if not prefix_parts or prefix_tokens < pricing.min_cacheable_tokens:
            return BuiltPrompt(ordered, None, prefix_tokens, total, 0, 0, base_cost, base_cost, False)
        # Cache breakpoints: after the stable context (system + shared) and after the history,
        # as providers cache prefixes. A later call reads the longest prefix seen before and
        # writes what lies beyond it, so a growing conversation keeps hitting its stable head.
        h = hashlib.blake2b(digest_size=12)
        breakpoints: list[tuple[str, int]] = []  # (prefix hash, tokens up to there)
        upto = 0
        for k, (p, size) in enumerate(zip(ordered, sizes)):
            if p.kind == "query":
                break
            h.update(p.kind.encode() + b"\0" + p.text.encode() + b"\0")
            upto += size
            nxt = ordered[k + 1].kind if k + 1 < len(ordered) else "query"
            if nxt != p.kind and (p.kind in ("shared", "history") or nxt in ("history", "query")):
                breakpoints.append((h.copy().hexdigest(), upto))
        now = self._clock()
        read = 0
        for bp_hash, bp_tokens in reversed(breakpoints):
            if bp_tokens >= pricing.min_cacheable_tokens and \
                    self._seen.get((provider, bp_hash), -1.0) > now:
                read = bp_tokens
                break
        for bp_hash, bp_tokens in breakpoints:
            if bp_tokens >= pricing.min_cacheable_tokens:
                self._seen[(provider, bp_hash)] = now + pricing.ttl_s  # reads refresh the TTL
        prefix_id = breakpoints[-1][0] if breakpoints else h.hexdigest()
        write = prefix_tokens - read
        hit = read > 0
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        cost = (total - read - write + read * pricing.read_mult + write * pricing.write_mult) * price
        self.tokens_read += read
        self.savings_usd += base_cost - cost
        if self._instr is not None:
            self._instr.emit("prompt_cache.lookup", {"prefix_id": prefix_id,
                                                     "prefix_tokens": prefix_tokens,
                                                     "outcome": "hit" if hit else "miss"})
        return BuiltPrompt(ordered, prefix_id, prefix_tokens, total, read, write, cost, base_cost, hit)

    def get_stats(self) -> dict[str, float]:
        n = self.hits + self.misses
        return {"hits": self.hits, "misses": self.misses,
                "hit_rate_percent": round(self.hits / n * 100, 2) if n else 0.0,
                "cache_read_tokens": self.tokens_read, "savings_usd": round(self.savings_usd, 6)}
