"""Warm container pools per philosophy, over pluggable backends.

``ContainerPool.acquire(philosophy, create_fn)`` hands out a pooled (warm) container when one is
available, otherwise creates one (cold) and says which, with the startup time; ``release`` puts
it back up to ``pool_size`` (a surplus one is destroyed); ``pre_warm`` fills a pool ahead of
demand. Every acquire emits ``pool.acquire`` (warm, startup_ms, available, in_use, target).

The closed loop sizes pools at run time: ``set_target(pool, n)`` gives one pool a target of its
own: ``n`` warm containers kept ready (the specification's ``pool_size``, per pool), and the
pool keeps them ready: every acquisition (warm or cold) asks for a replacement, in the
background, while warm + starting < ``n``; a release keeps its container while fewer than ``n``
are warm. Replacements wait for one of ``max_starting`` creation slots (the engine's creations
are the scarce resource: podman here creates about 11 containers a second whatever the
concurrency, and a queue of creations only makes each one slower), and one that gets a slot
after releases have refilled the pool is dropped, not created: under load the pool reuses
released containers instead of trading every acquisition for a creation and a removal. That
fast local loop is what lets the autoscaler's slow one (a command every few seconds) size the
pool by the acquisitions expected while a replacement starts instead of by every rise of
concurrency. ``await reconcile_to(pool, n)`` creates (through the same slots) or destroys idle
containers to match it. ``adopt`` takes over containers that already exist (a pool manager
restarted: ``DockerBackend.list`` finds its containers by label). Changes emit ``pool.state``.

Backends create and destroy real things: :class:`DockerBackend` talks to the Docker Engine API
through the ``docker`` SDK (tested against podman serving that API), :class:`ProcessBackend`
starts a local process per "container" for machines without any engine.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections import defaultdict, deque
from typing import Any, Awaitable, Callable, Protocol

from agentflux.runtime.instrument import Instrumentation

log = logging.getLogger(__name__)

CreateFn = Callable[[], Awaitable[str]]


class ContainerBackend(Protocol):
    async def create(self, philosophy: str) -> str: ...
    async def destroy(self, container_id: str) -> None: ...
    # optional: ``async def list(self, pool: str) -> list[str]`` (the pool's existing containers)

POOL_LABEL = "agentflux.pool.name"
MAX_STARTING = 3  # replacement creations at once (podman here: 2-3 saturate its creation rate)


class ProcessBackend:
    """A "container" is a child process waiting on its stdin (``command``: ``python -c`` by
    default, ``["cat"]`` is lighter); no engine needed. Destroying one closes its stdin."""

    def __init__(self, command: list[str] | None = None) -> None:
        self._procs: dict[str, subprocess.Popen] = {}
        self.command = command or [sys.executable, "-c", "import sys; sys.stdin.read()"]
        self.created = self.destroyed = 0

    async def create(self, philosophy: str) -> str:
        self.created += 1
        proc = await asyncio.to_thread(
            subprocess.Popen, self.command,
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cid = f"proc-{philosophy}-{proc.pid}"
        self._procs[cid] = proc
        return cid

    async def list(self, pool: str) -> list[str]:
        """This backend's live processes of ``pool`` (they end with the process that made them,
        so there is nothing to find after a restart)."""
        prefix = f"proc-{pool}-"
        return [c for c, p in self._procs.items() if c.startswith(prefix) and p.poll() is None]

    async def destroy(self, container_id: str) -> None:
        proc = self._procs.pop(container_id, None)
        if proc is not None:
            self.destroyed += 1
            proc.stdin.close()
            await asyncio.to_thread(proc.wait, 10)

    def alive(self, container_id: str) -> bool:
        p = self._procs.get(container_id)
        return p is not None and p.poll() is None


class DockerBackend:
    """Containers through the Docker Engine API (``docker`` SDK client injected).

    Every container carries the backend's ``labels`` and ``agentflux.pool.name=<pool>``, so that
    :meth:`list` finds a pool's containers again after a restart. ``images`` may give a pool an
    image of its own (a pool command naming an allowed image); new containers use it."""

    def __init__(self, client: Any, image: str, command: list[str] | None = None,
                 labels: dict[str, str] | None = None):
        self.client = client
        self.image = image
        self.images: dict[str, str] = {}
        self.command = command or ["sleep", "3600"]
        self.labels = {"agentflux.pool": "1", **(labels or {})}
        self.created = self.destroyed = 0  # asked of the engine (for the benchmark's figures)

    def labels_for(self, pool: str) -> dict[str, str]:
        return {**self.labels, POOL_LABEL: pool}

    async def create(self, philosophy: str) -> str:
        self.created += 1

        def run() -> str:
            c = self.client.containers.run(self.images.get(philosophy, self.image), self.command,
                                           detach=True,
                                           labels={**self.labels_for(philosophy),
                                                   "agentflux.philosophy": philosophy})
            return c.id
        return await asyncio.to_thread(run)

    async def list(self, pool: str) -> list[str]:
        """The running containers with this backend's labels for ``pool`` (oldest first)."""
        filters = {"label": [f"{k}={v}" for k, v in self.labels_for(pool).items()]}

        def ls() -> list[str]:
            # the low-level call: one request, no inspect per container (which fails for one
            # removed between the listing and the inspect)
            found = self.client.api.containers(filters=filters)
            # the engine ANDs the label filters; checked again here, cheaply, in case one does not
            want = self.labels_for(pool)
            found = [c for c in found
                     if all((c.get("Labels") or {}).get(k) == v for k, v in want.items())]
            found.sort(key=lambda c: c.get("Created", 0))  # oldest first
            return [c["Id"] for c in found]
        return await asyncio.to_thread(ls)

    async def destroy(self, container_id: str) -> None:
        self.destroyed += 1

        def rm() -> None:
            try:
                self.client.containers.get(container_id).remove(force=True)
            except Exception as exc:  # already gone is fine (podman: a 500 saying so)
                if "no such container" not in str(exc).lower() and "404" not in str(exc):
                    raise
        await asyncio.to_thread(rm)


