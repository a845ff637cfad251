"""A history made by the demo (broker, worker, pool manager, the synthetic runtime with two
incidents), shared by the tests that read a history as an analyst does: the notebooks and the
report."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_history(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The root of a history of 20,000 simulated events over about half an hour of (accelerated)
    event time: an error burst on one tool and a stalled model from a fifth of the run on, so it
    holds alerts, and a closed loop, so it holds predictions and pool commands."""
    base = tmp_path_factory.mktemp("analysis")
    root = base / "history"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "AGENTFLUX_HOME": str(base / "home"), "COLUMNS": "160"}
    proc = subprocess.run([sys.executable, "-m", "agentflux.cli", "demo", "--events", "20000",
                           "--incident", "error_burst", "--incident", "slow_model",
                           "--history", str(root)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (base / "demo.out").write_text(proc.stdout)  # (what it printed: the incidents' start times)
    return root
