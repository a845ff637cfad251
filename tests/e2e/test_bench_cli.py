"""The benchmark commands print the JSON objects the README and the issues rely on."""

import json
import subprocess
import sys


def test_bench_runtime_prints_one_json_object_with_the_figures():
    proc = subprocess.run([sys.executable, "-m", "agentflux.cli", "bench", "runtime", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("cache_get_median_us", "cache_set_median_us", "routing_p99_us",
                "compression_ratio", "compression_key_facts_kept", "compression_ms_p50",
                "instrumentation_overhead_pct"):
        assert isinstance(out[key], (int, float)), key
    assert out["compression_key_facts_kept"] == 1.0 and out["compression_ratio"] >= 3.0


def test_bench_pipeline_prints_one_json_object_with_the_figures(kafka_bootstrap, tmp_path):
    import os
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "AGENTFLUX_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "agentflux.cli", "bench", "pipeline", "--events",
                           "20000", "--baseline-events", "2000", "--json"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("events_per_s", "baseline_events_per_s", "ratio", "emit_median_us", "ack_p99_ms",
                "worker_peak_rss_mb"):
        assert out[key] > 0, key
    assert out["emitter_failed"] == 0 and out["emitter_dropped"] == 0
