"""``agentflux report``: the history of a period as one self-contained HTML file (or Markdown).

Sections, as the monitoring specification lists them: a summary, latency and errors per tool and
model, caching and compression, cost, alerts, pools and autoscaling, resource usage, and the
trends against the previous period of the same length with the direction called out (better or
worse, not only up or down). Every figure comes from :mod:`agentflux.analysis` (latency
percentiles from merged window sketches, rates as ratios of sums); the history is opened
read-only.

The HTML has no external reference: the style is inline and every plot is an SVG drawn by
matplotlib, embedded as a ``data:`` image (its fonts drawn as paths), so the file opens offline,
mails as one attachment, and a page that shows it makes no network request.

The period ends at ``end`` (default: the last event, alert update, prediction or command in the
history, so a report of a finished run is about that run; pass ``end`` for "the last N days until
now") and lasts ``days`` (a
fraction is fine: ``0.25`` is six hours).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import duckdb

from agentflux import analysis as A

# the time buckets of the plots: the smallest giving at most ~48 points over the period
BUCKETS = (("10 seconds", 10), ("30 seconds", 30), ("1 minute", 60), ("5 minutes", 300),
           ("15 minutes", 900), ("30 minutes", 1800), ("1 hour", 3600), ("3 hours", 10800),
           ("6 hours", 21600), ("12 hours", 43200), ("1 day", 86400))

SECTIONS = (("summary", "Summary"), ("latency", "Latency and errors"),
            ("caching", "Caching and compression"), ("cost", "Cost"), ("alerts", "Alerts"),
            ("pools", "Pools and autoscaling"), ("resources", "Resource usage"),
            ("trends", "Trends against the previous period"))

FIGURE_LABELS = {
    "events": "events", "sessions": "sessions", "agents": "agents", "tool_calls": "tool calls",
    "tool_error_rate": "tool error rate", "tool_p95_ms": "tool call p95",
    "llm_calls": "LLM calls", "llm_error_rate": "LLM error rate", "llm_p95_ms": "LLM call p95",
    "cost_usd": "LLM cost", "cost_per_llm_call_usd": "cost per LLM call",
    "cache_hit_rate": "tool-cache hit rate", "prompt_cached_share": "prompt-cache token share",
    "prompt_cache_saved_usd": "saved by prompt caching",
    "compression_ratio": "compression ratio", "compression_tokens_saved": "tokens saved by compression",
    "warm_start_rate": "warm-start rate", "alerts": "alert episodes", "deadletters": "dead letters",
}


# -- formatting -------------------------------------------------------------------------------

def fmt_int(v: Any) -> str:
    return "–" if v is None else f"{int(round(v)):,}"


def fmt_pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def fmt_ms(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v / 1000:,.2f} s" if v >= 10_000 else f"{v:,.1f} ms" if v >= 1 else f"{v:.2f} ms"


def fmt_usd(v: Any) -> str:
    if v is None:
        return "–"
    return f"${v:,.2f}" if abs(v) >= 1 else f"${v:.4f}"


def fmt_num(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def fmt_time(v: Any) -> str:
    return "–" if v is None else v.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


FIGURE_FORMAT: dict[str, Callable[[Any], str]] = {
    "tool_error_rate": fmt_pct, "llm_error_rate": fmt_pct, "cache_hit_rate": fmt_pct,
    "prompt_cached_share": fmt_pct, "warm_start_rate": fmt_pct, "tool_p95_ms": fmt_ms,
    "llm_p95_ms": fmt_ms, "cost_usd": fmt_usd, "cost_per_llm_call_usd": fmt_usd,
    "prompt_cache_saved_usd": fmt_usd, "compression_ratio": lambda v: fmt_num(v) + "x"
    if v is not None else "–"}


def fmt_figure(key: str, v: Any) -> str:
    return FIGURE_FORMAT.get(key, fmt_int)(v)


def fmt_change(t: dict[str, Any]) -> str:
    arrow = {"up": "↑", "down": "↓", "flat": "→", "n/a": ""}[t["direction"]]
    if t["change"] is None:
        return f"{arrow} (from {fmt_figure(t['figure'], t['previous'])})" if arrow else "–"
    return f"{arrow} {100 * t['change']:+.1f} %"


@dataclass
class Column:
    label: str
    key: str
    fmt: Callable[[Any], str] = str
    numeric: bool = True


@dataclass
class Table:
    columns: list[Column]
    rows: list[dict[str, Any]]
    caption: str = ""
    classes: list[str] = field(default_factory=list)  # a CSS class per row ("" for none)


@dataclass
class Figure:
    title: str
    svg: bytes
    alt: str


@dataclass
class Section:
    key: str
    title: str
    parts: list[Any] = field(default_factory=list)  # str (a paragraph), Table, Figure

    def say(self, text: str) -> None:
        self.parts.append(text)


@dataclass
class Report:
    root: str
    start: dt.datetime
    end: dt.datetime
    previous_start: dt.datetime
    days: float
    bucket: str
    generated_at: dt.datetime
    sections: list[Section]
    summary: dict[str, Any]
    previous: dict[str, Any]
    trends: list[dict[str, Any]]


# -- plots ------------------------------------------------------------------------------------

def _figure(width: float = 9.0, height: float = 3.4):
    from matplotlib.figure import Figure as MplFigure
    fig = MplFigure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _time_axis(ax, start: dt.datetime, end: dt.datetime) -> None:
    import matplotlib.dates as mdates
    loc = mdates.AutoDateLocator(minticks=4, maxticks=9)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc, tz=dt.timezone.utc))
    ax.set_xlim(start, end)
    ax.set_xlabel("time (UTC)")
    ax.grid(True, alpha=0.3)


def _svg(fig) -> bytes:
    """The figure as SVG, its text as text in the page's sans-serif (no font file, no path per
    glyph: a third of the size)."""
    import matplotlib
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def _lines(series: dict[str, list[tuple[dt.datetime, float]]], title: str, ylabel: str,
           start: dt.datetime, end: dt.datetime, *, log: bool = False, percent: bool = False,
           alt: str = "") -> Figure:
    fig, ax = _figure()
    for name, points in sorted(series.items()):
        points = [(t, v) for t, v in points if v is not None]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, [100 * y for y in ys] if percent else ys, marker="o", markersize=2.5,
                    linewidth=1.4, label=name)
    if log:
        ax.set_yscale("log")
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_ylabel(ylabel)
    _time_axis(ax, start, end)
    if len(series) > 1:
        ax.legend(fontsize=8, ncols=min(5, len(series)), loc="upper left",
                  bbox_to_anchor=(0, -0.22), frameon=False)
    return Figure(title, _svg(fig), alt or title)


def _series(rows: Iterable[dict[str, Any]], name: str, value: str,
            ) -> dict[str, list[tuple[dt.datetime, float]]]:
    out: dict[str, list[tuple[dt.datetime, float]]] = {}
    for r in rows:
        out.setdefault(str(r[name]), []).append((r["bucket"], r[value]))
    return out


def _top(rows: Sequence[dict[str, Any]], key: str, weight: str, n: int) -> set[str]:
    totals: dict[str, float] = {}
    for r in rows:
        totals[r[key]] = totals.get(r[key], 0) + (r[weight] or 0)
    return set(sorted(totals, key=lambda k: -totals[k])[:n])


def _cost_bars(rows: Sequence[dict[str, Any]], start: dt.datetime, end: dt.datetime,
               width_s: float) -> Figure:
    import numpy as np
    fig, ax = _figure()
    buckets = sorted({r["bucket"] for r in rows})
    bottom = np.zeros(len(buckets))
    idx = {b: i for i, b in enumerate(buckets)}
    for model in sorted({r["model"] for r in rows}):
        vals = np.zeros(len(buckets))
        for r in rows:
            if r["model"] == model:
                vals[idx[r["bucket"]]] += r["cost_usd"] or 0
        ax.bar(buckets, vals, bottom=bottom, width=dt.timedelta(seconds=width_s * 0.9),
               align="edge", label=model)
        bottom += vals
    ax.set_title("LLM cost per interval, by model", loc="left", fontsize=11)
    ax.set_ylabel("USD")
    _time_axis(ax, start, end)
    ax.legend(fontsize=8, ncols=5, loc="upper left", bbox_to_anchor=(0, -0.22), frameon=False)
    return Figure("LLM cost per interval, by model", _svg(fig),
                  "stacked bars of LLM cost per interval for each model")


SEVERITY_COLOURS = {"page": "#c0392b", "critical": "#c0392b", "ticket": "#e67e22",
                    "warning": "#f1c40f", "info": "#3498db"}


def _alert_timeline(rows: Sequence[dict[str, Any]], start: dt.datetime,
                    end: dt.datetime) -> Figure:
    lanes = sorted({(r["rule"], r["subject"] or "") for r in rows})
    fig, ax = _figure(height=max(2.0, 0.9 + 0.32 * len(lanes)))
    for i, lane in enumerate(lanes):
        for r in rows:
            if (r["rule"], r["subject"] or "") == lane:
                s = max(r["starts_at"], start)
                e = min(r["ends_at"] or end, end)
                ax.broken_barh([(s, max(e - s, (end - start) / 400))], (i - 0.35, 0.7),
                               facecolors=SEVERITY_COLOURS.get(r["severity"], "#7f8c8d"))
    ax.set_yticks(range(len(lanes)), [f"{rule} {subject}"[:70] for rule, subject in lanes],
                  fontsize=7)
    ax.set_ylim(-0.7, len(lanes) - 0.3)
    ax.invert_yaxis()
    ax.set_title("Alert episodes (colour: severity; an open bar is still firing)", loc="left",
                 fontsize=11)
    _time_axis(ax, start, end)
    from matplotlib.patches import Patch
    present = sorted({r["severity"] for r in rows})
    ax.legend(handles=[Patch(color=SEVERITY_COLOURS.get(s, "#7f8c8d"), label=s) for s in present],
              fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return Figure("Alert episodes", _svg(fig), "a timeline of alert episodes per rule and subject")


def _trend_bars(trends: Sequence[dict[str, Any]]) -> Figure | None:
    rows = [t for t in trends if t["verdict"] in ("better", "worse") and t["change"] is not None]
    if not rows:
        return None
    fig, ax = _figure(height=max(1.8, 0.8 + 0.35 * len(rows)))
    labels = [FIGURE_LABELS.get(t["figure"], t["figure"]) for t in rows]
    values = [100 * t["change"] for t in rows]
    ax.barh(labels, values, color=["#27ae60" if t["verdict"] == "better" else "#c0392b"
                                   for t in rows])
    ax.axvline(0, color="#333", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("change against the previous period (%)")
    ax.set_title("What moved (green: better, red: worse)", loc="left", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    return Figure("What moved", _svg(fig), "relative change of each figure, better or worse")


# -- the report -------------------------------------------------------------------------------

def choose_bucket(days: float) -> tuple[str, int]:
    seconds = days * 86400
    for name, s in BUCKETS:
        if seconds / s <= 48:
            return name, s
    return BUCKETS[-1]


def period(con: duckdb.DuckDBPyConnection, days: float, end: dt.datetime | None = None
           ) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    """(previous period's start, start, end) of a report of ``days`` ending at ``end`` (default:
    just after the last thing the history holds: an event, an alert's update, a prediction or a
    command; now for an empty history)."""
    if not days > 0 or math.isinf(days):
        raise ValueError(f"days must be a positive number, not {days!r}")
    if end is None:
        last = con.execute("""
