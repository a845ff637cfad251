"""Label values in /metrics come from events (tool, model and philosophy names): a hostile or
broken runtime must not be able to put control characters or unbounded strings into them."""

import unicodedata

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agentflux.sinks.prometheus import MAX_LABEL_CHARS, PipelineMetrics

HOSTILE = "web\nsearch\x1b[31m\r\x00\x7f\x85\u2028\ud800" + "x" * 5000  # \ud800: not UTF-8


def exposed_label_values(metrics: PipelineMetrics) -> list[str]:
    text = generate_latest(metrics.registry).decode()
    return [v for fam in text_string_to_metric_families(text) for s in fam.samples
            for v in s.labels.values()]


def test_label_values_have_no_control_characters_and_a_bounded_length():
    m = PipelineMetrics()
    m.observe_many("tool.call", HOSTILE, "react\t", [0.1, 0.2])
    m.count_events({"tool.call\x00": 3})
    m.count_deadletters("bad\nreason")
    values = exposed_label_values(m)
    assert values
    for v in values:
        assert not any(unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs") for c in v), repr(v)
        assert len(v) <= MAX_LABEL_CHARS
    assert any(v.startswith("web") and "search" in v for v in values)  # readable, not dropped


def test_values_that_differ_only_in_control_characters_stay_one_series():
    m = PipelineMetrics()
    m.observe_many("tool.call", "grep\n", "react", [0.1])
    m.observe_many("tool.call", "grep\r", "react", [0.2])
    text = generate_latest(m.registry).decode()
    counts = [s for fam in text_string_to_metric_families(text) for s in fam.samples
              if s.name == "agentflux_span_duration_seconds_count"]
    assert len(counts) == 1 and counts[0].value == 2  # Prometheus rejects duplicate series


def test_ordinary_values_are_unchanged():
    m = PipelineMetrics()
    m.observe_many("llm.call", "claude-sonnet-4 (eu) — ü", "chain_of_thought", [1.0])
    assert "claude-sonnet-4 (eu) — ü" in exposed_label_values(m)


def test_span_series_are_capped_and_the_overflow_keeps_totals_and_is_counted():
    from agentflux.sinks.prometheus import MAX_SPAN_SERIES, OVERFLOW
    import numpy as np
    m = PipelineMetrics()
    n_tools = MAX_SPAN_SERIES + 500
    spans = [("tool.call", f"tool-{i}", "react") for i in range(n_tools)]
    groups = np.repeat(np.arange(n_tools), 2)  # two spans per tool
    m.observe_grouped(spans, np.full(groups.size, 0.05), groups)
    text = generate_latest(m.registry).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    counts = [s for s in fams["agentflux_span_duration_seconds"].samples
              if s.name.endswith("_count")]
    assert len(counts) == MAX_SPAN_SERIES + 1  # the capped series and one overflow series
    assert sum(s.value for s in counts) == 2 * n_tools  # no span lost from the totals
    overflow = [s for s in counts if s.labels["name"] == OVERFLOW]
    assert overflow[0].labels == {"type": "tool.call", "name": OVERFLOW, "philosophy": OVERFLOW}
    assert overflow[0].value == 2 * 500
    assert m.registry.get_sample_value("agentflux_span_series_overflow_total",
                                       {"type": "tool.call"}) == 2 * 500
    # a series that existed before the cap keeps being updated in place
    m.observe_many("tool.call", "tool-0", "react", [0.05])
    assert m.registry.get_sample_value("agentflux_span_duration_seconds_count",
                                       {"type": "tool.call", "name": "tool-0",
                                        "philosophy": "react"}) == 3


def test_deadletter_reasons_are_a_bounded_set_of_identifiers():
    from agentflux.sinks.prometheus import MAX_DEADLETTER_REASONS
    m = PipelineMetrics()
    m.count_deadletters("invalid_json")
    m.count_deadletters("event 0190... is bad: field x")  # a detail is never a label
    for i in range(3 * MAX_DEADLETTER_REASONS):
        m.count_deadletters(f"reason_{i}")
    reasons = [s.labels["reason"] for fam in text_string_to_metric_families(
        generate_latest(m.registry).decode()) for s in fam.samples
        if s.name == "agentflux_deadletter_total"]
    assert len(reasons) <= MAX_DEADLETTER_REASONS
    assert "invalid_json" in reasons and "other" in reasons
    total = sum(m.registry.get_sample_value("agentflux_deadletter_total", {"reason": r})
                for r in reasons)
    assert total == 2 + 3 * MAX_DEADLETTER_REASONS  # every dead letter still counted


def test_no_session_event_or_trace_id_is_ever_a_label():
    from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
    from agentflux.streams.frame import EventFrame
    evs = list(SyntheticRuntime(SimConfig(events=3000, agents=8, seed=5)).events())
    frame = EventFrame.from_wire(evs, 0)
    m = PipelineMetrics()
    idx, keys = frame.spans()
    import numpy as np
    has = ~np.isnan(frame.duration_ms)
    m.observe_grouped(keys, frame.duration_ms[has] / 1000, idx[has])
    m.observe_exemplars(keys, idx, frame.duration_ms, frame.strings["trace_id"], frame.ts)
    m.count_events(frame.type_counts())
    ids = {e[k] for e in evs for k in ("id", "session_id", "agent_id") if e.get(k)}
    ids |= {e["trace_id"] for e in evs if e.get("trace_id")}
    values = set(exposed_label_values(m))
    assert values and not values & ids


def test_kpi_families_past_their_cap_fold_into_an_overflow_series_with_exact_totals():
    from agentflux.sinks.prometheus import MAX_KPI_SERIES, OVERFLOW
    m = PipelineMetrics()
    n = MAX_KPI_SERIES + 300
    m.add_kpi_rows({"type": "tool.call", "dim": "name", "name": f"tool-{i}",
                    "philosophy": "react", "count": 2, "errors": 1, "sums": {}, "maxes": {}}
                   for i in range(n))
    fams = {f.name: f for f in text_string_to_metric_families(
        generate_latest(m.registry).decode())}
    calls = fams["agentflux_tool_calls"].samples
    assert len(calls) == MAX_KPI_SERIES + 1
    assert sum(s.value for s in calls) == 2 * n
    over = [s for s in calls if s.labels["tool"] == OVERFLOW]
    assert over[0].labels["philosophy"] == OVERFLOW and over[0].value == 2 * 300
    assert sum(s.value for s in fams["agentflux_tool_call_errors"].samples) == n
    assert m.registry.get_sample_value("agentflux_kpi_series_overflow_total") == 2 * 300
