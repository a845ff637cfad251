"""A real Prometheus (Debian's ``prometheus`` 2.42) scraping a real worker on the real broker:
the KPI series read back through the query API equal what was sent, exemplars carry the
events' trace ids, the exposition passes ``promtool check metrics``, and 10,000 distinct tool
names keep the series count bounded with the overflow counted (the failure detector's keys
too). A missing ``prometheus`` or
``promtool`` fails (the Debian package ``prometheus``), it never skips."""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml

from agentflux.agents.failures import load_rules
from agentflux.harness import WorkerProcess, wait_until
from agentflux.localprom import LocalPrometheus, PrometheusMissing, promtool
from agentflux.runtime.emitter import Emitter
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.sinks.prometheus import MAX_KPI_SERIES, MAX_SPAN_SERIES, OVERFLOW

EVENTS_ROWS = 'agentflux_history_rows{table="events"}'
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


@pytest.fixture
def worker(settings, tmp_path):
    w = WorkerProcess(settings, log_path=tmp_path / "worker.log")
    yield w
    w.stop()


@pytest.fixture
def start_prometheus(tmp_path):
    started: list[LocalPrometheus] = []

    def start(w: WorkerProcess, rule_files=()) -> LocalPrometheus:
        target = f"{w.settings.metrics_host}:{w.settings.metrics_port}"
        prom = LocalPrometheus(tmp_path / "prometheus", [target], scrape_interval_s=1.0,
                               rule_files=rule_files)
        try:
            started.append(prom.start())
        except PrometheusMissing as exc:
            pytest.fail(str(exc), pytrace=False)
        return prom

    yield start
    for p in started:
        p.stop()


def emit_all(settings, events) -> None:
    with Emitter(settings) as em:
        for e in events:
            assert em.emit(e)
        assert em.flush(60)
        assert em.stats().acked == len(events)


def landed_with_windows(m, n):
    return (m.get(EVENTS_ROWS, 0) >= n and m.get("agentflux_open_windows", 1) == 0
            and m.get("agentflux_kpi_windows_total", 0) > 0)


def prom_equals(prom: LocalPrometheus, expr: str, want: float, deadline_s: float = 60.0) -> None:
    """Wait until the instant query ``expr`` returns ``want`` (scrapes take a few seconds)."""
    wait_until(lambda: prom.value(expr) == want, deadline_s,
               f"Prometheus to return {want} for {expr} (last: {prom.value(expr)})",
               interval_s=0.25)