SELECT max(t) FROM (SELECT max(ts) AS t FROM events UNION ALL SELECT max(updated_at) FROM alerts
                    UNION ALL SELECT max(issued_at) FROM predictions
                    UNION ALL SELECT max(issued_at) FROM pool_commands)""").fetchall()[0][0]
        end = (last + dt.timedelta(microseconds=1)) if last else dt.datetime.now(dt.timezone.utc)
    elif end.tzinfo is None:
        end = end.replace(tzinfo=dt.timezone.utc)
    length = dt.timedelta(days=days)
    return end - 2 * length, end - length, end


def build(con: duckdb.DuckDBPyConnection, root: str, days: float,
          end: dt.datetime | None = None,
          progress: Callable[[str], None] | None = None) -> Report:
    """Every section's tables, figures and sentences, for the period of ``days`` ending at
    ``end`` and the one before it. ``progress`` is told each section's name as it starts."""
    prev_start, start, end = period(con, days, end)
    bucket, bucket_s = choose_bucket(days)
    step = progress or (lambda _: None)
    sections = {k: Section(k, t) for k, t in SECTIONS}

    step("summary")
    current = A.summary(con, start, end)
    previous = A.summary(con, prev_start, start)
    trends = A.trends(current, previous)
    _summary(sections["summary"], current, trends)

    step("latency")
    _latency(sections["latency"], con, start, end, bucket)
    step("caching")
    _caching(sections["caching"], con, start, end, bucket)
    step("cost")
    _cost(sections["cost"], con, start, end, bucket, bucket_s)
    step("alerts")
    _alerts(sections["alerts"], con, start, end)
    step("pools")
    _pools(sections["pools"], con, start, end, bucket)
    step("resources")
    _resources(sections["resources"], con, start, end, bucket)
    step("trends")
    _trends(sections["trends"], trends, prev_start, start)
    return Report(root=root, start=start, end=end, previous_start=prev_start, days=days,
                  bucket=bucket, generated_at=dt.datetime.now(dt.timezone.utc),
                  sections=list(sections.values()), summary=current, previous=previous,
                  trends=trends)


