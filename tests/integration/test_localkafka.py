"""`agentflux up` / `down`: a detached local broker recorded in a state file."""

import asyncio
import json
import os
import subprocess
import sys

from agentflux.localkafka import wait_for_group_coordinator


def run(args, home):
    env = {**os.environ, "AGENTFLUX_HOME": str(home)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return subprocess.run([sys.executable, "-m", "agentflux.cli", *args], env=env,
                          capture_output=True, text=True, timeout=180)


def test_up_starts_a_broker_that_answers_and_down_stops_it(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # share the jar cache of the session so nothing is resolved twice
    from agentflux.config import Settings
    from agentflux.localkafka import KAFKA_VERSION
    cache = Settings.from_env().state_dir / f"kafka-{KAFKA_VERSION}"
    if cache.exists():
        os.symlink(cache, home / f"kafka-{KAFKA_VERSION}")
    up = run(["up"], home)
    assert up.returncode == 0, up.stderr
    state = json.loads((home / "local-kafka.json").read_text())
    try:
        asyncio.run(wait_for_group_coordinator(state["bootstrap"], 30))
        again = run(["up"], home)
        assert "already running" in again.stdout
    finally:
        down = run(["down"], home)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not (home / "local-kafka.json").exists()
    try:
        os.kill(state["pid"], 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive
