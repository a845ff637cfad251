"""`agentflux up` / `down`: a detached local broker recorded in a state file, which survives a
crash and a stop with its data and its address; only `up --reset` starts a fresh cluster."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys

import psutil
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from agentflux.config import Settings
from agentflux.harness import wait_until
from agentflux.localkafka import (KAFKA_VERSION, port_in_use, read_cluster_id, read_state,
                                  running_broker, wait_for_group_coordinator)

from .kafka_helpers import consume_sync

TOPIC = "agentflux.up-test"


def run(args, home):
    env = {**os.environ, "AGENTFLUX_HOME": str(home)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return subprocess.run([sys.executable, "-m", "agentflux.cli", *args], env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # share the jar cache of the session so nothing is resolved twice
    cache = Settings.from_env().state_dir / f"kafka-{KAFKA_VERSION}"
    if cache.exists():
        os.symlink(cache, home / f"kafka-{KAFKA_VERSION}")
    yield home
    state = running_broker(home)  # whatever a failed test left running: our own broker only
    if state:
        os.kill(state["pid"], signal.SIGKILL)


def settings_for(bootstrap: str) -> Settings:
    return Settings.from_env(env={}, bootstrap_servers=bootstrap)


async def produce_acked(bootstrap: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(TOPIC, f"record-{i}".encode(), key=b"k") for i in range(n)]
        await asyncio.gather(*futures)  # every one acknowledged by the broker (acks=all)
    finally:
        await producer.stop()


async def topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def values(bootstrap: str, n: int) -> list[str]:
    return sorted(r.value.decode() for r in consume_sync(settings_for(bootstrap), TOPIC, n, 60))


def exists(pid: int) -> bool:
    """The process runs (an exited one that its parent has not reaped yet does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_9(home) -> dict:
    state = read_state(home)
    os.kill(state["pid"], signal.SIGKILL)
    # a multi-threaded process's sockets close when its last thread is gone, which can be
    # after its main thread is a zombie
    wait_until(lambda: not exists(state["pid"]) and not port_in_use(state["port"]), 30,
               "the killed broker and its listening socket to be gone")
    return state


def test_up_starts_a_broker_and_down_stops_it_keeping_its_data_for_the_next_up(home):
    first = run(["up"], home)
    assert first.returncode == 0, first.stderr
    state = read_state(home)
    assert f"started a fresh cluster at {state['bootstrap']}" in first.stdout
    asyncio.run(wait_for_group_coordinator(state["bootstrap"], 30))
    asyncio.run(produce_acked(state["bootstrap"], 10))
    again = run(["up"], home)
    assert f"already running at {state['bootstrap']}" in again.stdout
    down = run(["down"], home)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not exists(state["pid"])
    assert running_broker(home) is None

    resumed = run(["up"], home)
    assert resumed.returncode == 0, resumed.stderr
    assert f"restarted on existing data at {state['bootstrap']}" in resumed.stdout
    assert values(state["bootstrap"], 10) == sorted(f"record-{i}" for i in range(10))

    running = read_state(home)
    reset = run(["up", "--reset", "--force"], home)  # stops the running broker, deletes its data
    assert reset.returncode == 0, reset.stderr
    assert "started a fresh cluster (old data deleted)" in reset.stdout
    assert not exists(running["pid"])
    assert TOPIC not in asyncio.run(topics(read_state(home)["bootstrap"]))
    assert run(["down"], home).returncode == 0


def test_up_after_a_kill_9_resumes_the_same_cluster_at_the_same_address_with_every_acked_record(home):
    n = 5000
    assert run(["up"], home).returncode == 0
    before = read_state(home)
    bootstrap = before["bootstrap"]
    asyncio.run(produce_acked(bootstrap, n))
    kill_9(home)

    up = run(["up"], home)
    assert up.returncode == 0, up.stderr
    assert f"restarted on existing data at {bootstrap}" in up.stdout
    after = read_state(home)
    assert after["bootstrap"] == bootstrap and after["controller_port"] == before["controller_port"]
    assert after["cluster_id"] == before["cluster_id"] == read_cluster_id(
        os.path.join(after["work_dir"], "data"))
    assert values(bootstrap, n) == sorted(f"record-{i}" for i in range(n))

    # the recorded port taken by someone else: one line naming it and the way out
    kill_9(home)
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", after["port"]))
    squatter.listen()
    try:
        blocked = run(["up"], home)
    finally:
        squatter.close()
    assert blocked.returncode == 2
    assert len(blocked.stderr.strip().splitlines()) == 1, blocked.stderr
    assert blocked.stderr.startswith("agentflux: error: ")
    assert f"127.0.0.1:{after['port']}" in blocked.stderr and "agentflux up --reset" in blocked.stderr

    fresh = run(["up", "--reset", "--force"], home)
    assert fresh.returncode == 0, fresh.stderr
    new = read_state(home)
    assert "started a fresh cluster" in fresh.stdout and new["bootstrap"] in fresh.stdout
    assert new["cluster_id"] != before["cluster_id"]
    assert TOPIC not in asyncio.run(topics(new["bootstrap"]))
    assert run(["down"], home).returncode == 0
    assert json.loads((home / "local-kafka.json").read_text())["pid"] is None