def _summary(sec: Section, s: dict[str, Any], trends: Sequence[dict[str, Any]]) -> None:
    if not s["events"]:
        sec.say("No events in this period: every section below is empty. Check the period "
                "(--days, --end) against the history's span (`agentflux sql --history PATH "
                "'SELECT min(ts), max(ts) FROM events'`).")
    rows = [{"figure": FIGURE_LABELS.get(t["figure"], t["figure"]),
             "current": fmt_figure(t["figure"], t["current"]),
             "previous": fmt_figure(t["figure"], t["previous"]), "change": fmt_change(t),
             "verdict": t["verdict"]} for t in trends]
    sec.parts.append(Table([Column("figure", "figure", numeric=False),
                            Column("this period", "current"), Column("previous", "previous"),
                            Column("change", "change"), Column("", "verdict", numeric=False)],
                           rows, classes=[t["verdict"] for t in trends]))
    worse = [t for t in trends if t["verdict"] == "worse"]
    better = [t for t in trends if t["verdict"] == "better"]
    if worse:
        sec.say("Worse than the previous period: " + "; ".join(
            f"{FIGURE_LABELS.get(t['figure'], t['figure'])} {t['direction']} "
            f"({fmt_figure(t['figure'], t['previous'])} → {fmt_figure(t['figure'], t['current'])})"
            for t in worse) + ".")
    if better:
        sec.say("Better: " + "; ".join(
            f"{FIGURE_LABELS.get(t['figure'], t['figure'])} {t['direction']} "
            f"({fmt_figure(t['figure'], t['previous'])} → {fmt_figure(t['figure'], t['current'])})"
            for t in better) + ".")
    if not worse and not better and s["events"]:
        sec.say("No figure moved by more than 5 % against the previous period (or it had no "
                "data).")


