"""``agentflux bench soak``: a short soak on the real broker prints the figures the README and
issue 6 rely on, every emitted event lands, and the landed lag stays bounded."""

import json
import os
import subprocess
import sys

MINUTES, RATE = 0.5, 2000

NUMBERS = ("duration_s", "achieved_rate", "rate_1s_min", "drain_s",
           "worker_rss_mb_first_third", "worker_rss_mb_last_third", "worker_rss_ratio",
           "worker_rss_mb_max", "emitter_rss_mb_first_third", "emitter_rss_mb_last_third",
           "emitter_rss_ratio", "emitter_rss_mb_max", "lag_records_max", "lag_records_p99",
           "landed_lag_events_max", "landed_lag_events_p99", "landed_lag_events_first_third_max",
           "landed_lag_events_last_third_max", "landed_lag_s_max", "landed_lag_s_p99",
           "emitter_buffered_max", "emitter_pending_max", "warmup_s")
CRITERIA = ("pass_rate_held", "pass_delivered", "pass_worker_memory_flat",
            "pass_emitter_memory_flat", "pass_lag_bounded")


def test_bench_soak_holds_the_rate_lands_everything_and_bounds_the_lag(kafka_bootstrap, tmp_path):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "AGENTFLUX_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "agentflux.cli", "bench", "soak", "--minutes",
                           str(MINUTES), "--rate", str(RATE), "--json"],
                          capture_output=True, text=True, timeout=240, env=env)
    # 0: every criterion passed; 1: one failed (memory flatness is noise over 30 s)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    for key in NUMBERS:
        assert isinstance(out[key], (int, float)) and not isinstance(out[key], bool), (key, out)
        assert out[key] >= 0, (key, out[key])
    for key in CRITERIA:
        assert isinstance(out[key], bool), key
    assert out["ok"] == all(out[k] for k in CRITERIA)
    assert proc.returncode == (0 if out["ok"] else 1)
    assert out["interrupted"] is False and out["aborted"] is None
    assert out["samples"] >= MINUTES * 60 * 0.8  # one a second

    # the rate was held for the duration, and every event made it through
    target = RATE * MINUTES * 60
    assert abs(out["emitted"] - target) <= 0.15 * target, out["emitted"]
    assert abs(out["achieved_rate"] - RATE) <= 0.15 * RATE, out["achieved_rate"]
    assert out["dropped"] == 0 and out["failed"] == 0
    assert out["acked"] == out["emitted"]
    assert out["landed"] == out["acked"] and out["dead_lettered"] == 0
    assert out["pass_rate_held"] and out["pass_delivered"]

    # memory figures are real (flatness itself is not asserted at this length)
    assert 20 < out["worker_rss_mb_first_third"] < 2000
    assert 20 < out["emitter_rss_mb_first_third"] < 2000
    assert out["worker_rss_mb_max"] >= out["worker_rss_mb_last_third"]

    # the lag stayed bounded: never 5 s worth of events behind. (Whether it grows is judged
    # over a real soak, minutes long: over 30 s the thirds are 10 s apart and one busy second
    # of a shared machine decides it; the criterion itself is reported either way.)
    lag = {k: out[k] for k in ("landed_lag_events_max", "landed_lag_events_first_third_max",
                               "landed_lag_events_last_third_max", "machine_cpu_pct_mean")}
    assert out["landed_lag_events_max"] < 5 * RATE, lag
    assert isinstance(out["pass_lag_bounded"], bool)
