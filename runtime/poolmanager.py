"""The pool manager: applies the autoscaler's signed pool commands to a real container pool.

It consumes ``agentflux.pool.commands`` (key = pool, value = one JSON command, see
:mod:`agentflux.commands`) in a consumer group of its own (``agentflux-pool-manager-<name>``)
and checks every command, in this order, before anything changes:

1. the shape (``malformed``), 2. the signature with ``AGENTFLUX_COMMAND_KEYS`` (``unsigned``,
``bad_signature``), 3. the pool is one this manager manages (``unknown_pool``), 4. the target
within the command's min/max and the manager's own (``out_of_bounds``), 5. a named image is in
the allowlist (``image_not_allowed``), 6. the ``command_id`` was not applied already (outcome
``duplicate``: a redelivery changes nothing), 7. the generation is newer than the pool's last
applied one (``stale_generation``).

The duplicate check comes before the generation check so that a redelivered command is counted
as the duplicate it is (its generation is, necessarily, not newer either); both change nothing.
A rejected command is logged (one line: pool, command_id, reason), counted by reason
(:attr:`PoolManager.rejected` and ``agentflux_pool_commands_total{outcome,reason}`` in the
manager's own Prometheus registry) and never applied.

A batch of records is checked command by command; then the pools it changed are reconciled
(once each, concurrently), the state file is written and only then the offsets are committed:
a crash before the commit redelivers commands that the state file already makes duplicates or
stale, or that are applied again to the same effect.

The last applied generation and target per pool (and the recent command ids) survive a restart
in a small JSON state file, written atomically (temporary file, fsync, rename). On start the
manager lists the containers that carry its labels (``DockerBackend.list``), adopts them as
warm idle ones and reconciles each pool to its last applied target: a restart neither loses the
warm containers nor creates duplicates. It reports ``pool.state`` after every apply and every
``report_every_s``, when it also replaces idle containers that stopped running.
Docker calls run in threads (the backend's), never on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable

import orjson

from agentflux import commands
from agentflux.config import ConfigError, Settings
from agentflux.runtime.instrument import Instrumentation
from agentflux.runtime.pool import ContainerPool

log = logging.getLogger(__name__)

STATE_VERSION = 1
STORED_IDS = 1000  # applied command ids kept in the state file (the newest)
REASONS = ("malformed", "unsigned", "bad_signature", "unknown_pool", "out_of_bounds",
           "image_not_allowed", "stale_generation")


def default_state_file(settings: Settings, name: str) -> Path:
    return Path(settings.state_dir) / "pool-manager" / f"{name}.json"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader (or a crash) sees the old or the new bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class PoolManager:
    """Applies pool commands to ``pool`` (see the module docstring).

    ``pools``: the pool names this manager manages (None: every pool a command names).
    ``min_size``/``max_size``: the manager's own bounds on any target. ``image_allowlist``: the
    images a command may name. ``name``: the consumer group's suffix and the state file's name.
    ``metrics_port``: serve the Prometheus registry on ``metrics_host`` (0: a free port; None:
    not served). ``seen_ids``: how many applied command ids are remembered (and stored).
    """

    def __init__(self, settings: Settings, pool: ContainerPool, pools: list[str] | None = None,
                 min_size: int = 0, max_size: int = 50, image_allowlist: Iterable[str] = (),
                 instrumentation: Instrumentation | None = None, *, name: str = "default",
                 state_file: str | os.PathLike | None = None, report_every_s: float = 10.0,
                 metrics_port: int | None = None, metrics_host: str = "127.0.0.1",
                 seen_ids: int = 10_000):
        if not 0 <= min_size <= max_size:
            raise ConfigError(f"--min-size {min_size} / --max-size {max_size}: give "
                              "0 <= min <= max")
        if report_every_s <= 0:
            raise ValueError(f"report_every_s must be > 0, got {report_every_s!r}")
        self.settings = settings
        self.pool = pool
        self.pools = None if pools is None else list(dict.fromkeys(pools))
        self.min_size, self.max_size = min_size, max_size
        self.image_allowlist = set(image_allowlist)
        self.instrumentation = instrumentation
        self.name = name
        self.group_id = f"agentflux-pool-manager-{name}"
        self.state_file = Path(state_file) if state_file else default_state_file(settings, name)
        self.report_every_s = report_every_s
        self.metrics_host, self.metrics_port = metrics_host, metrics_port
        self._keys = commands.keys_of(settings.command_keys)
        # state (persisted): per pool the last applied generation, target, command and image
        self.state: dict[str, dict[str, Any]] = {}
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._seen_max = seen_ids
        # counters
        self.applied = 0
        self.duplicates = 0
        self.rejected: collections.Counter = collections.Counter()
        from prometheus_client import CollectorRegistry, Counter, Gauge
        self.registry = CollectorRegistry()
        self._commands_total = Counter(
            "agentflux_pool_commands", "pool commands by outcome (applied, duplicate, "
            "rejected) and reason", ["outcome", "reason"], registry=self.registry)
        self._gauges = {k: Gauge(f"agentflux_pool_{k}", f"containers: {k} (per pool)", ["pool"],
                                 registry=self.registry)
                        for k in ("target", "available", "in_use")}
        self._consumer: Any = None
        self._tasks: list[asyncio.Task] = []
        self._http: Any = None
        self._stopping: asyncio.Event | None = None  # made on the running loop by start()
        self.load_state()

    # --- state ---------------------------------------------------------------------------------
    def load_state(self) -> None:
        """Read the state file (a missing one is a fresh start; an unreadable one is an error:
        starting over would re-apply stale commands)."""
        try:
            raw = self.state_file.read_bytes()
        except FileNotFoundError:
            return
        try:
            doc = orjson.loads(raw)
            if doc.get("v") != STATE_VERSION or not isinstance(doc.get("pools"), dict):
                raise ValueError(f"version {doc.get('v')!r}")
            for pool, entry in doc["pools"].items():
                if not isinstance(entry.get("generation"), int) or not isinstance(
                        entry.get("target"), int):
                    raise ValueError(f"pool {pool!r}")
            self.state = doc["pools"]
            for cid in doc.get("command_ids", [])[-self._seen_max:]:
                self._seen[str(cid)] = None
        except (ValueError, AttributeError, TypeError) as exc:
            raise ConfigError(f"the pool manager's state file {self.state_file} is unreadable "
                              f"({exc}): fix or remove it (removing it forgets the last applied "
                              "generations)") from None

    def _state_bytes(self) -> bytes:
        ids = list(self._seen)[-STORED_IDS:]  # older ones are stale by generation anyway
        return orjson.dumps({"v": STATE_VERSION, "manager": self.name, "pools": self.state,
                             "command_ids": ids}, option=orjson.OPT_INDENT_2)

    async def save_state(self) -> None:
        await asyncio.to_thread(write_atomically, self.state_file, self._state_bytes())

    def last_generation(self, pool: str) -> int | None:
        entry = self.state.get(pool)
        return entry["generation"] if entry else None

    def last_target(self, pool: str) -> int | None:
        entry = self.state.get(pool)
        return entry["target"] if entry else None

    # --- checking and applying -----------------------------------------------------------------
    def check(self, doc: Any) -> tuple[str, str, str]:
        """``(outcome, reason, detail)`` for a command: ``("ok", "ok", "")`` when it is to be
        applied, else ``("rejected", reason, detail)`` or ``("duplicate", ...)``. Changes
        nothing."""
        shape = commands.check_shape(doc)
        if shape is not None:
            return "rejected", "malformed", shape
        bad = commands.verify(doc, self._keys)
        if bad is not None:
            return "rejected", bad, "the signature does not match any AGENTFLUX_COMMAND_KEYS key" \
                if bad == "bad_signature" else "the command carries no signature"
        pool, target = doc["pool"], doc["target"]
        if self.pools is not None and pool not in self.pools:
            return "rejected", "unknown_pool", f"this manager manages {', '.join(self.pools)}"
        lo = max(doc["min_size"], self.min_size)
        hi = min(doc["max_size"], self.max_size)
        if not lo <= target <= hi:
            return ("rejected", "out_of_bounds",
                    f"target {target} is outside [{lo}, {hi}] (the command's "
                    f"[{doc['min_size']}, {doc['max_size']}] and this manager's "
                    f"[{self.min_size}, {self.max_size}])")
        image = doc.get("image")
        if image is not None and image not in self.image_allowlist:
            return "rejected", "image_not_allowed", f"image {image!r} is not in the allowlist"
        if doc["command_id"] in self._seen:
            return "duplicate", "duplicate_command_id", "already applied"
        last = self.last_generation(pool)
        if last is not None and doc["generation"] <= last:
            return ("rejected", "stale_generation",
                    f"generation {doc['generation']} is not newer than {last}")
        return "ok", "ok", ""

    def accept(self, raw: bytes | dict) -> str | None:
        """Check one command and, if it passes, record it (target, generation, command id)
        without touching containers yet; returns the pool to reconcile, or None."""
        doc: Any = raw
        if isinstance(raw, (bytes, bytearray, memoryview)):
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                return self._count("rejected", "malformed", None, f"not JSON ({exc})")
        outcome, reason, detail = self.check(doc)
        if outcome != "ok":
            return self._count(outcome, reason, doc, detail)
        pool = doc["pool"]
        self.state[pool] = {"generation": doc["generation"], "target": doc["target"],
                            "command_id": doc["command_id"], "image": doc.get("image"),
                            "applied_at_ns": time.time_ns()}
        self._seen[doc["command_id"]] = None
        while len(self._seen) > self._seen_max:
            self._seen.popitem(last=False)
        self.applied += 1
        self._commands_total.labels("applied", "ok").inc()
        log.info("pool %s: command %s applied: target %d (generation %d; %s)", pool,
                 doc["command_id"], doc["target"], doc["generation"], doc.get("reason", ""))
        return pool

    def _count(self, outcome: str, reason: str, doc: Any, detail: str) -> None:
        """Count and log (one line) a command that is not applied."""
        pool = doc.get("pool") if isinstance(doc, dict) else None
        cid = doc.get("command_id") if isinstance(doc, dict) else None
        if outcome == "duplicate":
            self.duplicates += 1
            log.info("pool %s: command %s is a duplicate: changes nothing", pool, cid)
        else:
            self.rejected[reason] += 1
            log.warning("pool %s: command %s rejected: %s (%s)", pool, cid, reason, detail)
        self._commands_total.labels(outcome, reason).inc()
        return None

    async def reconcile(self, pool: str) -> dict[str, int]:
        """Bring ``pool`` to its last applied target (with its image, if a command named one),
        held within the manager's bounds."""
        entry = self.state.get(pool)
        if entry is None:
            return {"created": 0, "destroyed": 0, "failed": 0}
        backend = self.pool.backend
        if hasattr(backend, "images"):  # new containers: the image the command named, if any
            if entry.get("image"):
                backend.images[pool] = entry["image"]
            else:
                backend.images.pop(pool, None)
        # a target applied under other bounds (the manager restarted with new --min/--max-size)
        # is held within this manager's bounds
        target = min(max(entry["target"], self.min_size), self.max_size)
        if target != entry["target"]:
            log.warning("pool %s: the last applied target %d is outside this manager's bounds "
                        "[%d, %d]: holding %d", pool, entry["target"], self.min_size,
                        self.max_size, target)
        result = await self.pool.reconcile_to(pool, target)
        self.report(pool)
        return result

    async def resync(self, pool: str) -> int:
        """Forget (and remove) idle containers that are not running any more (exited, removed by
        hand, the engine restarted), so that the next reconcile replaces them. Only those held before the engine
        was asked are considered: a container created meanwhile is not in the listing yet."""
        lister = getattr(self.pool.backend, "list", None)
        if lister is None:
            return 0
        held = self.pool.idle_ids(pool)
        listed = set(await lister(pool))
        gone = [c for c in held if c not in listed]
        if not gone:
            return 0
        log.warning("pool %s: %d idle containers are not running any more; replacing them",
                    pool, len(gone))
        n = await self.pool.forget(pool, gone)
        if self.pool.backend is not None:  # an exited one is removed; a missing one is fine
            await asyncio.gather(*(self.pool.backend.destroy(c) for c in gone),
                                 return_exceptions=True)
        return n

    async def handle(self, records: Iterable[bytes | dict]) -> dict[str, dict[str, int]]:
        """Check and apply a batch of commands: record, persist, then reconcile each changed
        pool once. Returns what reconciling did per pool."""
        changed = {p for p in (self.accept(r) for r in records) if p is not None}
        if not changed:
            return {}
        await self.save_state()
        pools = sorted(changed)
        results = await asyncio.gather(*(self.reconcile(p) for p in pools), return_exceptions=True)
        out: dict[str, dict[str, int]] = {}
        for p, r in zip(pools, results):
            if isinstance(r, BaseException):  # retried by the periodic reconcile
                log.warning("pool %s: reconciling to target %d failed: %r", p,
                            self.state[p]["target"], r)
            else:
                out[p] = r
        return out

    def report(self, pool: str | None = None) -> None:
        """``pool.state`` for one managed pool or all of them, and the gauges."""
        for p in [pool] if pool is not None else self.managed_pools():
            target, avail, in_use = self.pool.target(p), self.pool.available(p), self.pool.in_use(p)
            self._gauges["target"].labels(p).set(target)
            self._gauges["available"].labels(p).set(avail)
            self._gauges["in_use"].labels(p).set(in_use)
            if self.instrumentation is not None:
                self.instrumentation.emit("pool.state", {"pool": p, "available": avail,
                                                         "in_use": in_use, "target": target},
                                          philosophy=p)
            else:
                self.pool.report(p)

    def managed_pools(self) -> list[str]:
        return list(self.pools) if self.pools is not None else sorted(self.state)

    # --- lifecycle -----------------------------------------------------------------------------
    async def recover(self) -> dict[str, dict[str, int]]:
        """On start: adopt the containers that exist with this pool's labels, then reconcile
        every managed pool to its last applied target (a pool without one keeps what exists,
        within the manager's bounds)."""
        out: dict[str, dict[str, int]] = {}
        lister = getattr(self.pool.backend, "list", None)
        for p in self.managed_pools():
            adopted = 0
            if lister is not None:
                adopted = await self.pool.adopt(p, await lister(p))
            target = self.last_target(p)
            if target is None:
                target = min(max(self.pool.available(p), self.min_size), self.max_size)
                self.state[p] = {"generation": 0, "target": target, "command_id": None,
                                 "image": None, "applied_at_ns": time.time_ns()}
            out[p] = {"adopted": adopted, **await self.reconcile(p)}
            log.info("pool %s: adopted %d existing containers; target %d: %s", p, adopted,
                     target, out[p])
        return out

    async def start(self) -> "PoolManager":
        """Recover, serve the metrics (if a port is given), join the consumer group and start
        consuming and reporting in tasks on the running loop."""
        from aiokafka import AIOKafkaConsumer
        if not self._keys:
            raise ConfigError("pool commands are signed: set AGENTFLUX_COMMAND_KEYS (the key(s) "
                              "the autoscaler signs with, comma-separated)")
        self._stopping = asyncio.Event()
        await self.recover()
        if self.metrics_port is not None:
            from prometheus_client import start_http_server
            try:
                self._http = start_http_server(self.metrics_port, addr=self.metrics_host,
                                               registry=self.registry)
            except OSError as exc:
                raise ConfigError(f"cannot serve metrics on {self.metrics_host}:"
                                  f"{self.metrics_port} ({exc.strerror or exc}): pass another "
                                  "--metrics-port") from None
            if isinstance(self._http, tuple):
                self.metrics_port = self._http[0].server_port
        self._consumer = AIOKafkaConsumer(
            self.settings.topics.pool_commands, **self.settings.kafka_client_kwargs(),
            group_id=self.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
            client_id=f"agentflux-pool-manager-{self.name}")
        await self._consumer.start()
        self._tasks = [asyncio.create_task(self._consume(), name="pool-manager-consume"),
                       asyncio.create_task(self._report_loop(), name="pool-manager-report")]
        return self

    async def _consume(self) -> None:
        while not self._stopping.is_set():
            batch = await self._consumer.getmany(timeout_ms=500, max_records=500)
            records = [r.value for rs in batch.values() for r in rs]
            if not records:
                continue
            await self.handle(records)
            await self._consumer.commit()

    async def _report_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), self.report_every_s)
                return
            except asyncio.TimeoutError:
                pass
            for p in self.managed_pools():  # resync, retry a failed reconcile, report
                try:
                    await self.resync(p)
                    await self.reconcile(p)
                except Exception as exc:
                    log.warning("pool %s: periodic reconcile failed: %r", p, exc)

    async def run_until(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set or a task fails (its error is raised)."""
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        for t in done:
            if t is not waiter and t.exception() is not None:
                raise t.exception()

    async def stop(self) -> None:
        """Stop consuming (the containers stay: the next start adopts them)."""
        if self._stopping is not None:
            self._stopping.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._http is not None and isinstance(self._http, tuple):
            server, thread = self._http
            server.shutdown()
            server.server_close()
            self._http = None

    def summary(self) -> dict[str, Any]:
        return {"applied": self.applied, "duplicate": self.duplicates,
                "rejected": dict(self.rejected),
                "pools": {p: {"target": self.pool.target(p), "available": self.pool.available(p),
                              "in_use": self.pool.in_use(p),
                              "generation": self.last_generation(p)}
                          for p in self.managed_pools()}}