def test_prometheus_reads_the_workers_kpi_series_and_exemplars(settings, worker,
                                                               start_prometheus):
    start = time.time_ns() - 3 * 3600 * 10**9  # past event time: every window closes
    evs = list(SyntheticRuntime(SimConfig(events=4000, agents=8, seed=321,
                                          start_ns=start)).events())
    for i, e in enumerate(evs):  # every 7th tool call fails
        if e["type"] == "tool.call" and i % 7 == 0:
            e["attrs"] = {**e["attrs"], "status": "error", "error": "boom"}
    worker.start()
    prom = start_prometheus(worker, [RULES / "recording.rules.yml", RULES / "alerting.rules.yml"])
    emit_all(settings, evs)
    worker.wait_for(lambda m: landed_with_windows(m, len(evs)), 120, "events and windows landed")

    # counters of events, by type, as sent
    by_type = Counter(e["type"] for e in evs)
    prom_equals(prom, "sum(agentflux_events_total)", len(evs))
    got = {r["metric"]["type"]: float(r["value"][1])
           for r in prom.query("sum by (type) (agentflux_events_total)")}
    assert got == {t: float(n) for t, n in by_type.items()}

    # KPI series from closed windows: tool calls per tool and their failures, as sent
    tools = Counter(e["attrs"]["tool"] for e in evs if e["type"] == "tool.call")
    worker.wait_for(lambda m: sum(v for k, v in m.items()
                                  if k.startswith("agentflux_tool_calls_total{")) == sum(
                                      tools.values()), 60, "every tool call in the KPI counters")
    prom_equals(prom, "sum(agentflux_tool_calls_total)", sum(tools.values()))
    got = {r["metric"]["tool"]: float(r["value"][1])
           for r in prom.query("sum by (tool) (agentflux_tool_calls_total)")}
    assert got == {t: float(n) for t, n in tools.items()}
    failed = sum(1 for e in evs if e["type"] == "tool.call" and e["attrs"]["status"] == "error")
    assert prom.value("sum(agentflux_tool_call_errors_total)", 0.0) == failed > 0
    # span durations: one observation per tool call, in seconds
    assert prom.value('sum(agentflux_span_duration_seconds_count{type="tool.call"})') == sum(
        tools.values())
    want_s = sum(e["attrs"]["duration_ms"] for e in evs if e["type"] == "tool.call") / 1000
    got_s = prom.value('sum(agentflux_span_duration_seconds_sum{type="tool.call"})')
    assert abs(got_s - want_s) < 1e-6 * want_s
    # the recording rules' kind of query works on the scraped data
    assert prom.query("histogram_quantile(0.99, sum by (le) "
                      "(agentflux_span_duration_seconds_bucket{type=\"llm.call\"}))")

    # exemplars: trace ids of the events on the span-duration buckets
    traces = {e["trace_id"] for e in evs if e.get("trace_id") and e["type"] == "tool.call"}
    assert traces
    lo, hi = start / 1e9 - 60, time.time() + 60

    def exemplar_traces() -> set[str]:
        data = prom.exemplars('agentflux_span_duration_seconds_bucket{type="tool.call"}', lo, hi)
        return {x["labels"]["trace_id"] for s in data for x in s["exemplars"]}
    wait_until(lambda: exemplar_traces(), 30, "exemplars in Prometheus", interval_s=0.25)
    assert exemplar_traces() <= traces

    # deploy/prometheus's rules load and evaluate on the real series without an error, and the
    # recording rules produce the quantiles and ratios
    wait_until(lambda: prom.value("count(agentflux:span_duration_seconds:p99_rate5m)", 0) > 0
               and prom.value("count(agentflux:tool_calls:rate5m)", 0) > 0, 60,
               "the recording rules to produce series", interval_s=0.25)
    wait_until(lambda: all(r["health"] != "unknown" for r in prom.rules()), 30,
               "every rule group to be evaluated once", interval_s=0.25)
    rules = prom.rules()
    files = [yaml.safe_load((RULES / f).read_text())
             for f in ("recording.rules.yml", "alerting.rules.yml")]
    assert len(rules) == sum(len(g["rules"]) for doc in files for g in doc["groups"])
    assert all(r["health"] == "ok" for r in rules), [
        (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]


def test_the_workers_exposition_passes_promtool_check_metrics(settings, worker):
    evs = list(SyntheticRuntime(SimConfig(events=2000, seed=8, start_ns=time.time_ns()
                                          - 3600 * 10**9)).events())
    worker.start()
    emit_all(settings, evs)
    worker.wait_for(lambda m: landed_with_windows(m, len(evs)), 120, "events and windows landed")
    with urllib.request.urlopen(worker.metrics_url, timeout=5) as resp:
        text = resp.read()
    try:
        done = promtool("check", "metrics", stdin=text)
    except PrometheusMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        done.stdout + done.stderr).decode()
    # every family has HELP text
    helps = [line for line in text.decode().splitlines() if line.startswith("# HELP ")]
    assert helps and all(len(h.split(" ", 3)) == 4 and h.split(" ", 3)[3].strip() for h in helps)


