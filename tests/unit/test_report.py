"""agentflux report and agentflux.analysis without a broker: the trend verdicts, the period and
bucket arithmetic, rendering (self-contained, escaped), an empty history, and the CLI's user
errors. The report over a real history, rendered in Chromium: tests/e2e/test_report.py."""

import datetime as dt
import re

import pytest

from agentflux import analysis, report
from agentflux.cli import main
from agentflux.sinks.history import History

UTC = dt.timezone.utc


def test_trends_call_the_direction_and_whether_it_is_better():
    current = {"tool_error_rate": 0.20, "warm_start_rate": 0.90, "events": 100,
               "cache_hit_rate": 0.91, "alerts": 3, "llm_p95_ms": None, "deadletters": 0}
    previous = {"tool_error_rate": 0.10, "warm_start_rate": 0.99, "events": 50,
                "cache_hit_rate": 0.90, "alerts": 0, "llm_p95_ms": 900.0, "deadletters": 0}
    t = {x["figure"]: x for x in analysis.trends(current, previous)}
    assert t["tool_error_rate"]["direction"] == "up" and t["tool_error_rate"]["verdict"] == "worse"
    assert t["tool_error_rate"]["change"] == pytest.approx(1.0)
    # a rate where higher is better, going down
    assert (t["warm_start_rate"]["direction"], t["warm_start_rate"]["verdict"]) == ("down", "worse")
    # volumes are neither better nor worse; a change within 5 % is flat
    assert (t["events"]["direction"], t["events"]["verdict"]) == ("up", "neutral")
    assert (t["cache_hit_rate"]["direction"], t["cache_hit_rate"]["verdict"]) == ("flat", "neutral")
    # from 0: no ratio, still up and worse
    assert (t["alerts"]["change"], t["alerts"]["direction"], t["alerts"]["verdict"]) == \
        (None, "up", "worse")
    assert t["llm_p95_ms"]["direction"] == "n/a" and t["deadletters"]["direction"] == "flat"
    better = analysis.trends({"tool_error_rate": 0.05}, {"tool_error_rate": 0.10})[0]
    assert better["verdict"] == "better"


def test_bucket_keeps_plots_readable_and_period_is_two_equal_spans():
    assert report.choose_bucket(7) == ("6 hours", 21600)  # 28 points
    assert report.choose_bucket(1) == ("30 minutes", 1800)
    assert report.choose_bucket(0.01)[1] <= 0.01 * 86400 / 10
    assert report.choose_bucket(365) == ("1 day", 86400)
    con = analysis.duckdb.connect()
    end = dt.datetime(2026, 11, 27, 12, tzinfo=UTC)
    prev, start, e = report.period(con, 2, end)
    assert (e - start) == (start - prev) == dt.timedelta(days=2) and e == end
    # a naive end is UTC
    assert report.period(con, 1, dt.datetime(2026, 1, 2))[2] == dt.datetime(2026, 1, 2, tzinfo=UTC)
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="positive"):
            report.period(con, bad, end)


def _hostile_report() -> report.Report:
    t0 = dt.datetime(2026, 11, 27, tzinfo=UTC)
    sec = report.Section("latency", "Latency and errors")
    sec.say("a <b>paragraph</b> & more")
    sec.parts.append(report.Table(
        [report.Column("name", "name", numeric=False), report.Column("p95", "p95", report.fmt_ms)],
        [{"name": "<script>alert(1)</script>|pipe", "p95": 12.5}, {"name": "x", "p95": None}]))
    sec.parts.append(report._lines({"a": [(t0, 1.0), (t0 + dt.timedelta(minutes=1), 2.0)]},
                                   "a plot", "ms", t0, t0 + dt.timedelta(minutes=2)))
    return report.Report(root="/h", start=t0, end=t0 + dt.timedelta(hours=6),
                         previous_start=t0 - dt.timedelta(hours=6), days=0.25, bucket="15 minutes",
                         generated_at=t0, sections=[sec], summary={}, previous={}, trends=[])


