"""PerformanceOptimizer: the facade of the seed specification over cache, pool, predictor and
memory optimisation, with a background loop (memory optimisation + expired-entry cleanup).

With a :class:`~agentflux.runtime.predictions.PredictionSubscriber` the resource predictions
come from the pipeline's predictor (learnt from every runtime's events) when it has published
one for the philosophy, and from the local ResourcePredictor otherwise."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any, Awaitable, Callable, Mapping

from agentflux.runtime.cache import PerformanceCache
from agentflux.runtime.instrument import Instrumentation
from agentflux.runtime.pool import ContainerBackend, ContainerPool
from agentflux.runtime.predictions import SPEC_KEYS, PredictionSubscriber
from agentflux.runtime.resources import ResourcePredictor, optimize_memory

log = logging.getLogger(__name__)

TOOL_METADATA_TTL = 600
PATTERN_TTL = 300


def _philosophy(obj: Any) -> str:
    if isinstance(obj, Mapping):
        p = obj.get("philosophy", "unknown")
    else:
        p = getattr(obj, "philosophy", "unknown")
    return getattr(p, "value", p) or "unknown"


class PerformanceOptimizer:
    def __init__(self, enable_caching: bool = True, enable_pooling: bool = True,
                 enable_gc_optimization: bool = True, cache_size: int = 1000, pool_size: int = 10,
                 *, instrumentation: Instrumentation | None = None,
                 backend: ContainerBackend | None = None, loop_interval_s: float = 300.0,
                 stats_interval_s: float = 1.0, predictions: PredictionSubscriber | None = None):
        self.enable_caching = enable_caching
        self.enable_pooling = enable_pooling
        self.enable_gc_optimization = enable_gc_optimization
        self.cache_size = cache_size
        self.pool_size = pool_size
        self.loop_interval_s = loop_interval_s
        self.stats_interval_s = stats_interval_s
        self._instr = instrumentation
        self._cache = PerformanceCache(cache_size, name="optimizer",
                                       instrumentation=instrumentation) if enable_caching else None
        self._pool = ContainerPool(pool_size, instrumentation=instrumentation,
                                   backend=backend) if enable_pooling else None
        self._predictor = ResourcePredictor()
        self.predictions = predictions
        # where predict_resource_requirements' answers came from; malformed: a published
        # prediction without the three numeric targets (ignored: the local one answered)
        self.prediction_stats = {"pipeline": 0, "local": 0, "malformed": 0}
        self._tracked_agents: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._metrics = {"cache_hits": 0, "cache_misses": 0, "warm_starts": 0, "cold_starts": 0,
                         "gc_collections": 0, "memory_released_mb": 0.0}
        self._task: asyncio.Task | None = None
        self._stats_task: asyncio.Task | None = None
        self.loop_iterations = 0

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the background loop, and (with caching and instrumentation) one ``cache.stats``
        delta event every ``stats_interval_s``."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._optimization_loop(), name="agentflux-optimizer")
        if self._cache is not None and self._instr is not None and (
                self._stats_task is None or self._stats_task.done()):
            self._stats_task = asyncio.create_task(self._cache.report_every(self.stats_interval_s),
                                                   name="agentflux-cache-stats")

    async def stop(self) -> None:
        for task in (self._task, self._stats_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._task = self._stats_task = None
        if self._cache is not None and self._instr is not None:
            self._cache.report(self.stats_interval_s)  # the last partial interval

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _optimization_loop(self) -> None:
        while True:
            await asyncio.sleep(self.loop_interval_s)
            try:
                await self.optimize_memory()
                if self._cache is not None:
                    self._cache._evict_expired()
            except Exception:  # the loop must outlive one bad iteration; the error is logged
                log.exception("optimizer background iteration failed")
            self.loop_iterations += 1

    # --- containers ----------------------------------------------------------------------------
    async def optimize_container_creation(self, config: Any,
                                          create_fn: Callable[[], Awaitable[str]]
                                          ) -> tuple[str, dict[str, Any]]:
        philosophy = _philosophy(config)
        t0 = time.perf_counter()
        if self._pool is not None:
            cid, warm = await self._pool.acquire(philosophy, create_fn)
        else:
            cid, warm = await create_fn(), False
            if self._instr is not None:
                self._instr.emit("pool.acquire", {"pool": philosophy, "warm": False,
                                                  "startup_ms": round((time.perf_counter() - t0) * 1000, 3)},
                                 philosophy=philosophy)
        self._metrics["warm_starts" if warm else "cold_starts"] += 1
        return cid, {"warm_start": warm, "startup_time_ms": round((time.perf_counter() - t0) * 1000, 3)}

    async def release_container(self, config: Any, container_id: str) -> bool:
        if self._pool is None:
            return False
        return await self._pool.release(_philosophy(config), container_id)

    # --- caching -------------------------------------------------------------------------------
    def _get(self, key: str, tool: str | None = None) -> Any | None:
        if self._cache is None:
            return None
        v = self._cache.get(key, tool)
        self._metrics["cache_hits" if v is not None else "cache_misses"] += 1
        return v

    def cache_tool_metadata(self, tool_id: str, metadata: dict, ttl: float | None = None) -> None:
        if self._cache is not None:
            self._cache.set(f"tool:{tool_id}", metadata, TOOL_METADATA_TTL if ttl is None else ttl)

    def get_cached_tool_metadata(self, tool_id: str) -> dict | None:
        return self._get(f"tool:{tool_id}", tool_id)

    def cache_execution_pattern(self, pattern_key: str, pattern: dict, ttl: float | None = None) -> None:
        if self._cache is not None:
            self._cache.set(f"pattern:{pattern_key}", pattern, PATTERN_TTL if ttl is None else ttl)

    def get_cached_pattern(self, pattern_key: str) -> dict | None:
        return self._get(f"pattern:{pattern_key}")

    # --- resources -----------------------------------------------------------------------------
    def track_agent_resources(self, agent_state: Any, metrics: dict[str, float]) -> None:
        agent_id = getattr(agent_state, "agent_id", None)
        if agent_id is not None:
            try:
                self._tracked_agents[agent_id] = agent_state
            except TypeError:
                pass  # not weak-referenceable: tracked by its metrics only
        philosophy = metrics.get("philosophy") or _philosophy(agent_state)
        self._predictor.record_usage(philosophy, {k: v for k, v in metrics.items()
                                                  if k != "philosophy"})
        if self._instr is not None:
            self._instr.emit("resource.sample", {
                "cpu_percent": float(metrics.get("cpu_percent", 0.0)),
                "memory_mb": float(metrics.get("memory_usage_mb", metrics.get("memory_mb", 0.0))),
                "execution_time_s": float(metrics.get("execution_time", 0.0))},
                philosophy=philosophy)

    def _published(self, philosophy: str) -> dict[str, float] | None:
        """The three targets of the pipeline's latest prediction for ``philosophy``, or None
        (none published, or a malformed one: counted)."""
        if self.predictions is None:
            return None
        doc = self.predictions.latest(philosophy)
        if doc is None:
            return None
        try:
            rec = doc["recommendation"]
            out = {k: float(rec[k]["target"]) for k in SPEC_KEYS}
        except (KeyError, TypeError, ValueError):
            self.prediction_stats["malformed"] += 1
            return None
        if not all(v == v and v not in (float("inf"), float("-inf")) for v in out.values()):
            self.prediction_stats["malformed"] += 1
            return None
        return out

    def predict_resource_requirements(self, config: Any) -> dict[str, float]:
        """cpu_percent, memory_mb and execution_time_seconds for ``config``'s philosophy: the
        pipeline's latest recommendation targets when it published one, else the local
        predictor's (mean x 1.2, or the conservative defaults)."""
        philosophy = _philosophy(config)
        published = self._published(philosophy)
        if published is not None:
            self.prediction_stats["pipeline"] += 1
            return published
        self.prediction_stats["local"] += 1
        return self._predictor.predict_requirements(philosophy)

    def prediction_source(self, config: Any) -> str:
        """``"pipeline"`` if :meth:`predict_resource_requirements` answers from a published
        prediction now, else ``"local"``."""
        malformed = self.prediction_stats["malformed"]
        source = "pipeline" if self._published(_philosophy(config)) is not None else "local"
        self.prediction_stats["malformed"] = malformed  # asking is not another sighting
        return source

    @property
    def tracked_agents(self) -> int:
        return len(self._tracked_agents)

    async def optimize_memory(self) -> dict[str, Any]:
        if not self.enable_gc_optimization:
            return {"enabled": False}
        result = optimize_memory(self._instr)
        self._metrics["gc_collections"] += 1
        self._metrics["memory_released_mb"] = round(self._metrics["memory_released_mb"]
                                                    + max(0.0, result["memory_released_mb"]), 2)
        return result

    # --- metrics -------------------------------------------------------------------------------
    def get_performance_metrics(self) -> dict[str, Any]:
        warm, cold = self._metrics["warm_starts"], self._metrics["cold_starts"]
        return {
            "optimization_metrics": dict(self._metrics),
            "cache_stats": self._cache.get_stats() if self._cache is not None else {},
            "pool_stats": self._pool.get_pool_stats() if self._pool is not None else {},
            "warm_start_rate_percent": round(warm / (warm + cold) * 100, 2) if warm + cold else 0.0,
        }


_GLOBAL: PerformanceOptimizer | None = None


def get_performance_optimizer() -> PerformanceOptimizer:
    """The process-wide optimizer (created on first use with the defaults)."""
    global _GLOBAL
    if _GLOBAL is None:
        _GLOBAL = PerformanceOptimizer()
    return _GLOBAL