LATENCY_COLUMNS = [Column("type", "type", numeric=False), Column("name", "name", numeric=False),
                   Column("calls", "calls", fmt_int), Column("errors", "error_rate", fmt_pct),
                   Column("p50", "p50_ms", fmt_ms), Column("p95", "p95_ms", fmt_ms),
                   Column("p99", "p99_ms", fmt_ms), Column("max", "max_ms", fmt_ms)]


def _latency(sec: Section, con, start, end, bucket) -> None:
    rows = A.records(A.latency(con, start, end))
    if not rows:
        sec.say("No tool or LLM calls in this period.")
        return
    sec.say("Percentiles from the pipeline's window sketches merged over the period (not "
            "averages of window percentiles), within 1 % relative accuracy.")
    sec.parts.append(Table(LATENCY_COLUMNS, rows))
    over = A.records(A.latency(con, start, end, bucket=bucket))
    for t, what in (("tool.call", "tool"), ("llm.call", "model")):
        these = [r for r in over if r["type"] == t]
        if these:
            sec.parts.append(_lines(_series(these, "name", "p95_ms"),
                                    f"p95 latency per {what} ({bucket} intervals)",
                                    "p95 (ms, log scale)", start, end, log=True))
    tools = [r for r in over if r["type"] == "tool.call"]
    if any(r["errors"] for r in tools):
        sec.parts.append(_lines(_series(tools, "name", "error_rate"),
                                f"error rate per tool ({bucket} intervals)", "errors (%)",
                                start, end, percent=True))
    slow = A.records(A.slowest_sessions(con, start, end, limit=10))
    if slow:
        sec.parts.append(Table([Column("session", "session_id", numeric=False),
                                Column("agent", "agent_id", numeric=False),
                                Column("philosophy", "philosophy", numeric=False),
                                Column("calls", "calls", fmt_int),
                                Column("errors", "errors", fmt_int),
                                Column("time in calls", "total_ms", fmt_ms),
                                Column("slowest call", "slowest_ms", fmt_ms),
                                Column("cost", "cost_usd", fmt_usd)], slow,
                               caption="The ten sessions with the most time in calls"))


