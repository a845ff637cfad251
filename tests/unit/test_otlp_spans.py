"""The event stream as OTLP spans (sinks/otlp.py), against OpenTelemetry's in-memory exporter;
tests/integration/test_otlp_jaeger.py sends them to a real Jaeger."""

from __future__ import annotations

import itertools
import threading
from collections import Counter, defaultdict

import pytest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentflux.config import ConfigError, OtlpSettings
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.schemas.wire import envelope
from agentflux.sinks.otlp import (SPAN_TYPES, SpanExport, SpanExportProcess, keep_trace,
                                  root_span_id, spans_of,
                                  trace_id_of)
from agentflux.sinks.prometheus import PipelineMetrics
from agentflux.streams.frame import EventFrame

SRC = {"runtime": "ts-runtime", "host": "h1", "pid": 7}


def sim_events(n: int, seed: int = 7) -> list[dict]:
    return list(itertools.islice(SyntheticRuntime(SimConfig(seed=seed)).events(), n))


def ev(type_: str, attrs: dict, session: str = "s1", ts: int = 10**18, **ids) -> dict:
    return envelope(type_, attrs, source=SRC, agent_id="agent-x", session_id=session,
                    philosophy="react", ts=ts, **ids)


def by_session(spans) -> dict[str, list]:
    out = defaultdict(list)
    for s in spans:
        out[s.attributes["gen_ai.conversation.id"]].append(s)
    return out


def test_a_run_becomes_one_trace_per_session_with_genai_spans_under_an_invoke_agent_root():
    events = sim_events(3000)
    spans = spans_of([EventFrame.from_wire(events)], OtlpSettings(session_idle_s=0))
    want = Counter(e["type"] for e in events if e["type"] in SPAN_TYPES)
    got = Counter(s.attributes.get("agentflux.event.type") for s in spans if s.parent)
    assert got == want  # every event of a span type is one span, nothing else is
    sessions = {e["session_id"] for e in events}
    for sid, group in by_session(spans).items():
        roots = [s for s in group if s.parent is None]
        assert len(roots) == 1, sid  # one root per session
        root = roots[0]
        assert root.name.startswith("invoke_agent ")
        assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert {s.context.trace_id for s in group} == {root.context.trace_id}
        for s in group:
            if s is not root:
                assert s.parent.span_id == root.context.span_id
                assert root.start_time <= s.start_time <= s.end_time <= root.end_time
        kids = [s for s in group if s is not root]
        assert root.attributes["agentflux.spans"] == len(kids)
        assert root.attributes.get("gen_ai.usage.input_tokens", 0) == sum(
            s.attributes.get("gen_ai.usage.input_tokens", 0) for s in kids)
    assert set(by_session(spans)) == sessions
    # events without a duration are span events of their session's root
    n_events = sum(len(s.events) for s in spans if s.parent is None)
    assert n_events == sum(1 for e in events if e["type"] not in SPAN_TYPES)


def test_chat_and_execute_tool_spans_carry_the_genai_attributes_and_times_from_the_event():
    end = 1_800_000_000_000_000_000
    chat = ev("llm.call", {"provider": "anthropic", "model": "claude-x", "duration_ms": 250.0,
                           "ttft_ms": 40.0, "input_tokens": 1200, "output_tokens": 80,
                           "cache_read_tokens": 1000, "cache_write_tokens": 0,
                           "cost_usd": 0.002, "status": "ok", "finish_reason": "stop"}, ts=end,
              trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331")
    tool = ev("tool.call", {"tool": "grep", "duration_ms": 12.5, "status": "error",
                            "error": "TimeoutError: grep took too long", "idempotent": True,
                            "cached": False}, ts=end + 10**6,
              trace_id="0af7651916cd43dd8448eb211c80319c", span_id="00f067aa0ba902b7",
              parent_span_id="b7ad6b7169203331")
    spans = {s.name: s for s in spans_of([EventFrame.from_wire([chat, tool])],
                                         OtlpSettings(session_idle_s=0))}
    c = spans["chat claude-x"]
    assert c.kind == SpanKind.CLIENT
    assert c.context.trace_id == 0x0af7651916cd43dd8448eb211c80319c
    assert c.context.span_id == 0xb7ad6b7169203331
    assert c.end_time == end and c.start_time == end - 250_000_000
    assert {k: c.attributes[k] for k in (
        "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
        "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens")} == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-x", "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 80, "gen_ai.usage.cache_read.input_tokens": 1000}
    assert tuple(c.attributes["gen_ai.response.finish_reasons"]) == ("stop",)
    assert c.status.status_code == StatusCode.UNSET
    t = spans["execute_tool grep"]
    assert t.parent.span_id == 0xb7ad6b7169203331  # the event's own parent, kept
    assert t.attributes["gen_ai.tool.name"] == "grep"
    assert t.attributes["gen_ai.operation.name"] == "execute_tool"
    assert t.status.status_code == StatusCode.ERROR
    assert t.attributes["error.type"] == "TimeoutError: grep took too long"
    assert t.end_time - t.start_time == 12_500_000
    root = spans["invoke_agent agent-x"]
    assert c.parent.span_id == root.context.span_id  # (no parent of its own: the root)
    assert root.resource.attributes["service.name"] == "ts-runtime"


