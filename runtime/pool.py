"""Warm container pools per philosophy, over pluggable backends.

``ContainerPool.acquire(philosophy, create_fn)`` hands out a pooled (warm) container when one is
available, otherwise creates one (cold) and says which, with the startup time; ``release`` puts
it back up to ``pool_size`` (a surplus one is destroyed); ``pre_warm`` fills a pool ahead of
demand. Every acquire emits ``pool.acquire`` (warm, startup_ms, available, in_use, target).

Backends create and destroy real things: :class:`DockerBackend` talks to the Docker Engine API
through the ``docker`` SDK (tested against podman serving that API), :class:`ProcessBackend`
starts a local process per "container" for machines without any engine.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any, Awaitable, Callable, Protocol

from agentflux.runtime.instrument import Instrumentation

CreateFn = Callable[[], Awaitable[str]]


class ContainerBackend(Protocol):
    async def create(self, philosophy: str) -> str: ...
    async def destroy(self, container_id: str) -> None: ...


class ProcessBackend:
    """A "container" is a child process (``python -c`` waiting on stdin); no engine needed."""

    def __init__(self) -> None:
        self._procs: dict[str, subprocess.Popen] = {}

    async def create(self, philosophy: str) -> str:
        proc = await asyncio.to_thread(
            subprocess.Popen, [sys.executable, "-c", "import sys; sys.stdin.read()"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cid = f"proc-{philosophy}-{proc.pid}"
        self._procs[cid] = proc
        return cid

    async def destroy(self, container_id: str) -> None:
        proc = self._procs.pop(container_id, None)
        if proc is not None:
            proc.stdin.close()
            await asyncio.to_thread(proc.wait, 10)

    def alive(self, container_id: str) -> bool:
        p = self._procs.get(container_id)
        return p is not None and p.poll() is None


class DockerBackend:
    """Containers through the Docker Engine API (``docker`` SDK client injected)."""

    def __init__(self, client: Any, image: str, command: list[str] | None = None,
                 labels: dict[str, str] | None = None):
        self.client = client
        self.image = image
        self.command = command or ["sleep", "3600"]
        self.labels = {"agentflux.pool": "1", **(labels or {})}

    async def create(self, philosophy: str) -> str:
        def run() -> str:
            c = self.client.containers.run(self.image, self.command, detach=True,
                                           labels={**self.labels, "agentflux.philosophy": philosophy})
            return c.id
        return await asyncio.to_thread(run)

    async def destroy(self, container_id: str) -> None:
        def rm() -> None:
            try:
                self.client.containers.get(container_id).remove(force=True)
            except Exception as exc:  # already gone is fine
                if "No such container" not in str(exc) and "404" not in str(exc):
                    raise
        await asyncio.to_thread(rm)


class ContainerPool:
    """Per-philosophy warm pools (the seed specification's API, with instrumentation)."""

    def __init__(self, pool_size: int = 10, warm_start_enabled: bool = True, *,
                 instrumentation: Instrumentation | None = None,
                 backend: ContainerBackend | None = None):
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size!r}")
        self._pool_size = pool_size
        self._warm_start_enabled = warm_start_enabled
        self._pools: dict[str, list[str]] = defaultdict(list)
        self._in_use: dict[str, int] = defaultdict(int)
        self._lock = asyncio.Lock()
        self._instr = instrumentation
        self.backend = backend
        self.warm_starts = 0
        self.cold_starts = 0

    def _create_fn(self, philosophy: str, create_fn: CreateFn | None) -> CreateFn:
        if create_fn is not None:
            return create_fn
        if self.backend is None:
            raise ValueError("pass create_fn or construct the pool with a backend")
        return lambda: self.backend.create(philosophy)

    async def acquire(self, philosophy: str, create_fn: CreateFn | None = None) -> tuple[str, bool]:
        """``(container_id, warm)``; emits ``pool.acquire`` with the startup time."""
        t0 = time.perf_counter()
        async with self._lock:
            pool = self._pools[philosophy]
            warm = bool(self._warm_start_enabled and pool)
            cid = pool.pop(0) if warm else None
        if cid is None:
            cid = await self._create_fn(philosophy, create_fn)()
        startup_ms = (time.perf_counter() - t0) * 1000
        async with self._lock:
            self._in_use[philosophy] += 1
            if warm:
                self.warm_starts += 1
            else:
                self.cold_starts += 1
        self._event("pool.acquire", philosophy, warm=warm, startup_ms=round(startup_ms, 3))
        return cid, warm

    async def release(self, philosophy: str, container_id: str) -> bool:
        """Back into the pool (True), or destroyed when the pool is full (False)."""
        async with self._lock:
            self._in_use[philosophy] = max(0, self._in_use[philosophy] - 1)
            keep = self._warm_start_enabled and len(self._pools[philosophy]) < self._pool_size
            if keep:
                self._pools[philosophy].append(container_id)
        if not keep and self.backend is not None:
            await self.backend.destroy(container_id)
        self._event("pool.release", philosophy)
        return keep

    async def pre_warm(self, philosophy: str, create_fn: CreateFn | None = None,
                       count: int = 1) -> int:
        """Create up to ``count`` containers into the pool (never beyond ``pool_size``)."""
        fn = self._create_fn(philosophy, create_fn)
        async with self._lock:
            room = max(0, self._pool_size - len(self._pools[philosophy]))
        n = min(count, room)
        ids = await asyncio.gather(*(fn() for _ in range(n)))
        async with self._lock:
            self._pools[philosophy].extend(ids)
        self._event("pool.state", philosophy)
        return n

    async def drain(self) -> int:
        """Destroy every pooled container (on shutdown)."""
        async with self._lock:
            ids = [c for pool in self._pools.values() for c in pool]
            self._pools.clear()
        if self.backend is not None:
            await asyncio.gather(*(self.backend.destroy(c) for c in ids))
        return len(ids)

    def available(self, philosophy: str) -> int:
        return len(self._pools.get(philosophy, ()))

    def get_pool_stats(self) -> dict[str, Any]:
        total = self.warm_starts + self.cold_starts
        return {
            "pool_size": self._pool_size,
            "warm_start_enabled": self._warm_start_enabled,
            "pools": {p: {"available": len(ids),
                          "in_use": self._in_use.get(p, 0),
                          # the specification's definition: how full the warm pool is
                          "utilization_percent": round(len(ids) / self._pool_size * 100, 2)
                          if self._pool_size else 0.0}
                      for p, ids in self._pools.items()},
            "warm_starts": self.warm_starts,
            "cold_starts": self.cold_starts,
            "warm_start_rate_percent": round(self.warm_starts / total * 100, 2) if total else 0.0,
        }

    def _event(self, type_: str, philosophy: str, **extra: Any) -> None:
        if self._instr is None:
            return
        attrs = {"pool": philosophy, **extra, "available": len(self._pools.get(philosophy, ())),
                 "in_use": self._in_use.get(philosophy, 0), "target": self._pool_size}
        self._instr.emit(type_, attrs, philosophy=philosophy)
