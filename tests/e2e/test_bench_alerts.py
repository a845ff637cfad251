"""`agentflux bench alerts --json` scores the alerts raised on labelled incidents against the
targets of DESIGN.md, and `--incident` names the incidents a user can inject."""

import json
import os
import subprocess
import sys


def test_bench_alerts_meets_the_detection_targets(kafka_bootstrap, tmp_path):
    """30 minutes of event time: two rounds of every incident type (12 incidents)."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "AGENTFLUX_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "agentflux.cli", "bench", "alerts", "--json",
                           "--minutes-of-event-time", "30"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["incidents"] == 12 and set(out["per_type"]) == {
        "error_burst", "slow_model", "cache_collapse", "memory_climb", "cost_runaway",
        "fallback_storm"}
    detail = json.dumps({k: out[k] for k in ("missed_incidents", "false_alarms")})[:3000]
    assert out["recall"] == 1.0, detail
    for name, t in out["per_type"].items():
        assert t["recall"] == 1.0, (name, detail)
        assert t["precision"] is not None and t["precision"] >= 0.95, (name, detail)
    assert out["precision"] >= 0.95, detail
    fast = out["fast_burn_delay_s"]
    assert fast["missed"] == 0 and fast["max"] <= 60, fast
    assert out["targets_met"] == {"recall": True, "precision": True, "fast_burn": True}


def test_simulate_names_the_valid_incidents_for_an_unknown_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "AGENTFLUX_"))}
    env["AGENTFLUX_HOME"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "agentflux.cli", "simulate", "--incident",
                           "nope"], capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    for name in ("error_burst", "slow_model", "cache_collapse", "memory_climb", "cost_runaway",
                 "fallback_storm"):
        assert name in proc.stderr
    listed = subprocess.run([sys.executable, "-m", "agentflux.cli", "simulate", "--incident",
                             "list"], capture_output=True, text=True, timeout=60, env=env,
                            stdin=subprocess.DEVNULL)
    assert listed.returncode == 0 and "memory_climb" in listed.stdout