@pytest.mark.parametrize("trace,span,parent", [
    ("not-hex", "zz", "123"), ("0" * 32, "0" * 16, "0" * 16), ("A" * 32, "B" * 16, None),
    ("\x00\u2028é" * 40, "x" * 10_000, "\n"), (None, None, None)])
def test_ids_that_are_not_valid_otlp_ids_are_derived_never_sent_as_they_are(trace, span, parent):
    ids = {k: v for k, v in (("trace_id", trace), ("span_id", span), ("parent_span_id", parent))
           if v is not None}
    events = [ev("tool.call", {"tool": "t", "duration_ms": 1.0, "status": "ok"}, ts=10**18 + i,
                 **ids) for i in range(2)]
    spans = spans_of([EventFrame.from_wire(events)], OtlpSettings(session_idle_s=0))
    assert len(spans) == 3
    for s in spans:
        assert 0 < s.context.trace_id < 1 << 128 and 0 < s.context.span_id < 1 << 64
    root = next(s for s in spans if s.parent is None)
    assert root.context.trace_id == trace_id_of(trace, "s1")
    assert root.context.span_id == root_span_id(root.context.trace_id, "s1")
    assert all(s.parent.span_id == root.context.span_id for s in spans if s.parent)
    assert len({s.context.span_id for s in spans}) == 3


def test_the_ratio_sampler_keeps_whole_traces_and_every_error_at_any_ratio():
    events = sim_events(20_000, seed=3)
    frame = EventFrame.from_wire(events)
    errors = sum(1 for e in events if e["type"] in SPAN_TYPES and (
        e["attrs"].get("status") in ("error", "timeout", "cancelled")
        or e["attrs"].get("outcome") == "failed"))
    assert errors > 0
    metrics = PipelineMetrics()
    exp = InMemorySpanExporter()
    sx = SpanExport(OtlpSettings(session_idle_s=0, sample_ratio=0.25), metrics, exp)
    sx.offer(frame)
    sx.start().stop(30.0)
    spans = exp.get_finished_spans()
    traces = defaultdict(list)
    for e in events:
        traces[trace_id_of(e.get("trace_id"), e["session_id"])].append(e)
    kept = {s.context.trace_id for s in spans}
    for tid, evs in traces.items():
        n_spans = sum(1 for e in evs if e["type"] in SPAN_TYPES)
        got = sum(1 for s in spans if s.context.trace_id == tid and s.parent)
        if keep_trace(tid, 0.25):
            assert got == n_spans  # a kept trace is kept whole
        else:
            assert got <= n_spans and (got == 0) == (tid not in kept)
    share = sum(keep_trace(t, 0.25) for t in traces) / len(traces)
    assert 0.15 < share < 0.35, share
    kept_errors = sum(1 for s in spans if s.status.status_code == StatusCode.ERROR)
    assert kept_errors == errors
    n_span_events = sum(1 for e in events if e["type"] in SPAN_TYPES)
    children = sum(1 for s in spans if s.parent)
    assert sx.sampled_out == n_span_events - children  # counted, not silently gone


class Gate(SpanExporter):
    """An exporter that blocks until released (a backend that stopped answering), then
    succeeds or fails."""

    def __init__(self, ok: bool = True):
        self.release = threading.Event()
        self.ok = ok
        self.received = 0

    def export(self, spans):
        self.release.wait(30)
        if not self.ok:
            return SpanExportResult.FAILURE
        self.received += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        self.release.set()


@pytest.mark.parametrize("ok", [True, False])
def test_a_stalled_backend_never_blocks_offer_and_every_span_is_exported_or_counted_dropped(ok):
    metrics = PipelineMetrics()
    gate = Gate(ok)
    settings = OtlpSettings(session_idle_s=0, max_queue_spans=2000, max_export_batch=256,
                            schedule_delay_s=0.05)
    sx = SpanExport(settings, metrics, gate).start()
    frames = [EventFrame.from_wire(sim_events(2000, seed=s)) for s in range(10)]
    for f in frames:
        sx.offer(f)
    # every offer returned while the backend still held its first batch
    assert gate.received == 0 and not gate.release.is_set()
    assert sx.dropped.get("queue_full", 0) > 0  # the queue filled while the backend stalled
    gate.release.set()
    sx.stop(30.0)
    roots = sum(len({e["session_id"] for e in sim_events(2000, seed=s)}) for s in range(10))
    n_spans = sum(1 for s in range(10) for e in sim_events(2000, seed=s) if e["type"] in SPAN_TYPES)
    total = sx.exported + sum(sx.dropped.values())
    # every span offered (and every root of a session that had a span kept) is accounted for
    assert n_spans <= total <= n_spans + roots
    assert sx.exported == gate.received
    if not ok:
        assert sx.exported == 0 and sx.dropped["export_failed"] > 0
    text = metrics_text(metrics)
    assert f'agentflux_otlp_spans_total{{outcome="exported"}} {float(sx.exported)}' in text
    assert (f'agentflux_otlp_spans_dropped_total{{reason="queue_full"}} '
            f'{float(sx.dropped["queue_full"])}') in text


