"""Resource prediction, memory optimisation and a resource sampler.

:class:`ResourcePredictor` is the seed specification's predictor: per-philosophy history (100
samples), mean x 1.2, conservative defaults, confidence = samples / history size.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import defaultdict, deque
from typing import Any, Iterable

import psutil

from agentflux.runtime.instrument import Instrumentation

DEFAULT_REQUIREMENTS = {"cpu_percent": 50.0, "memory_mb": 256.0, "execution_time_seconds": 60.0}
BUFFER = 1.2


class ResourcePredictor:
    def __init__(self, history_size: int = 100, buffer: float = BUFFER):
        if history_size < 1:
            raise ValueError(f"history_size must be >= 1, got {history_size!r}")
        self._history: dict[str, deque] = defaultdict(lambda: deque(maxlen=history_size))
        self._history_size = history_size
        self._buffer = buffer

    def record_usage(self, philosophy: str, metrics: dict[str, float]) -> None:
        self._history[philosophy].append(dict(metrics))

    def predict_requirements(self, philosophy: str) -> dict[str, float]:
        history = self._history.get(philosophy)
        if not history:
            return dict(DEFAULT_REQUIREMENTS)
        n = len(history)

        def mean(*keys: str) -> float:
            return sum(next((h[k] for k in keys if k in h), 0.0) for h in history) / n

        b = self._buffer
        return {"cpu_percent": round(mean("cpu_percent") * b, 2),
                "memory_mb": round(mean("memory_usage_mb", "memory_mb") * b, 2),
                "execution_time_seconds": round(mean("execution_time", "execution_time_s") * b, 2)}

    def get_prediction_confidence(self, philosophy: str) -> float:
        return round(len(self._history.get(philosophy, ())) / self._history_size, 4)

    def history_length(self, philosophy: str) -> int:
        return len(self._history.get(philosophy, ()))


def rss_mb(process: psutil.Process | None = None) -> float:
    return (process or psutil.Process()).memory_info().rss / (1024 * 1024)


def optimize_memory(instrumentation: Instrumentation | None = None) -> dict[str, Any]:
    """``gc.collect()`` with RSS before/after; emits ``memory.gc``."""
    before = rss_mb()
    collected = gc.collect()
    after = rss_mb()
    result = {"enabled": True, "objects_collected": collected,
              "memory_before_mb": round(before, 2), "memory_after_mb": round(after, 2),
              "memory_released_mb": round(before - after, 2)}
    if instrumentation is not None:
        instrumentation.emit("memory.gc", {"objects_collected": collected,
                                           "rss_before_mb": result["memory_before_mb"],
                                           "rss_after_mb": result["memory_after_mb"]})
    return result


class ResourceSampler:
    """Samples processes (psutil) and containers (Docker stats) and emits ``resource.sample``."""

    def __init__(self, instrumentation: Instrumentation, docker_client: Any = None):
        self._instr = instrumentation
        self._docker = docker_client
        self._started = time.monotonic()

    def sample_process(self, pid: int | None = None, philosophy: str | None = None) -> dict:
        p = psutil.Process(pid)
        with p.oneshot():
            cpu = p.cpu_percent(interval=None)
            mem = p.memory_info().rss / (1024 * 1024)
            mem_pct = p.memory_percent()  # of the machine's physical memory
            elapsed = time.time() - p.create_time()
        attrs = {"cpu_percent": round(cpu, 2), "memory_mb": round(mem, 2),
                 "execution_time_s": round(elapsed, 3), "memory_percent": round(mem_pct, 2)}
        self._instr.emit("resource.sample", attrs, philosophy=philosophy)
        return attrs

    def sample_container(self, container_id: str, philosophy: str | None = None) -> dict:
        if self._docker is None:
            raise ValueError("no Docker client: pass docker_client= to sample containers")
        s = self._docker.api.stats(container_id, stream=False)
        cpu_delta = s["cpu_stats"]["cpu_usage"]["total_usage"] - s["precpu_stats"]["cpu_usage"]["total_usage"]
        sys_delta = s["cpu_stats"].get("system_cpu_usage", 0) - s["precpu_stats"].get("system_cpu_usage", 0)
        ncpu = s["cpu_stats"].get("online_cpus") or 1
        cpu = (cpu_delta / sys_delta) * ncpu * 100 if sys_delta > 0 else 0.0
        mem_stats = s.get("memory_stats", {})
        mem = mem_stats.get("usage", 0) / (1024 * 1024)
        attrs = {"cpu_percent": round(cpu, 2), "memory_mb": round(mem, 2)}
        if mem_stats.get("limit"):  # of the container's memory limit
            attrs["memory_percent"] = round(mem_stats.get("usage", 0) / mem_stats["limit"] * 100, 2)
        self._instr.emit("resource.sample", attrs, philosophy=philosophy)
        return attrs

    async def run(self, pids: Iterable[int], interval_s: float = 5.0) -> None:
        while True:
            for pid in list(pids):
                try:
                    self.sample_process(pid)
                except psutil.NoSuchProcess:
                    pass
            await asyncio.sleep(interval_s)