def test_ten_thousand_tool_names_keep_the_series_bounded_and_count_the_overflow(
        settings, worker, start_prometheus):
    n_tools = 10_000
    base = list(SyntheticRuntime(SimConfig(events=60_000, agents=16, seed=99, start_ns=time.time_ns()
                                           - 3600 * 10**9)).events())
    calls = [e for e in base if e["type"] == "tool.call"][:n_tools]
    assert len(calls) == n_tools
    flood = [{**e, "attrs": {**e["attrs"], "tool": f"flood-tool-{i:05d}"}}
             for i, e in enumerate(calls)]
    worker.start()
    prom = start_prometheus(worker)
    emit_all(settings, flood)
    worker.wait_for(lambda m: landed_with_windows(m, n_tools), 180, "the flood to land")
    worker.wait_for(lambda m: m.get("agentflux_kpi_series_overflow_total", 0) > 0, 60,
                    "the KPI overflow to be counted")
    m = worker.metrics()
    span_counts = {k: v for k, v in m.items()
                   if k.startswith("agentflux_span_duration_seconds_count{")}
    assert len(span_counts) <= MAX_SPAN_SERIES + 20  # + one overflow series per type at most
    # no tool call lost from the totals: the overflow series holds the rest
    overflow_key = [k for k in span_counts if f'name="{OVERFLOW}"' in k
                    and 'type="tool.call"' in k]
    assert len(overflow_key) == 1
    tool_total = sum(v for k, v in span_counts.items() if 'type="tool.call"' in k)
    assert tool_total == n_tools
    folded = m['agentflux_span_series_overflow_total{type="tool.call"}']
    assert folded == span_counts[overflow_key[0]] >= n_tools - MAX_SPAN_SERIES
    # the KPI counters: capped too, the rest in their overflow series, the total exact
    worker.wait_for(lambda m: sum(v for k, v in m.items() if k.startswith(
        "agentflux_tool_calls_total{")) == n_tools, 60, "every tool call in the KPI counters")
    m = worker.metrics()
    tool_series = [k for k in m if k.startswith("agentflux_tool_calls_total{")]
    assert len(tool_series) <= MAX_KPI_SERIES + 1
    assert any(f'tool="{OVERFLOW}"' in k for k in tool_series)
    # what Prometheus ingests from one scrape stays bounded too
    bound = 40_000
    wait_until(lambda: prom.value('sum(agentflux_events_total)') == n_tools, 60,
               "Prometheus to scrape the flood", interval_s=0.25)
    samples = prom.value('max_over_time(scrape_samples_scraped{job="agentflux"}[1m])')
    assert 0 < samples <= bound
    assert prom.value('sum(agentflux_span_series_overflow_total{type="tool.call"})') == folded
    # the failure detector: a rule holds at most max_keys_per_rule keys, the flood's other rows
    # are its overflow key's, counted (its state and its time per tick stay bounded)
    cap = load_rules().max_keys_per_rule
    overflow = 'agentflux_alert_rows_overflow_total{rule="tool_error_budget"}'
    worker.wait_for(lambda m: m.get(overflow, 0) >= n_tools - cap, 60,
                    "the detector to take the flood past its keys as the overflow key's")
    counted = worker.metrics()[overflow]
    assert counted <= n_tools
    # (no sample yet until Prometheus scrapes the series: 0, not None, so the wait goes on)
    wait_until(lambda: prom.value(f"max({overflow})", 0.0) >= n_tools - cap, 60,
               "Prometheus to scrape the detector's overflow", interval_s=0.25)
    # and the worker, its detector judging only the keys that can alert, still stops when told
    # (it was busy judging every tool name every tick, ignored SIGTERM and was killed)
    assert worker.stop() == 0


def test_a_missing_prometheus_binary_is_an_error_naming_the_debian_package(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrometheusMissing, match="Debian package 'prometheus'"):
        LocalPrometheus(tmp_path, ["127.0.0.1:9"]).start()
    with pytest.raises(PrometheusMissing, match="apt-get install prometheus"):
        promtool("--version")