def _caching(sec: Section, con, start, end, bucket) -> None:
    caches = A.records(A.cache_hit_rates(con, start, end))
    if caches:
        sec.parts.append(Table([Column("cache", "cache", numeric=False),
                                Column("hits", "hits", fmt_int),
                                Column("misses", "misses", fmt_int),
                                Column("hit rate", "hit_rate", fmt_pct),
                                Column("expired", "expired", fmt_int)], caches,
                               caption="Runtime caches"))
        over = A.records(A.cache_hit_rates(con, start, end, bucket=bucket))
        sec.parts.append(_lines(_series(over, "cache", "hit_rate"),
                                f"cache hit rate ({bucket} intervals)", "hit rate (%)", start,
                                end, percent=True))
    else:
        sec.say("No cache lookups or cache statistics in this period.")
    prompt = A.records(A.prompt_caching(con, start, end))
    if prompt:
        sec.parts.append(Table([Column("model", "model", numeric=False),
                                Column("input tokens", "input_tokens", fmt_int),
                                Column("read from cache", "cache_read_tokens", fmt_int),
                                Column("cached share", "cached_share", fmt_pct),
                                Column("cost", "cost_usd", fmt_usd),
                                Column("saved by the cache", "saved_usd", fmt_usd)], prompt,
                               caption="Provider prompt caching (saved: cache reads at the read "
                                       "price instead of the input price, less the write "
                                       "premium)"))
    else:
        sec.say("No LLM calls in this period, so no prompt caching.")
    comp = A.records(A.compression(con, start, end))
    if comp and comp[0]["compressions"]:
        sec.parts.append(Table([Column("compressions", "compressions", fmt_int),
                                Column("tokens before", "tokens_before", fmt_int),
                                Column("tokens after", "tokens_after", fmt_int),
                                Column("tokens saved", "tokens_saved", fmt_int),
                                Column("ratio", "ratio", lambda v: fmt_num(v) + "x"),
                                Column("quality", "quality", fmt_num)], comp,
                               caption="Context compression"))
    else:
        sec.say("No context compressions in this period.")


