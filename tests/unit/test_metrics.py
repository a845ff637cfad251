from prometheus_client import CollectorRegistry, generate_latest

from agentflux.sinks.prometheus import GENAI_DURATION_BUCKETS_S, PipelineMetrics


def test_span_histogram_uses_genai_buckets_in_seconds():
    reg = CollectorRegistry()
    m = PipelineMetrics(registry=reg)
    m.observe_many("tool.call", "grep", "react", [0.005, 0.01, 0.011, 3.0, 500.0])
    labels = {"type": "tool.call", "name": "grep", "philosophy": "react"}
    get = reg.get_sample_value
    assert get("agentflux_span_duration_seconds_bucket", {**labels, "le": "0.01"}) == 2
    assert get("agentflux_span_duration_seconds_bucket", {**labels, "le": "0.02"}) == 3
    assert get("agentflux_span_duration_seconds_bucket", {**labels, "le": "5.12"}) == 4
    assert get("agentflux_span_duration_seconds_bucket", {**labels, "le": "+Inf"}) == 5
    assert get("agentflux_span_duration_seconds_count", labels) == 5
    assert abs(get("agentflux_span_duration_seconds_sum", labels) - 503.026) < 1e-9
    text = generate_latest(reg).decode()
    for b in GENAI_DURATION_BUCKETS_S:
        assert f'le="{b}"' in text


def test_counters_end_in_total_and_accumulate():
    reg = CollectorRegistry()
    m = PipelineMetrics(registry=reg)
    m.count_events({"tool.call": 3})
    m.count_events({"tool.call": 2, "llm.call": 1})
    m.count_deadletters("invalid_json")
    m.set_lag("agentflux.events", 0, 7)
    m.count_alert_rows_overflowed("tool_failure_streak", 3)
    m.count_alert_rows_overflowed("tool_failure_streak", 4)
    assert reg.get_sample_value("agentflux_alert_rows_overflow_total",
                                {"rule": "tool_failure_streak"}) == 7
    assert reg.get_sample_value("agentflux_events_total", {"type": "tool.call"}) == 5
    assert reg.get_sample_value("agentflux_deadletter_total", {"reason": "invalid_json"}) == 1
    assert reg.get_sample_value("agentflux_consumer_lag",
                                {"topic": "agentflux.events", "partition": "0"}) == 7


def test_grouped_observations_equal_one_observation_per_span():
    import numpy as np
    rng = np.random.default_rng(3)
    spans = [("tool.call", f"t{i}", "react") for i in range(12)] + [("llm.call", "m", "react")]
    groups = np.sort(rng.integers(0, 12, 3000))  # (the last span gets none)
    seconds = rng.lognormal(-3, 2, 3000)
    regs = CollectorRegistry(), CollectorRegistry()
    one, grouped = PipelineMetrics(registry=regs[0]), PipelineMetrics(registry=regs[1])
    for g, span in enumerate(spans):
        if (groups == g).any():
            one.observe_many(*span, seconds[groups == g])
    grouped.observe_grouped(spans, seconds, groups)

    def spans_of(reg):
        return sorted((s.name, tuple(sorted(s.labels.items())), round(s.value, 9))
                      for f in reg.collect() if f.name == "agentflux_span_duration_seconds"
                      for s in f.samples)
    assert spans_of(regs[0]) == spans_of(regs[1]) and len(spans_of(regs[0])) > 12 * 10


def test_otlp_export_counters_and_queue_gauge():
    reg = CollectorRegistry()
    m = PipelineMetrics(registry=reg)
    get = reg.get_sample_value
    # every outcome and reason is exposed from the start (a rate() needs the zero)
    for o in ("exported", "dropped", "sampled_out"):
        assert get("agentflux_otlp_spans_total", {"outcome": o}) == 0
    for r in ("queue_full", "export_failed", "shutdown"):
        assert get("agentflux_otlp_spans_dropped_total", {"reason": r}) == 0
    m.count_spans("exported", 10)
    m.count_spans("exported", 5)
    m.count_spans("dropped", 2)
    m.count_spans_dropped("queue_full", 2)
    m.set_otlp_queue(7)
    m.set_otlp_queue(3)
    assert get("agentflux_otlp_spans_total", {"outcome": "exported"}) == 15
    assert get("agentflux_otlp_spans_total", {"outcome": "dropped"}) == 2
    assert get("agentflux_otlp_spans_dropped_total", {"reason": "queue_full"}) == 2
    assert get("agentflux_otlp_queue_spans") == 3


def test_span_histogram_exemplars_carry_trace_ids_in_openmetrics():
    import numpy as np
    import pyarrow as pa
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    reg = CollectorRegistry()
    m = PipelineMetrics(registry=reg)
    keys = [("tool.call", "grep", "react"), ("llm.call", "m1", "react")]
    key_index = np.array([0, 0, 0, 1, 1])
    duration_ms = np.array([5.0, 3000.0, 7.0, 900.0, np.nan])
    trace = pa.array(["a" * 32, "b" * 32, None, "not a trace id", "c" * 32])
    ts = np.array([1, 2, 3, 4, 5], np.int64) * 10**9 + 1_700_000_000 * 10**9
    has = ~np.isnan(duration_ms)
    m.observe_grouped(keys, duration_ms[has] / 1000, key_index[has])
    m.observe_exemplars(keys, key_index, duration_ms, trace, ts)
    text = openmetrics(reg).decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "agentflux_span_duration_seconds_bucket" and s.exemplar]
    got = {(s.labels["name"], s.labels["le"]): s.exemplar for s in samples}
    # grep: 5 ms in le=0.01 (trace a; the 7 ms span has no trace id), 3 s in le=5.12 (trace b)
    assert got[("grep", "0.01")].labels == {"trace_id": "a" * 32}
    assert got[("grep", "0.01")].value == 0.005
    assert float(got[("grep", "0.01")].timestamp) == 1_700_000_001  # event time
    assert got[("grep", "5.12")].labels == {"trace_id": "b" * 32}
    # m1: its only traced span had no duration; the other's "trace id" is not one
    assert not any(name == "m1" for name, _ in got)
    assert len(got) == 2
    # the classic text format (what promtool and older scrapers read) has no exemplars
    assert "trace_id" not in generate_latest(reg).decode()


def test_every_metric_has_help_text_and_counters_end_in_total():
    import numpy as np
    from agentflux.sinks.prometheus import KPI_COUNTERS, KPI_HELP
    from prometheus_client.parser import text_string_to_metric_families
    assert {family for family, _ in KPI_COUNTERS.values()} <= set(KPI_HELP)
    m = PipelineMetrics()
    # one row of every KPI measure, so every family is exposed
    rows = {}
    for (t, measure), _ in KPI_COUNTERS.items():
        r = rows.setdefault(t, {"type": t, "dim": "name", "name": "x", "philosophy": "react",
                                "count": 1, "errors": 1, "sums": {}, "maxes": {}})
        if measure not in ("count", "errors"):
            r["sums"][measure] = 1.0
    m.add_kpi_rows(rows.values())
    m.observe_many("tool.call", "grep", "react", [0.1])
    m.observe_freshness(np.array([0.2]))
    text = generate_latest(m.registry).decode()
    fams = list(text_string_to_metric_families(text))
    assert len(fams) > 30
    for f in fams:
        assert f.documentation.strip(), f.name
        if f.type == "counter":
            assert all(s.name.endswith("_total") for s in f.samples), f.name
