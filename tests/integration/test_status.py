"""`agentflux status --once --json` against a running worker on the real broker: what the
worker consumed, its lag per partition, dead letters, open windows, the alerts firing and the
last predictions, as one JSON object a script can read."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading

import numpy as np

from agentflux.harness import WorkerProcess, settings_env
from tests.integration.kafka_helpers import produce_raw
from tests.integration.test_closed_loop_worker import demand


def status(settings, *args: str) -> tuple[int, dict | None, str]:
    env = {**os.environ, **settings_env(settings)}
    proc = subprocess.run([sys.executable, "-m", "agentflux.cli", "status", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout.strip().splitlines()
    return proc.returncode, json.loads(out[-1]) if proc.returncode == 0 and out else None, \
        proc.stderr


def test_status_once_json_reports_a_running_worker(settings, tmp_path):
    # the pools below are seconds old: without the warm-start rule's one-minute warm-up, their
    # cold starts raise it
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  warm_start_rate_low: {warmup: null}\n")
    settings = settings.replace(failure_rules=str(rules))
    worker = WorkerProcess(settings, log_path=tmp_path / "worker.log").start()
    try:
        # acquisitions (a quarter of them cold: the warm-start rate alert fires) and samples
        demand(settings, 3.0, 40, 3, np.full(10, 20.0))
        asyncio.run(produce_raw(settings, [b"{not json", b'{"v": 1}']))  # two dead letters
        worker.wait_for(lambda m: m.get('agentflux_deadletter_total{reason="invalid_json"}', 0)
                        >= 1 and not any(v for k, v in m.items()
                                         if k.startswith("agentflux_consumer_lag{")), 60,
                        "the records to be consumed")
        worker.wait_for(lambda m: m.get('agentflux_loop_outputs_total{kind="prediction",'
                                        'outcome="published"}', 0) >= 1, 60,
                        "a prediction to be published")
        worker.wait_for(lambda m: m.get("agentflux_alerts_active", 0) >= 1, 60,
                        "the warm-start rate alert to fire")
        code, snap, err = status(settings, "--once", "--json", "--interval", "0.5")
        assert code == 0, err
        events = snap["events_total"]
        assert events >= 100 and snap["records_total"] >= 2  # (the emitter batches events)
        assert snap["consumer_lag"] and snap["consumer_lag_total"] == 0
        assert all(k.startswith(settings.topics.events) for k in snap["consumer_lag"])
        assert snap["dead_letters_total"] >= 2 and "invalid_json" in snap["dead_letters"]
        assert snap["records_per_s"] >= 0 and isinstance(snap["open_windows"], int)
        assert snap["alerts_active"] >= 1
        assert "warm_start_rate_low" in [a["rule"] for a in snap["alerts"]]
        pred = snap["predictions"]["react"]
        assert pred["samples"] >= 1 and pred["cpu_percent"]["target"] >= 20.0
        assert snap["metrics_url"].endswith(f":{settings.metrics_port}/metrics")
        # events arriving while it looks show as a rate
        busy = threading.Thread(target=demand, args=(settings, 6.0, 100, 1, np.full(10, 20.0)))
        busy.start()
        try:
            code, snap, err = status(settings, "--once", "--json", "--interval", "2")
        finally:
            busy.join()
        assert code == 0, err
        assert snap["events_per_s"] > 0 and snap["events_total"] > events
    finally:
        worker.stop()


def test_status_says_how_to_reach_a_worker_that_is_not_there(settings):
    code, _, err = status(settings, "--once", "--json", "--metrics-url",
                          "http://127.0.0.1:9/metrics")
    assert code == 2
    assert err.startswith("agentflux: error: cannot read the worker's metrics at "
                          "http://127.0.0.1:9/metrics")
    assert "--metrics-url" in err and "Traceback" not in err