def metrics_text(metrics: PipelineMetrics) -> str:
    from prometheus_client import generate_latest
    return generate_latest(metrics.registry).decode()


def test_an_offer_after_stop_is_counted_as_dropped_at_shutdown():
    exp = InMemorySpanExporter()
    sx = SpanExport(OtlpSettings(session_idle_s=0), None, exp).start()
    sx.stop(5.0)
    sx.offer(EventFrame.from_wire([ev("tool.call", {"tool": "t", "duration_ms": 1.0,
                                                    "status": "ok"})]))
    assert sx.dropped == {"shutdown": 1} and not exp.get_finished_spans()


def test_otlp_settings_come_from_the_standard_variables_with_clear_errors():
    assert OtlpSettings.from_env({}) is None  # off without an endpoint
    assert OtlpSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317",
                                  "OTEL_SDK_DISABLED": "true"}) is None
    s = OtlpSettings.from_env({
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1",
        "OTEL_BSP_SCHEDULE_DELAY": "250", "OTEL_BSP_MAX_QUEUE_SIZE": "4096",
        "AGENTFLUX_OTLP_KEEP_ERRORS": "0"})
    assert (s.protocol, s.sample_ratio, s.schedule_delay_s, s.max_queue_spans,
            s.keep_errors) == ("http/protobuf", 0.1, 0.25, 4096, False)
    for env, words in (({"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"}, "grpc or http/protobuf"),
                       ({"OTEL_TRACES_SAMPLER": "traceidratio",
                         "OTEL_TRACES_SAMPLER_ARG": "2"}, "0..1"),
                       ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "always_on"),
                       ({"OTEL_BSP_MAX_QUEUE_SIZE": "lots"}, "not a valid int")):
        with pytest.raises(ConfigError, match=words):
            OtlpSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", **env})


class FileExporter(SpanExporter):
    """For the export process (built there by name): spans as JSON lines in
    $AGENTFLUX_TEST_SPANS; with $AGENTFLUX_TEST_SPANS_HANG set, an export never returns (a
    backend that hangs past every bound)."""

    def __init__(self):
        import os
        self.path = os.environ["AGENTFLUX_TEST_SPANS"]
        self.hang = bool(os.environ.get("AGENTFLUX_TEST_SPANS_HANG"))

    def export(self, spans):
        if self.hang:
            threading.Event().wait()
        with open(self.path, "a") as f:
            for s in spans:
                f.write(s.to_json(indent=None) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


@pytest.mark.parametrize("hang", [False, True])
def test_the_export_process_sends_every_span_or_counts_it_dropped(tmp_path, monkeypatch, hang):
    import json
    out = tmp_path / "spans.jsonl"
    monkeypatch.setenv("AGENTFLUX_TEST_SPANS", str(out))
    if hang:
        monkeypatch.setenv("AGENTFLUX_TEST_SPANS_HANG", "1")
    metrics = PipelineMetrics()
    events = sim_events(3000, seed=9)
    sx = SpanExportProcess(OtlpSettings(session_idle_s=0, schedule_delay_s=0.05), metrics,
                           exporter=f"{__name__}:FileExporter").start()
    sx.offer(EventFrame.from_wire(events[:1500]))
    sx.offer(EventFrame.from_wire(events[1500:]))
    sx.stop(timeout_s=8.0)
    n_children = sum(1 for e in events if e["type"] in SPAN_TYPES)
    n_roots = len({e["session_id"] for e in events})
    lines = out.read_text().splitlines() if out.exists() else []
    assert sx.exported == len(lines)
    if hang:
        assert sx.exported == 0
        assert n_children <= sum(sx.dropped.values()) <= n_children + n_roots
    else:
        assert (sx.exported, sx.dropped) == (n_children + n_roots, {})
        names = Counter(json.loads(x)["name"].split()[0] for x in lines)
        assert names["invoke_agent"] == n_roots
    text = metrics_text(metrics)
    assert f'agentflux_otlp_spans_total{{outcome="exported"}} {float(sx.exported)}' in text
    assert (f'agentflux_otlp_spans_total{{outcome="dropped"}} '
            f'{float(sum(sx.dropped.values()))}') in text
    assert "agentflux_otlp_queue_spans 0.0" in text  # nothing is left waiting anywhere
