"""The closed loop's runtime side against the real broker and real containers (podman serving
the Docker API): signed pool commands published with aiokafka scale a pool; duplicates, forged
and stale commands change nothing and are counted; a restarted manager adopts its containers by
label without creating duplicates; scaling down destroys idle containers. And the prediction
subscriber reading the compacted predictions topic, feeding the optimizer."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import orjson
from aiokafka import AIOKafkaProducer

from agentflux import commands
from agentflux.config import SecretStr
from agentflux.harness import until, wait_until
from agentflux.runtime.instrument import CountingEmitter, Instrumentation
from agentflux.runtime.optimizer import PerformanceOptimizer
from agentflux.runtime.pool import ContainerPool, DockerBackend
from agentflux.runtime.poolmanager import PoolManager
from agentflux.runtime.predictions import PredictionSubscriber
from agentflux.schemas import check

KEY = b"integration-key"







async def publish(settings, topic: str, items: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(**settings.kafka_client_kwargs())
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


def test_pool_manager_applies_signed_commands_to_real_containers(settings, docker_api, tmp_path):
    client, image, _ = docker_api
    settings = settings.replace(command_keys=SecretStr(KEY.decode()))
    label = uuid.uuid4().hex[:10]
    state_file = tmp_path / "pool-manager.json"
    sink = CountingEmitter()
    instr = Instrumentation(sink)
    gens = commands.Generations()

    def containers() -> set[str]:
        """What the Docker API says exists for this test's pool (by its labels)."""
        return {c["Id"] for c in client.api.containers(  # one request: no inspect races
            filters={"label": [f"agentflux.test={label}", "agentflux.pool.name=react"]})}

    async def count() -> int:
        return len(await asyncio.to_thread(containers))

    async def exactly(n: int) -> bool:
        return await count() == n

    def new_manager() -> PoolManager:
        backend = DockerBackend(client, image, labels={"agentflux.test": label})
        pool = ContainerPool(pool_size=0, backend=backend, instrumentation=instr)
        return PoolManager(settings, pool, pools=["react"], min_size=0, max_size=6,
                           image_allowlist={image}, instrumentation=instr, name=label,
                           state_file=state_file, report_every_s=0.5, metrics_port=0)

    def command(target: int, *, key: bytes = KEY, generation: int | None = None) -> dict:
        doc = commands.new_command("react", target, generation or gens.next("react"), "test",
                                   {}, min_size=0, max_size=10, image=image, issuer="test")
        return commands.sign(doc, key)

    async def send(*docs: dict) -> None:
        await publish(settings, settings.topics.pool_commands,
                      [(d["pool"], orjson.dumps(d)) for d in docs])

    async def scenario() -> None:
        m = await new_manager().start()
        try:
            up = command(3)
            await send(up)
            await until(lambda: exactly(3), 60, "3 containers through the Docker API")
            # created is not yet started: the pool counts a container once it is ready
            await until(lambda: m.pool.available("react") == 3, 60, "3 warm containers")
            assert m.applied == 1
            before = await asyncio.to_thread(containers)

            # the same command again, a forged one, a stale one: none changes anything
            forged = command(5, key=b"not-the-key")
            stale = command(5, generation=up["generation"] - 1)
            await send(up, forged, stale)
            await until(lambda: m.duplicates == 1 and sum(m.rejected.values()) == 2, 60,
                        "the duplicate, forged and stale commands to be counted")
            assert m.rejected == {"bad_signature": 1, "stale_generation": 1}
            assert m.applied == 1 and await asyncio.to_thread(containers) == before
            with urllib.request.urlopen(f"http://127.0.0.1:{m.metrics_port}/metrics") as r:
                text = r.read().decode()
            assert 'agentflux_pool_commands_total{outcome="applied",reason="ok"} 1.0' in text
            assert ('agentflux_pool_commands_total{outcome="duplicate",'
                    'reason="duplicate_command_id"} 1.0') in text
            assert ('agentflux_pool_commands_total{outcome="rejected",'
                    'reason="bad_signature"} 1.0') in text
            assert 'agentflux_pool_target{pool="react"} 3.0' in text
            # periodic pool.state reports
            n = len(sink.of_type("pool.state"))
            await until(lambda: len(sink.of_type("pool.state")) >= n + 2, 30,
                        "two periodic pool.state reports")
        finally:
            await m.stop()

        # a restart: a new manager, the same state file and consumer group
        m = new_manager()
        assert m.last_generation("react") == up["generation"]
        await m.start()
        try:
            assert m.pool.available("react") == 3  # adopted by label, none created
            assert await asyncio.to_thread(containers) == before
            await send(up)  # redelivered after the restart: still a duplicate
            await until(lambda: m.duplicates == 1, 60, "the redelivery to be counted")
            assert await count() == 3

            down = command(1)
            await send(down)
            await until(lambda: exactly(1), 60, "the scale-down to 1 container")
            assert m.applied == 1
            assert await asyncio.to_thread(containers) < before  # one of the same containers
            assert m.pool.available("react") == 1 and m.pool.target("react") == 1

            # removed behind its back: the periodic resync replaces it
            (last,) = await asyncio.to_thread(containers)
            await asyncio.to_thread(lambda: client.containers.get(last).remove(force=True))
            await until(lambda: asyncio.to_thread(
                lambda: len(ids := containers()) == 1 and last not in ids), 60,
                "the removed container to be replaced")
            assert m.pool.idle_ids("react") != [last]
        finally:
            await m.stop()
            await m.pool.drain()

    try:
        asyncio.run(scenario())
    finally:
        for c in client.containers.list(all=True, filters={"label": f"agentflux.test={label}"}):
            c.remove(force=True)
    states = sink.of_type("pool.state")
    assert states and all(check(e) is None for e in sink.events)
    assert {e["attrs"]["target"] for e in states if e["attrs"]["pool"] == "react"} >= {3, 1}
    saved = orjson.loads(state_file.read_bytes())
    assert saved["pools"]["react"]["target"] == 1