def _cost(sec: Section, con, start, end, bucket, bucket_s) -> None:
    by_model = A.records(A.cost(con, start, end, by="model"))
    if not by_model:
        sec.say("No LLM calls in this period.")
        return
    cols = [Column("calls", "calls", fmt_int), Column("input tokens", "input_tokens", fmt_int),
            Column("output tokens", "output_tokens", fmt_int), Column("cost", "cost_usd", fmt_usd)]
    sec.parts.append(Table([Column("model", "model", numeric=False), *cols], by_model,
                           caption="Per model"))
    over = A.records(A.cost(con, start, end, by="model", bucket=bucket))
    sec.parts.append(_cost_bars(over, start, end, bucket_s))
    agents = A.records(A.cost(con, start, end, by="agent"))[:10]
    sec.parts.append(Table([Column("agent", "agent", numeric=False), *cols], agents,
                           caption="The ten agents that cost the most"))
    sessions = A.records(A.cost(con, start, end, by="session"))[:10]
    sec.parts.append(Table([Column("session", "session", numeric=False), *cols], sessions,
                           caption="The ten sessions that cost the most"))


def _alerts(sec: Section, con, start, end) -> None:
    rows = A.records(A.alerts(con, start, end))
    if not rows:
        sec.say("No alerts fired in this period.")
        return
    firing = sum(r["ends_at"] is None for r in rows)
    sec.say(f"{len(rows)} alert episodes, {firing} still firing at their last update.")
    sec.parts.append(_alert_timeline(rows, start, end))
    sec.parts.append(Table([Column("rule", "rule", numeric=False),
                            Column("severity", "severity", numeric=False),
                            Column("subject", "subject", numeric=False),
                            Column("started (UTC)", "starts_at", fmt_time, numeric=False),
                            Column("ended (UTC)", "ends_at", fmt_time, numeric=False),
                            Column("value", "value", fmt_num),
                            Column("threshold", "threshold", fmt_num),
                            Column("summary", "summary", numeric=False)], rows))


def _pools(sec: Section, con, start, end, bucket) -> None:
    warm = A.records(A.warm_starts(con, start, end))
    if warm:
        sec.parts.append(Table([Column("pool", "pool", numeric=False),
                                Column("acquisitions", "acquisitions", fmt_int),
                                Column("warm", "warm", fmt_int),
                                Column("warm-start rate", "warm_start_rate", fmt_pct)], warm))
        over = A.records(A.warm_starts(con, start, end, bucket=bucket))
        sec.parts.append(_lines(_series(over, "pool", "warm_start_rate"),
                                f"warm-start rate per pool ({bucket} intervals)",
                                "warm starts (%)", start, end, percent=True))
        sizes = A.records(A.pool_sizes(con, start, end, bucket=bucket))
        if sizes:
            sec.parts.append(_lines(
                {**{f"{p} in use": v for p, v in _series(sizes, "pool", "in_use").items()},
                 **{f"{p} target": v for p, v in _series(sizes, "pool", "target").items()}},
                f"containers in use (mean) and target per pool ({bucket} intervals)",
                "containers", start, end))
    else:
        sec.say("No pool acquisitions in this period.")
    commands = A.records(A.pool_commands(con, start, end))
    if commands:
        sec.say(f"{len(commands)} autoscaler commands issued in this period"
                + ("; the last ten:" if len(commands) > 10 else ":"))
        sec.parts.append(Table([Column("issued (UTC)", "issued_at", fmt_time, numeric=False),
                                Column("pool", "pool", numeric=False),
                                Column("action", "action", numeric=False),
                                Column("target", "target", fmt_int),
                                Column("bounds", "bounds", numeric=False),
                                Column("reason", "reason", numeric=False)],
                               [{**c, "bounds": f"{c['min_size']}–{c['max_size']}"}
                                for c in commands[-10:]]))
    else:
        sec.say("No autoscaler commands in this period (no autoscaler, or no change of "
                "target).")