def test_html_is_self_contained_and_escapes_what_the_history_holds():
    html = report.render_html(_hostile_report())
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "a &lt;b&gt;paragraph&lt;/b&gt; &amp; more" in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == 1 and srcs[0].startswith("data:image/svg+xml;base64,")
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", html)
    assert "6 hours of the history at /h" in html
    import base64
    svg = base64.b64decode(srcs[0].split(",", 1)[1]).decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "a plot" in svg
    # (namespaces are names, not fetched; a reference would be an href or a url(...))
    assert not re.search(r'href="(?!#)', svg) and "url(http" not in svg


def test_markdown_escapes_pipes_and_leaves_plots_to_html():
    md = report.render_markdown(_hostile_report())
    row = next(line for line in md.splitlines() if "alert(1)" in line)
    assert "\\|pipe" in row and row.count(" | ") == 1  # one column break, the pipe escaped
    assert "| x | – |" in md and "12.5 ms" in md
    assert "svg" not in md


def test_an_empty_history_gives_a_report_that_says_so(tmp_path, capsys):
    root = tmp_path / "h"
    History(str(root)).init()
    out = tmp_path / "r.html"
    assert main(["report", "--history", str(root), "--days", "1", "--out", str(out)]) == 0
    html = out.read_text()
    for sentence in ("No events in this period", "No tool or LLM calls in this period",
                     "No alerts fired in this period", "No pool acquisitions in this period",
                     "No resource samples in this period"):
        assert sentence in html
    assert "<img" not in html
    assert "0 events" in capsys.readouterr().out.replace("\n", "")


@pytest.mark.parametrize("args, message", [
    (["--history", "{missing}"], "no history at"),
    (["--history", "{root}", "--days", "0"], "--days 0: give a positive number"),
    (["--history", "{root}", "--days", "nan"], "give a positive number"),
    (["--history", "{root}", "--end", "last tuesday"], "--end last tuesday: not an ISO 8601"),
    (["--history", "{root}", "--out", "{tmp}"], "is a directory"),
    (["--history", "{root}", "--out", "{tmp}/no/such/dir/r.html"], "cannot write"),
])
def test_user_errors_are_one_line_with_the_fix(tmp_path, capsys, args, message):
    root = tmp_path / "h"
    History(str(root)).init()
    argv = ["report"] + [a.format(missing=tmp_path / "nope", root=root, tmp=tmp_path)
                         for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_an_alert_still_firing_belongs_to_every_period_after_its_start():
    import datetime as dt

    import duckdb

    from agentflux import analysis
    con = duckdb.connect()
    con.sql("""CREATE TABLE alerts (fingerprint VARCHAR, status VARCHAR, rule VARCHAR,
               kind VARCHAR, severity VARCHAR, labels VARCHAR, annotations VARCHAR,
               starts_at TIMESTAMPTZ, ends_at TIMESTAMPTZ, updated_at TIMESTAMPTZ,
               value DOUBLE, threshold DOUBLE)""")
    t = dt.datetime(2026, 11, 27, 10, tzinfo=dt.timezone.utc)
    h = dt.timedelta(hours=1)
    labels = '{"alertname": "x", "severity": "page", "tool": "web_search"}'
    rows = [("still", "firing", t, None, t),  # fired at 10:00, never resolved
            ("over", "firing", t, None, t), ("over", "resolved", t, t + h / 2, t + h / 2),
            ("later", "firing", t + 3 * h, None, t + 3 * h)]
    for fp, status, starts, ends, updated in rows:
        con.execute("INSERT INTO alerts VALUES (?, ?, 'r', 'k', 'page', ?, '{}', ?, ?, ?, 1, 0)",
                    [fp, status, labels, starts, ends, updated])
    got = analysis.records(analysis.alerts(con, t + 2 * h, t + 3 * h))
    assert [(a["fingerprint"], a["status"]) for a in got] == [("still", "firing")]
    assert got[0]["subject"] == "tool=web_search"
    got = analysis.records(analysis.alerts(con, t, t + h))  # the two that started then
    assert sorted(a["fingerprint"] for a in got) == ["over", "still"]