def prediction(issued: int, cpu: float, mem: float, t: float) -> dict:
    rec = {"cpu_percent": {"target": cpu, "lower": cpu / 2, "upper": cpu * 2},
           "memory_mb": {"target": mem, "lower": mem / 2, "upper": mem * 2},
           "execution_time_seconds": {"target": t, "lower": t / 2, "upper": t * 2}}
    return {"v": 1, "key": "react", "philosophy": "react", "tool": None, "issued_at_ns": issued,
            "as_of_ns": issued, "half_life_s": 3600.0, "samples": 100, "weight": 80.0,
            "confidence": 0.9, "recommendation": rec,
            "mean_x_1_2": {"cpu_percent": 1.0, "memory_mb": 1.0, "execution_time_seconds": 1.0},
            "issuer": "test"}


def test_prediction_subscriber_reads_the_latest_and_feeds_the_optimizer(settings):
    now = time.time_ns()
    asyncio.run(publish(settings, settings.topics.predictions, [
        ("react", orjson.dumps(prediction(now, 20.0, 100.0, 2.0))),
        ("react", orjson.dumps(prediction(now + 1, 35.0, 300.0, 7.5))),
        ("react", b"{garbage"),
    ]))
    sub = PredictionSubscriber(settings).start()
    try:
        assert sub.wait_ready(60), "the subscriber did not catch up with the predictions topic"
        assert sub.latest("react")["issued_at_ns"] == now + 1
        assert sub.latest("chain_of_thought") is None
        assert sub.malformed == 1
        o = PerformanceOptimizer(enable_gc_optimization=False, predictions=sub)
        assert o.prediction_source({"philosophy": "react"}) == "pipeline"
        assert o.predict_resource_requirements({"philosophy": "react"}) == {
            "cpu_percent": 35.0, "memory_mb": 300.0, "execution_time_seconds": 7.5}
        assert o.prediction_source({"philosophy": "multi_agent"}) == "local"
        # a prediction published while it runs replaces the held one
        asyncio.run(publish(settings, settings.topics.predictions,
                            [("react", orjson.dumps(prediction(now + 2, 50.0, 400.0, 9.0)))]))
        wait_until(lambda: sub.latest("react")["issued_at_ns"] == now + 2, 30,
                   "the newer prediction to reach the subscriber")
        assert o.predict_resource_requirements({"philosophy": "react"})["cpu_percent"] == 50.0
    finally:
        sub.stop()


def test_pool_manager_command_scales_and_stops_on_sigterm(settings, docker_api, tmp_path):
    """`agentflux pool-manager` as a user runs it: applies a signed command to real containers,
    reports pool.state to Kafka, and SIGTERM stops it cleanly (exit 0, containers kept)."""
    from tests.integration.kafka_helpers import read_all
    client, image, docker_url = docker_api
    pool = f"cli-{uuid.uuid4().hex[:8]}"
    key = "cli-key-1"
    prefix = settings.topics.events.removesuffix(".events")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "AGENTFLUX_TOPIC_PREFIX": prefix, "AGENTFLUX_COMMAND_KEYS": f"{key},old-key",
           "AGENTFLUX_HOME": str(tmp_path / "home")}
    env.pop("DOCKER_HOST", None)
    out, err = tmp_path / "stdout", tmp_path / "stderr"

    def containers() -> list:
        return client.api.containers(filters={"label": f"agentflux.pool.name={pool}"})

    cmd = [sys.executable, "-m", "agentflux.cli", "pool-manager", "--pool", pool,
           "--docker-url", docker_url, "--image", image, "--max-size", "4",
           "--report-every", "0.5", "--name", pool]
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(cmd, env=env, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: "agentflux pool-manager:" in out.read_text() or proc.poll() is not None,
                   60, "the pool manager's start line")
        assert proc.poll() is None, err.read_text()
        doc = commands.sign(commands.new_command(pool, 2, commands.Generations().next(pool),
                                                 "test", {}, min_size=0, max_size=10),
                            key.encode())
        asyncio.run(publish(settings, settings.topics.pool_commands, [(pool, orjson.dumps(doc))]))
        wait_until(lambda: len(containers()) == 2, 60, "2 containers of the pool")

        def reported() -> bool:  # the pool's state as the manager reports it to Kafka
            records = asyncio.run(read_all(settings, settings.topics.events))
            events = [orjson.loads(r.value) for r in records]
            return any(e["type"] == "pool.state" and e["attrs"]["pool"] == pool
                       and e["attrs"]["target"] == 2 and e["attrs"]["available"] == 2
                       for ev in events for e in (ev if isinstance(ev, list) else [ev]))
        # (a report follows the containers: SIGTERM sent on seeing them had, under load,
        # come before it)
        wait_until(reported, 60, "a pool.state event with target 2 and 2 available")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, err.read_text()
        text = err.read_text()
        assert "interrupted (SIGTERM)" in text and "stopped; applied 1, duplicates 0" in text
        assert "Traceback" not in text
        assert len(containers()) == 2  # kept: the next start adopts them
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for c in client.containers.list(all=True, filters={"label": f"agentflux.pool.name={pool}"}):
            c.remove(force=True)
