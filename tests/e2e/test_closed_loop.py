"""The closed loop end to end, on the real broker, a real worker process and real containers
(podman serving the Docker API): a runtime's pool emits its acquisitions to Kafka, the worker's
autoscaler sees demand rise and issues a signed scale-up, the pool manager starts containers and
the acquisitions that follow are warm; demand stops and the pool shrinks back, but only after
the stabilisation window; a duplicated and a forged command change nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson

from agentflux import commands
from agentflux.config import SecretStr
from agentflux.harness import WorkerProcess, until
from agentflux.runtime.emitter import Emitter
from agentflux.runtime.instrument import Instrumentation
from agentflux.runtime.pool import ContainerPool, DockerBackend
from agentflux.runtime.poolmanager import PoolManager
from tests.integration.kafka_helpers import produce_raw, read_all

KEY = b"e2e-loop-key"
STABILISE_S = 8.0
POLICY = f"""\
min_size: 1
max_size: 12
interval_s: 1
windows: 3
headroom: 1.0
scale_down_stabilization_s: {STABILISE_S}
"""




class Demand:
    """Agents taking a container from the pool at ``rate`` per second and holding it
    ``hold_s`` (concurrency ~ rate x hold), counting warm and cold starts."""

    def __init__(self, pool: ContainerPool, rate: float, hold_s: float):
        self.pool, self.rate, self.hold_s = pool, rate, hold_s
        self.starts: list[tuple[float, bool]] = []
        self._tasks: set[asyncio.Task] = set()
        self._stop = asyncio.Event()

    async def _one(self) -> None:
        cid, warm = await self.pool.acquire("react")
        self.starts.append((time.monotonic(), warm))
        await asyncio.sleep(self.hold_s)  # (the agent's work, not a wait for a condition)
        await self.pool.release("react", cid)

    async def run(self) -> None:
        t0, i = time.monotonic(), 0
        while not self._stop.is_set():
            t = asyncio.create_task(self._one())
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
            i += 1
            try:  # paced arrivals
                await asyncio.wait_for(self._stop.wait(), max(0.0, t0 + i / self.rate
                                                              - time.monotonic()))
            except asyncio.TimeoutError:
                pass

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def warm_rate_since(self, t: float) -> tuple[float, int]:
        after = [w for at, w in self.starts if at >= t]
        return (sum(after) / len(after) if after else 0.0), len(after)


def test_demand_scales_real_containers_up_then_down_and_bad_commands_change_nothing(
        settings, docker_api, tmp_path: Path):
    client, image, _ = docker_api
    policy = tmp_path / "autoscaler.yaml"
    policy.write_text(POLICY)
    s = settings.replace(command_keys=SecretStr(KEY.decode()), autoscaler_policy=str(policy))
    label = uuid.uuid4().hex[:8]

    def containers() -> int:
        # (one low-level list: the SDK's list inspects each container after listing, and
        # podman answers 500 for one removed in between)
        return len(client.api.containers(filters={"label": f"agentflux.test={label}"}))

    worker = WorkerProcess.with_free_ports(s, log_path=tmp_path / "worker.log").start()
    emitter = Emitter(s, linger_ms=1).start()
    seen: dict = {}

    async def scenario() -> None:
        instr = Instrumentation(emitter, agent_id="runtime-1", philosophy="react")
        backend = DockerBackend(client, image, labels={"agentflux.test": label})
        pool = ContainerPool(pool_size=1, instrumentation=instr, backend=backend)
        manager = PoolManager(s, pool, pools=["react"], min_size=1, max_size=12,
                              image_allowlist={image}, instrumentation=instr,
                              state_file=tmp_path / "manager.json", report_every_s=1.0)
        await manager.start()
        try:
            await pool.reconcile_to("react", 1)
            assert containers() == 1
            # demand rises: 5 acquisitions/s held 1 s; one warm container kept ready (each
            # one taken is replaced, but a start takes longer than the next arrival)
            demand = Demand(pool, rate=5.0, hold_s=1.0)
            runner = asyncio.create_task(demand.run())
            scaled = await until(lambda: manager.applied >= 1 and pool.target("react") >= 3,
                                 60, "a scale-up command applied")
            await until(lambda: containers() >= pool.target("react"), 30,
                        "the pool's containers started")
            before, n_before = demand.warm_rate_since(0)
            # warm starts follow: with the spares the autoscaler asked for, nearly all are warm
            await until(lambda: demand.warm_rate_since(scaled + 2.0)[1] >= 40, 30,
                        "40 starts after the scale-up")
            warm, n = demand.warm_rate_since(scaled + 2.0)
            assert warm >= 0.9, (warm, n, before, n_before)

            # demand stops: the pool shrinks back to the minimum, not before the window
            await demand.stop()
            runner.cancel()
            stopped = time.monotonic()
            shrunk = await until(lambda: pool.target("react") <= 1, 60,
                                 "a scale-down after the stabilisation window")
            assert shrunk - stopped >= STABILISE_S - 2.0  # (window ends are 1 s apart)
            await until(lambda: containers() <= 1 and pool.starting("react") == 0, 30,
                        "idle containers removed")
            sent = [orjson.loads(r.value) for r in await read_all(s, s.topics.pool_commands)]
            assert sent[0]["reason"].startswith("scale_up") and sent[0]["inputs"]
            assert sent[-1]["reason"].startswith("scale_down") and sent[-1]["target"] == 1

            # a duplicated command (the last one, sent again) and a forged one (another key,
            # a newer generation, the maximum size) change nothing
            applied = manager.applied
            forged = commands.new_command("react", 12, sent[-1]["generation"] + 10**9,
                                          "forged", {}, min_size=1, max_size=12)
            commands.sign(forged, b"not-the-key")
            await produce_raw(s, [orjson.dumps(sent[-1]), orjson.dumps(forged)], key=b"react",
                              topic=s.topics.pool_commands)
            await until(lambda: manager.duplicates >= 1
                        and manager.rejected.get("bad_signature", 0) >= 1, 30,
                        "the duplicate and the forged command handled")
            assert manager.applied == applied
            assert pool.target("react") == 1 and containers() == 1
            seen["starts"] = list(demand.starts)
        finally:
            await manager.stop()
            await pool.drain()

    try:
        asyncio.run(scenario())
    finally:
        emitter.close()
        worker.stop()
        for c in client.api.containers(all=True, filters={"label": f"agentflux.test={label}"}):
            client.api.remove_container(c["Id"], force=True)

    # the recorded demand replayed offline: `agentflux whatif` over the worker's history sees
    # the acquisitions the runtime made, warm and cold as they were
    out = subprocess.run([sys.executable, "-m", "agentflux.cli", "whatif", "--history",
                          s.history_path, "--policy", str(policy), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = orjson.loads(out.stdout)
    assert result["pools"] == ["react"]
    recorded = result["recorded"]
    assert recorded["acquires"] == len(seen["starts"])
    assert recorded["warm_starts"] == sum(w for _, w in seen["starts"])
    assert {"static", "reactive", "policy"} <= set(result["policies"])
    for figures in result["policies"].values():
        assert 0 <= figures["warm_start_rate"] <= 1 and figures["idle_container_s"] >= 0
