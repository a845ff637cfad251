"""The demo with incidents, as its user sees it: the alerts it prints are about the incident and
start soon after it in event time, though the worker reads the burst of events (half an hour of
event time published in about a second) one partition's log after another."""

import datetime as dt
import re

from agentflux import analysis


def test_the_error_burst_is_alerted_within_minutes_of_its_start(demo_history):
    out = (demo_history.parent / "demo.out").read_text().replace("\n", " ")
    m = re.search(r"error_burst on tool=(\w+) from (\d\d:\d\d:\d\d)", out)
    assert m, out[:2000]
    tool = m.group(1)
    con = analysis.connect(demo_history)
    first_event = analysis.span(con)[0]
    alerts = analysis.records(analysis.alerts(con))
    con.close()
    start = dt.datetime.combine(first_event.date(), dt.time.fromisoformat(m.group(2)),
                                tzinfo=dt.timezone.utc)
    if start < first_event:  # (the run crossed midnight)
        start += dt.timedelta(days=1)
    on_tool = [a for a in alerts if f"tool={tool}" in (a["subject"] or "")]
    assert on_tool, alerts
    first = min(a["starts_at"] for a in on_tool)
    # the failure streak needs five failed calls in a row: seconds to a minute or two of event
    # time; before the detector waited for partitions read behind the others, the first alert
    # came ~28 minutes after the incident's start
    assert dt.timedelta(0) <= first - start < dt.timedelta(minutes=5), (start, first)
