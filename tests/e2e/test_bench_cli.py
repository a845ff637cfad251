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
                "instrumentation_overhead_pct"):
        assert isinstance(out[key], (int, float)), key
    # the compressor on the real evaluation set, beside head-and-tail truncation
    assert out["compression_documents"] >= 20 and out["compression_facts"] >= 100
    for target in (2000, 1000):
        ours, base = f"compression_{target}_compressor_", f"compression_{target}_head_and_tail_"
        for key in ("ratio_median", "ratio_min", "facts_kept", "within_budget", "ms_p50",
                    "ms_max", "ms_per_5k_tokens_max"):
            assert isinstance(out[ours + key], (int, float)), ours + key
            assert isinstance(out[base + key], (int, float)), base + key
        assert out[ours + "within_budget"] == 1.0
        assert out[ours + "facts_kept"] > 2 * out[base + "facts_kept"]
        # and without the query: within the budget, fewer of the facts asked for
        blind = f"compression_{target}_no_query_"
        assert out[blind + "within_budget"] == 1.0
        assert out[base + "facts_kept"] < out[blind + "facts_kept"] < out[ours + "facts_kept"]
    assert set(out["compression_targets_met"]) >= {"within_budget_all",
                                                   "facts_kept_ge_95pct_at_2000"}
    # and on the held-out sets, reported under their own prefixes
    for prefix in ("holdout_", "holdout2_", "holdout3_"):
        assert out[f"compression_{prefix}documents"] >= 14
        assert out[f"compression_{prefix}2000_compressor_within_budget"] == 1.0
        assert isinstance(out[f"compression_{prefix}1000_compressor_facts_kept"], float)
    # and on pathological inputs (runs of dots, tabs, blanks...): the time, the budget kept
    assert out["compression_hostile_inputs"] >= 14 and out["compression_hostile_chars"] >= 100000
    assert out["compression_hostile_within_budget"] == 1.0
    assert isinstance(out["compression_hostile_ms_per_100k_chars_max"], float)
    assert isinstance(out["compression_hostile_slowest"], str)
    assert isinstance(out["compression_hostile_long_query_ms"], float)


def test_bench_detector_prints_the_detectors_costs_per_row_and_landing():
    proc = subprocess.run([sys.executable, "-m", "agentflux.cli", "bench", "detector", "--events",
                           "30000", "--tool-names", "2000", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["events"] == 30000 and out["tool_names_flooded"] == 2000
    assert 0 < out["session_rows"] < out["kpi_rows"] and out["landings"] >= 1
    for key in ("observe_us_per_row", "state_ms_per_landing", "detector_us_per_event"):
        assert isinstance(out[key], float) and out[key] > 0, key
    assert out["state_bytes_at_end"] > 1000


def test_bench_pipeline_prints_the_worker_beside_its_peers(kafka_bootstrap, tmp_path):
    """A small run of every contender; the peers are not optional (a missing quixstreams fails)."""
    import os
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "AGENTFLUX_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "agentflux.cli", "bench", "pipeline", "--events",
                           "20000", "--peer-events", "20000", "--freshness-seconds", "5",
                           "--landing-rows", "200000", "--json"],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("events_per_s", "faust_per_event_events_per_s", "quixstreams_events_per_s",
                "raw_consume_events_per_s", "ratio_faust", "ratio_quixstreams", "fraction_of_raw",
                "worker_peak_rss_mb", "worker_rss_mb_first_third_max",
                "worker_rss_mb_last_third_max", "emit_median_us", "emit_p99_us", "ack_p50_ms",
                "ack_p99_ms"):
        assert isinstance(out[key], (int, float)) and out[key] > 0, (key, out.get(key))
    assert isinstance(out["rss_flat"], bool)
    assert out["events"] == 20000 and out["peer_events"] == 20000
    assert out["emitter_failed"] == 0 and out["emitter_dropped"] == 0
    # from the worker's landing histogram, over the paced phase only (10,000 events/s, 5 s)
    assert out["freshness_p99_s"] > 0 and out["freshness_events"] == 50_000, out
    # the history: 200,000 rows written as segments of 100,000 in-process; the query over the
    # worker's 70,000 events topped up with those rows
    assert out["landing_rows"] == 200_000 and out["landing_rows_per_s"] > 0, out
    assert out["query_events_by_type_ms"] > 0, out
    assert out["query_events_rows"] == 70_000 + 200_000, out
    assert out["query_events_segments"] >= 3, out