def _resources(sec: Section, con, start, end, bucket) -> None:
    usage = A.records(A.resource_usage(con, start, end))
    if not usage:
        sec.say("No resource samples in this period.")
    else:
        sec.parts.append(Table([Column("philosophy", "philosophy", numeric=False),
                                Column("samples", "samples", fmt_int),
                                Column("CPU mean", "cpu_percent_mean", lambda v: fmt_num(v, 1) + " %"),
                                Column("CPU p90", "cpu_percent_p90", lambda v: fmt_num(v, 1) + " %"),
                                Column("memory mean", "memory_mb_mean", lambda v: fmt_num(v, 0) + " MB"),
                                Column("memory p90", "memory_mb_p90", lambda v: fmt_num(v, 0) + " MB"),
                                Column("memory max", "memory_percent_max", lambda v: fmt_num(v, 1) + " %")],
                               usage))
        over = A.records(A.resource_usage(con, start, end, bucket=bucket))
        sec.parts.append(_lines(_series(over, "philosophy", "cpu_percent_p90"),
                                f"CPU p90 per philosophy ({bucket} intervals)", "CPU (%)",
                                start, end))
        sec.parts.append(_lines(_series(over, "philosophy", "memory_percent_p90"),
                                f"memory p90 per philosophy ({bucket} intervals)", "memory (%)",
                                start, end))
    preds = A.records(A.predictions(con, start, end))
    if preds:
        sec.parts.append(Table([Column("philosophy", "philosophy", numeric=False),
                                Column("CPU recommended", "cpu_target", lambda v: fmt_num(v, 1) + " %"),
                                Column("mean x 1.2", "cpu_mean_x_1_2", lambda v: fmt_num(v, 1) + " %"),
                                Column("observed p90", "cpu_p90", lambda v: fmt_num(v, 1) + " %"),
                                Column("observed max", "cpu_max", lambda v: fmt_num(v, 1) + " %"),
                                Column("memory recommended", "memory_mb_target", lambda v: fmt_num(v, 0) + " MB"),
                                Column("observed p90", "memory_mb_p90", lambda v: fmt_num(v, 0) + " MB"),
                                Column("confidence", "confidence", fmt_num)], preds,
                               caption="The predictor's last recommendation per philosophy "
                                       "against the usage observed in the period"))
    else:
        sec.say("No resource predictions in this period.")


def _trends(sec: Section, trends, prev_start, start) -> None:
    sec.say(f"Against the previous period ({fmt_time(prev_start)} to {fmt_time(start)} UTC, "
            "the same length). A change within 5 % is flat; volumes (events, calls, money and "
            "tokens saved) are neither better nor worse.")
    bars = _trend_bars(trends)
    if bars is not None:
        sec.parts.append(bars)
    sec.parts.append(Table([Column("figure", "figure", numeric=False),
                            Column("this period", "current"), Column("previous", "previous"),
                            Column("change", "change"), Column("direction", "direction"),
                            Column("verdict", "verdict", numeric=False)],
                           [{"figure": FIGURE_LABELS.get(t["figure"], t["figure"]),
                             "current": fmt_figure(t["figure"], t["current"]),
                             "previous": fmt_figure(t["figure"], t["previous"]),
                             "change": fmt_change(t), "direction": t["direction"],
                             "verdict": t["verdict"]} for t in trends],
                           classes=[t["verdict"] for t in trends]))


# -- rendering --------------------------------------------------------------------------------

