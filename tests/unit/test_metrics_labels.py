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
