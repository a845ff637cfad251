"""Caches an agent runtime uses: a TTL + LRU cache and a tool-result cache.

:class:`PerformanceCache` keeps entries in an ``OrderedDict`` (LRU order, O(1) get and move)
and their expiry times in a heap, so making room evicts expired entries first (O(log n) each)
and only then the least recently used one, without scanning the whole cache.

Instrumentation never dominates the work: ``get``/``set`` only bump integer counters; a
reporter turns them into one ``cache.stats`` event per interval (deltas), and per-lookup
``cache.lookup`` events are optional and sampled (``lookup_sample_rate``). The KPIs computed
downstream come out the same either way (hits = sum of deltas = count of sampled lookups / rate).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping

import orjson

from agentflux.runtime.instrument import Instrumentation

Clock = Callable[[], float]


class CacheEntry:
    """A value with a time-to-live and access tracking. Times are ``clock()`` seconds."""

    __slots__ = ("value", "created_at", "expires_at", "access_count", "last_accessed", "_clock")

    def __init__(self, value: Any, ttl_seconds: float = 300, clock: Clock = time.monotonic):
        if ttl_seconds < 0:
            raise ValueError(f"ttl_seconds must be >= 0, got {ttl_seconds!r}")
        self._clock = clock
        self.value = value
        self.created_at = clock()
        self.expires_at = self.created_at + ttl_seconds
        self.access_count = 0
        self.last_accessed = self.created_at

    def is_expired(self) -> bool:
        return self._clock() > self.expires_at

    def access(self) -> Any:
        self.access_count += 1
        self.last_accessed = self._clock()
        return self.value


class PerformanceCache:
    """TTL + LRU cache with hit/miss statistics (the API of the seed specification)."""

    def __init__(self, max_size: int = 1000, default_ttl: float = 300, *, name: str = "cache",
                 clock: Clock = time.monotonic, instrumentation: Instrumentation | None = None,
                 lookup_sample_rate: float = 0.0):
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size!r}")
        if not 0.0 <= lookup_sample_rate <= 1.0:
            raise ValueError(f"lookup_sample_rate must be in [0, 1], got {lookup_sample_rate!r}")
        self.name = name
        self._cache: OrderedDict[str, CacheEntry] = OrderedDict()
        self._expiry: list[tuple[float, int, str]] = []  # (expires_at, seq, key) min-heap
        self._seq = 0
        self._max_size = max_size
        self._default_ttl = default_ttl
        self._clock = clock
        self._hits = self._misses = self._expired = self._evictions = 0
        self._reported = (0, 0, 0, 0)
        self._instr = instrumentation
        self._sample = lookup_sample_rate
        self._every = max(1, round(1 / lookup_sample_rate)) if lookup_sample_rate else 0
        self._countdown = self._every

    # --- the hot path ----------------------------------------------------------------------
    def get(self, key: str, tool: str | None = None) -> Any | None:
        """The value, or None (missing or expired). ``tool``: the tool the key belongs to, if
        any, named on the sampled ``cache.lookup`` events (per-tool hit rates)."""
        entry = self._cache.get(key)
        if entry is None:
            self._misses += 1
            if self._sample:
                self._countdown -= 1
                if self._countdown <= 0:
                    self._lookup_event("miss", tool)
            return None
        now = self._clock()
        if now > entry.expires_at:
            del self._cache[key]
            self._expired += 1
            self._misses += 1
            if self._sample:
                self._countdown -= 1
                if self._countdown <= 0:
                    self._lookup_event("expired", tool)
            return None
        self._cache.move_to_end(key)
        self._hits += 1
        if self._sample:
            self._countdown -= 1
            if self._countdown <= 0:
                self._lookup_event("hit", tool)
        entry.access_count += 1
        entry.last_accessed = now
        return entry.value

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        cache = self._cache
        if key in cache:
            del cache[key]
        elif len(cache) >= self._max_size:
            self._evict_expired()
            if len(cache) >= self._max_size:
                self._evict_lru()
        entry = CacheEntry(value, self._default_ttl if ttl is None else ttl, self._clock)
        cache[key] = entry
        self._seq += 1
        heapq.heappush(self._expiry, (entry.expires_at, self._seq, key))
        if len(self._expiry) > 4 * self._max_size:  # drop heap items of overwritten entries
            self._expiry = [(e.expires_at, i, k) for i, (k, e) in enumerate(cache.items())]
            heapq.heapify(self._expiry)

    # --- eviction --------------------------------------------------------------------------
    def _evict_expired(self) -> int:
        now = self._clock()
        heap, cache, n = self._expiry, self._cache, 0
        while heap and heap[0][0] < now:
            expires_at, _, key = heapq.heappop(heap)
            entry = cache.get(key)
            if entry is not None and entry.expires_at == expires_at:
                del cache[key]
                n += 1
        self._expired += n
        if n and self._instr is not None:
            self._instr.emit("cache.evict", {"cache": self.name, "reason": "ttl", "count": n})
        return n

    def _evict_lru(self) -> None:
        self._cache.popitem(last=False)
        self._evictions += 1

    def invalidate(self, key: str) -> bool:
        return self._cache.pop(key, None) is not None

    def invalidate_where(self, predicate: Callable[[str], bool], reason: str = "explicit") -> int:
        keys = [k for k in self._cache if predicate(k)]
        for k in keys:
            del self._cache[k]
        if keys and self._instr is not None:
            self._instr.emit("cache.invalidate", {"cache": self.name, "reason": reason,
                                                  "count": len(keys)})
        return len(keys)

    def clear(self) -> None:
        self._cache.clear()
        self._expiry.clear()

    # --- statistics and instrumentation ----------------------------------------------------
    def get_stats(self) -> dict[str, Any]:
        total = self._hits + self._misses
        return {"size": len(self._cache), "max_size": self._max_size, "hits": self._hits,
                "misses": self._misses,
                "hit_rate_percent": round(self._hits / total * 100, 2) if total else 0.0}

    def report(self, interval_s: float) -> dict | None:
        """Emit one ``cache.stats`` event with the deltas since the last report."""
        now = (self._hits, self._misses, self._expired, self._evictions)
        d = [a - b for a, b in zip(now, self._reported)]
        self._reported = now
        attrs = {"cache": self.name, "interval_s": interval_s, "hits": d[0], "misses": d[1],
                 "expired": d[2], "evictions": d[3], "size": len(self._cache)}
        if self._instr is not None:
            self._instr.emit("cache.stats", attrs)
        return attrs

    async def report_every(self, interval_s: float = 1.0) -> None:
        """Run until cancelled: one ``cache.stats`` event per interval."""
        while True:
            await asyncio.sleep(interval_s)
            self.report(interval_s)

    def _lookup_event(self, outcome: str, tool: str | None) -> None:
        # systematic sampling: every (1 / rate)-th lookup, no random draw on the hot path
        self._countdown = self._every
        if self._instr is not None:
            attrs = {"cache": self.name, "outcome": outcome}
            if tool is not None:
                attrs["tool"] = tool
            self._instr.emit("cache.lookup", attrs)

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, key: str) -> bool:
        e = self._cache.get(key)
        return e is not None and not e.is_expired()


def canonical_key(tool: str, arguments: Mapping[str, Any]) -> str:
    """``tool`` + a hash of the arguments with sorted keys: equal arguments, equal key."""
    digest = hashlib.blake2b(orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS),
                             digest_size=16).hexdigest()
    return f"result:{tool}:{digest}"


class ToolResultCache:
    """Caches results of tools declared idempotent; cleared on checkpoint restore."""

    def __init__(self, max_size: int = 1000, default_ttl: float = 300, *,
                 clock: Clock = time.monotonic, instrumentation: Instrumentation | None = None):
        self._cache = PerformanceCache(max_size, default_ttl, name="tool_results", clock=clock,
                                       instrumentation=instrumentation)
        self._idempotent: set[str] = set()
        self._instr = instrumentation

    def declare_idempotent(self, *tools: str) -> None:
        self._idempotent.update(tools)

    def is_cacheable(self, tool: str) -> bool:
        return tool in self._idempotent

    def get(self, tool: str, arguments: Mapping[str, Any]) -> Any | None:
        if tool not in self._idempotent:
            return None
        return self._cache.get(canonical_key(tool, arguments), tool)

    def put(self, tool: str, arguments: Mapping[str, Any], result: Any,
            ttl: float | None = None) -> bool:
        """Cache ``result``; False (and nothing cached) for a tool not declared idempotent."""
        if tool not in self._idempotent:
            return False
        self._cache.set(canonical_key(tool, arguments), result, ttl)
        return True

    async def call(self, tool: str, arguments: Mapping[str, Any],
                   fn: Callable[..., Any]) -> tuple[Any, bool]:
        """``(result, cached)``: the cached result, or ``await fn(**arguments)`` stored if idempotent."""
        hit = self.get(tool, arguments)
        if hit is not None:
            return hit, True
        result = fn(**arguments)
        if asyncio.iscoroutine(result):
            result = await result
        self.put(tool, arguments, result)
        return result, False

    def on_checkpoint_restore(self, checkpoint_id: str) -> int:
        """Results computed after the checkpoint may be wrong now: drop them all."""
        n = len(self._cache)
        self._cache.clear()
        if self._instr is not None:
            self._instr.emit("checkpoint.restore", {"checkpoint_id": checkpoint_id})
            self._instr.emit("cache.invalidate", {"cache": "tool_results",
                                                  "reason": "checkpoint_restore", "count": n})
        return n

    def get_stats(self) -> dict[str, Any]:
        return self._cache.get_stats()

    def report(self, interval_s: float) -> dict | None:
        """Emit one ``cache.stats`` delta event (see :meth:`PerformanceCache.report`)."""
        return self._cache.report(interval_s)