CSS = """
:root { --fg: #1d2630; --muted: #5b6773; --line: #d9dee3; --bg: #ffffff; --band: #f5f7f9;
        --better: #1e8449; --worse: #b03a2e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; max-width: 1100px; padding: 24px 32px 64px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 36px 0 8px;
     padding-top: 12px; border-top: 1px solid var(--line); }
header p, .meta { color: var(--muted); margin: 2px 0; }
nav { margin: 14px 0 0; display: flex; flex-wrap: wrap; gap: 6px 14px; }
nav a { color: #2557a7; text-decoration: none; } nav a:hover { text-decoration: underline; }
table { border-collapse: collapse; margin: 10px 0 16px; width: 100%; font-size: 13px; }
caption { text-align: left; color: var(--muted); padding: 4px 0; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left;
         vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.better td:last-child { color: var(--better); font-weight: 600; }
tr.worse td:last-child { color: var(--worse); font-weight: 600; }
figure { margin: 12px 0 20px; } figure img { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def _cell(c: Column, v: Any) -> str:
    return "–" if v is None else c.fmt(v)


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c.label)}</th>" for c in t.columns)
    body = []
    for i, r in enumerate(t.rows):
        cls = t.classes[i] if i < len(t.classes) else ""
        tr = f'<tr class="{cls}">' if cls else "<tr>"
        cells = "".join(('<td class="n">' if c.numeric else "<td>")
                        + html.escape(_cell(c, r.get(c.key))) + "</td>" for c in t.columns)
        body.append(tr + cells + "</tr>")
    cap = f"<caption>{html.escape(t.caption)}</caption>" if t.caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_figure(f: Figure) -> str:
    data = base64.b64encode(f.svg).decode()
    return (f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{html.escape(f.alt)}">'
            "</figure>")


def _heading(r: Report) -> tuple[str, str]:
    title = f"agentflux report: {fmt_time(r.start)} to {fmt_time(r.end)} UTC"
    hours = r.days * 24
    length = (f"{r.days:g} day{'s' if r.days != 1 else ''}" if r.days >= 1
              else f"{hours:.3g} hour{'s' if hours != 1 else ''}" if hours >= 1
              else f"{hours * 60:.3g} minutes")
    sub = (f"{length} of the history at {r.root}; plots in {r.bucket} intervals; compared with "
           f"the {length} before ({fmt_time(r.previous_start)} to {fmt_time(r.start)}).")
    return title, sub


def render_html(r: Report) -> str:
    title, sub = _heading(r)
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
           f"<header><h1>{html.escape(title)}</h1><p>{html.escape(sub)}</p>",
           "<nav>" + "".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>'
                             for s in r.sections) + "</nav></header>"]
    for s in r.sections:
        out.append(f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>')
        for p in s.parts:
            if isinstance(p, Table):
                out.append(_html_table(p))
            elif isinstance(p, Figure):
                out.append(_html_figure(p))
            else:
                out.append(f"<p>{html.escape(p)}</p>")
        out.append("</section>")
    out.append(f"<footer>Generated {fmt_time(r.generated_at)} UTC by agentflux report from the "
               "history's DuckDB views; self-contained (no network requests).</footer>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _md_cell(v: str) -> str:
    return v.replace("|", "\\|").replace("\n", " ")


def render_markdown(r: Report) -> str:
    title, sub = _heading(r)
    out = [f"# {title}", "", sub, ""]
    for s in r.sections:
        out += [f"## {s.title}", ""]
        for p in s.parts:
            if isinstance(p, Table):
                if p.caption:
                    out += [f"*{p.caption}*", ""]
                out.append("| " + " | ".join(c.label or " " for c in p.columns) + " |")
                out.append("|" + "|".join("---:" if c.numeric else "---" for c in p.columns) + "|")
                for row in p.rows:
                    out.append("| " + " | ".join(_md_cell(_cell(c, row.get(c.key)))
                                                 for c in p.columns) + " |")
                out.append("")
            elif isinstance(p, Figure):
                continue  # plots: the HTML format
            else:
                out += [p, ""]
    out.append(f"Generated {fmt_time(r.generated_at)} UTC by agentflux report (plots: "
               "`--format html`).")
    return "\n".join(out) + "\n"


__all__ = ["Report", "build", "choose_bucket", "period", "render_html", "render_markdown"]
