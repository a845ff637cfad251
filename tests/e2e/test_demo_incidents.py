"""The demo with incidents, as its user sees it: the alerts it prints are about the incident and
start soon after it in event time, though the worker reads the burst of events (half an hour of
event time published in about a second) one partition's log after another."""

import datetime as dt
import re

from agentflux import analysis


def incident(demo_history, pattern: str) -> tuple[str, dt.datetime, list[dict]]:
    """The incident's target and start (as the demo printed them) and the alerts raised."""
    out = (demo_history.parent / "demo.out").read_text().replace("\n", " ")
    m = re.search(pattern + r"=([\w.-]+) from (\d\d:\d\d:\d\d)", out)
    assert m, out[:2000]
    con = analysis.connect(demo_history)
    first_event = analysis.span(con)[0]
    alerts = analysis.records(analysis.alerts(con))
    con.close()
    start = dt.datetime.combine(first_event.date(), dt.time.fromisoformat(m.group(2)),
                                tzinfo=dt.timezone.utc)
    if start < first_event:  # (the run crossed midnight)
        start += dt.timedelta(days=1)
    return m.group(1), start, alerts


def test_the_error_burst_is_alerted_within_minutes_of_its_start(demo_history):
    tool, start, alerts = incident(demo_history, r"error_burst on tool")
    on_tool = [a for a in alerts if f"tool={tool}" in (a["subject"] or "")]
    assert on_tool, alerts
    first = min(a["starts_at"] for a in on_tool)
    # the failure streak needs five failed calls in a row: seconds to a minute or two of event
    # time; before the detector waited for partitions read behind the others, the first alert
    # came ~28 minutes after the incident's start
    assert dt.timedelta(0) <= first - start < dt.timedelta(minutes=5), (start, first)


def test_the_stalled_model_is_alerted_within_minutes_of_its_start(demo_history):
    # a stalled model completes a call or two a minute per philosophy: its latency is judged on
    # windows pooled until they hold enough calls (before, no window ever did: no alert at all)
    model, start, alerts = incident(demo_history, r"slow_model on model")
    slow = [a for a in alerts if a["rule"] == "model_latency_slo"]
    assert slow and all(f"model={model}" in a["subject"] for a in slow), alerts
    first = min(a["starts_at"] for a in slow)
    assert dt.timedelta(0) <= first - start < dt.timedelta(minutes=5), (start, first)