class ContainerPool:
    """Per-philosophy warm pools (the seed specification's API, with instrumentation).

    Without a target of its own a pool keeps up to ``pool_size`` warm idle containers (the seed
    specification's meaning); with one (:meth:`set_target`) it keeps ``target`` warm ones
    ready, replacing each one taken through at most ``max_starting`` creations at once (see the
    module docstring)."""

    def __init__(self, pool_size: int = 10, warm_start_enabled: bool = True, *,
                 instrumentation: Instrumentation | None = None,
                 backend: ContainerBackend | None = None, max_starting: int = MAX_STARTING):
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size!r}")
        if max_starting < 1:
            raise ValueError(f"max_starting must be >= 1, got {max_starting!r}")
        self._pool_size = pool_size
        self._warm_start_enabled = warm_start_enabled
        self.max_starting = max_starting
        self._pools: dict[str, list[str]] = defaultdict(list)
        self._in_use: dict[str, int] = defaultdict(int)
        self._targets: dict[str, int] = {}
        self._starting: dict[str, int] = defaultdict(int)  # replacements being created
        self._queued: dict[str, int] = defaultdict(int)  # replacements waiting for a slot
        self._creating = 0  # slots taken (all pools)
        self._slot_waiters: deque[asyncio.Future] = deque()
        self._replacing: set[asyncio.Task] = set()
        self.replacements_failed = 0
        self.replacements_dropped = 0  # not needed by the time they got a slot
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

    # --- targets -------------------------------------------------------------------------------
    def target(self, philosophy: str) -> int:
        """The pool's own target (warm containers kept ready), else the global ``pool_size``."""
        return self._targets.get(philosophy, self._pool_size)

    def starting(self, philosophy: str) -> int:
        """Replacements asked for and not finished (being created or waiting for a slot)."""
        return self._starting.get(philosophy, 0) + self._queued.get(philosophy, 0)

    def has_target(self, philosophy: str) -> bool:
        return philosophy in self._targets

    def _replace(self, philosophy: str, create_fn: CreateFn | None) -> list[asyncio.Task]:
        """Ask for replacements (in the background) until warm + starting = the pool's own
        target; returns their tasks. Called with the lock held."""
        if philosophy not in self._targets or not self._warm_start_enabled:
            return []
        if create_fn is None and self.backend is None:
            return []
        missing = (self._targets[philosophy] - len(self._pools[philosophy])
                   - self._starting[philosophy] - self._queued[philosophy])
        if missing <= 0:
            return []
        self._queued[philosophy] += missing
        fn = self._create_fn(philosophy, create_fn)
        tasks = []
        for _ in range(missing):
            task = asyncio.ensure_future(self._replacement(philosophy, fn))
            self._replacing.add(task)
            task.add_done_callback(self._replacing.discard)
            tasks.append(task)
        return tasks

    async def _slot(self) -> None:
        """Wait for a creation slot (FIFO)."""
        while self._creating >= self.max_starting:
            waiter = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._free_slot(taken=False)  # pass the wake-up on
                raise
        self._creating += 1

    def _free_slot(self, taken: bool = True) -> None:
        if taken:
            self._creating -= 1
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def _replacement(self, philosophy: str, fn: CreateFn) -> str:
        """One replacement: a slot, then (if still needed) a creation. Returns ``created``,
        ``dropped`` (released containers refilled the pool meanwhile), ``surplus`` (created,
        then destroyed: the target went down) or ``failed``."""
        try:
            await self._slot()
        except asyncio.CancelledError:
            async with self._lock:
                self._queued[philosophy] -= 1
            raise
        try:
            async with self._lock:
                self._queued[philosophy] -= 1
                if (len(self._pools[philosophy]) + self._starting[philosophy]
                        >= self._targets.get(philosophy, self._pool_size)):
                    self.replacements_dropped += 1
                    return "dropped"
                self._starting[philosophy] += 1
            try:
                cid = await fn()
            except Exception as exc:  # counted and logged; the next acquisition tries again
                async with self._lock:
                    self._starting[philosophy] -= 1
                self.replacements_failed += 1
                log.warning("pool %s: a replacement container could not be created: %r",
                            philosophy, exc)
                return "failed"
            except asyncio.CancelledError:
                async with self._lock:
                    self._starting[philosophy] -= 1
                raise
        finally:
            self._free_slot()
        async with self._lock:
            self._starting[philosophy] -= 1
            keep = (self._warm_start_enabled and len(self._pools[philosophy])
                    < self._targets.get(philosophy, self._pool_size))
            if keep:
                self._pools[philosophy].append(cid)
        if not keep and self.backend is not None:  # the target went down meanwhile
            await self.backend.destroy(cid)
        self._event("pool.state", philosophy)
        return "created" if keep else "surplus"

    def set_target(self, philosophy: str, target: int) -> None:
        """Give ``philosophy`` a target of its own (warm containers kept ready); idle ones
        beyond it are destroyed by :meth:`reconcile_to` (or the next ``release`` keeps none)."""
        if isinstance(target, bool) or not isinstance(target, int) or target < 0:
            raise ValueError(f"target must be an integer >= 0, got {target!r}")
        changed = self._targets.get(philosophy) != target
        self._targets[philosophy] = target
        self._pools[philosophy]  # listed in the stats from now on
        if changed:
            self._event("pool.state", philosophy)

    async def reconcile_to(self, philosophy: str, target: int | None = None,
                           create_fn: CreateFn | None = None) -> dict[str, int]:
        """Set the target (if given) and create or destroy idle containers until warm +
        starting = target (idle only: a container in use is never taken away); a pool without a
        target of its own is filled to ``pool_size`` idle ones. Creations go through the
        replacement slots and are awaited; a failed one is counted (``failed``) and logged.
        Returns ``{"created", "destroyed", "failed"}``."""
        if target is not None:
            self.set_target(philosophy, target)
        own = philosophy in self._targets
        surplus: list[str] = []
        tasks: list[asyncio.Task] = []
        missing = 0
        async with self._lock:
            idle = self._pools[philosophy]
            room = self.target(philosophy) if self._warm_start_enabled else 0
            if len(idle) > room:
                surplus = idle[room:]
                del idle[room:]
            if own:
                tasks = self._replace(philosophy, create_fn)
            else:
                missing = max(0, room - len(idle))
        created = failed = 0
        if tasks:
            results = await asyncio.gather(*tasks, return_exceptions=True)
            created = sum(r == "created" for r in results)
            failed = sum(r == "failed" or isinstance(r, BaseException) for r in results)
            if failed:
                log.warning("pool %s: %d of %d container creations failed", philosophy,
                            failed, len(tasks))
        elif missing:
            fn = self._create_fn(philosophy, create_fn)
            results = await asyncio.gather(*(fn() for _ in range(missing)), return_exceptions=True)
            ids = [r for r in results if isinstance(r, str)]
            errors = [r for r in results if not isinstance(r, str)]
            failed = len(errors)
            if errors:
                log.warning("pool %s: %d of %d container creations failed: %s", philosophy,
                            failed, missing, errors[0])
            async with self._lock:  # acquires/releases may have moved meanwhile: recheck
                idle = self._pools[philosophy]
                room = max(0, self._pool_size - len(idle))
                idle.extend(ids[:room])
                surplus.extend(ids[room:])
                created = min(len(ids), room)
        if surplus and self.backend is not None:
            await asyncio.gather(*(self.backend.destroy(c) for c in surplus))
        destroyed = len(surplus) if self.backend is not None else 0
        if surplus or failed or (created and not tasks):
            self._event("pool.state", philosophy)
        return {"created": created, "destroyed": destroyed, "failed": failed}

    async def adopt(self, philosophy: str, container_ids: list[str]) -> int:
        """Take over existing containers as warm idle ones (those not held already); returns
        how many were added. :meth:`reconcile_to` afterwards trims them to the target."""
        async with self._lock:
            idle = self._pools[philosophy]
            known = set(idle)
            new = [c for c in container_ids if c not in known]
            idle.extend(new)
        if new:
            self._event("pool.state", philosophy)
        return len(new)

    async def forget(self, philosophy: str, container_ids: list[str]) -> int:
        """Drop idle containers that no longer exist (removed behind the pool's back) without
        destroying them; returns how many were dropped."""
        gone = set(container_ids)
        async with self._lock:
            idle = self._pools[philosophy]
            kept = [c for c in idle if c not in gone]
            n = len(idle) - len(kept)
            idle[:] = kept
        if n:
            self._event("pool.state", philosophy)
        return n

    def pools(self) -> list[str]:
        """The pools known so far (with containers, targets or use)."""
        return sorted(set(self._pools) | set(self._targets) | set(self._in_use))

    def in_use(self, philosophy: str) -> int:
        return self._in_use.get(philosophy, 0)

    def report(self, philosophy: str | None = None) -> None:
        """Emit ``pool.state`` for one pool, or for every known pool."""
        for p in [philosophy] if philosophy is not None else self.pools():
            self._event("pool.state", p)

    # --- the seed API --------------------------------------------------------------------------
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
            self._replace(philosophy, create_fn)
        self._event("pool.acquire", philosophy, warm=warm, startup_ms=round(startup_ms, 3))
        return cid, warm

    async def release(self, philosophy: str, container_id: str) -> bool:
        """Back into the pool (True), or destroyed when the pool is full (False)."""
        async with self._lock:
            self._in_use[philosophy] = max(0, self._in_use[philosophy] - 1)
            keep = (self._warm_start_enabled
                    and len(self._pools[philosophy]) < self.target(philosophy))
            if keep:
                self._pools[philosophy].append(container_id)
        if not keep and self.backend is not None:
            await self.backend.destroy(container_id)
        self._event("pool.release", philosophy)
        return keep

    async def pre_warm(self, philosophy: str, create_fn: CreateFn | None = None,
                       count: int = 1) -> int:
        """Create up to ``count`` containers into the pool (never beyond ``pool_size``, or the
        pool's own target)."""
        fn = self._create_fn(philosophy, create_fn)
        async with self._lock:
            room = max(0, self.target(philosophy) - self.starting(philosophy)
                       - len(self._pools[philosophy]))
        n = min(count, room)
        ids = await asyncio.gather(*(fn() for _ in range(n)))
        async with self._lock:
            self._pools[philosophy].extend(ids)
        self._event("pool.state", philosophy)
        return n

    async def drain(self) -> int:
        """Destroy every pooled container (on shutdown; replacements being created first)."""
        if self._replacing:
            await asyncio.gather(*list(self._replacing), return_exceptions=True)
        async with self._lock:
            ids = [c for pool in self._pools.values() for c in pool]
            self._pools.clear()
        if self.backend is not None:
            await asyncio.gather(*(self.backend.destroy(c) for c in ids))
        return len(ids)

    def available(self, philosophy: str) -> int:
        return len(self._pools.get(philosophy, ()))

    def idle_ids(self, philosophy: str) -> list[str]:
        return list(self._pools.get(philosophy, ()))

    def get_pool_stats(self) -> dict[str, Any]:
        total = self.warm_starts + self.cold_starts
        return {
            "pool_size": self._pool_size,
            "warm_start_enabled": self._warm_start_enabled,
            "pools": {p: {"available": self.available(p),
                          "in_use": self._in_use.get(p, 0),
                          "target": self.target(p),
                          # the specification's definition: how full the warm pool is
                          "utilization_percent": round(self.available(p) / self._pool_size * 100, 2)
                          if self._pool_size else 0.0}
                      for p in self._stats_pools()},
            "warm_starts": self.warm_starts,
            "cold_starts": self.cold_starts,
            "warm_start_rate_percent": round(self.warm_starts / total * 100, 2) if total else 0.0,
        }

    def _stats_pools(self) -> list[str]:
        """The seed API's pools (those that held containers), then those with a target."""
        return list(dict.fromkeys([*self._pools, *self._targets]))

    def _event(self, type_: str, philosophy: str, **extra: Any) -> None:
        if self._instr is None:
            return
        attrs = {"pool": philosophy, **extra, "available": len(self._pools.get(philosophy, ())),
                 "in_use": self._in_use.get(philosophy, 0), "target": self.target(philosophy)}
        self._instr.emit(type_, attrs, philosophy=philosophy)
