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
    assert reg.get_sample_value("agentflux_events_total", {"type": "tool.call"}) == 5
    assert reg.get_sample_value("agentflux_deadletter_total", {"reason": "invalid_json"}) == 1
    assert reg.get_sample_value("agentflux_consumer_lag",
                                {"topic": "agentflux.events", "partition": "0"}) == 7
