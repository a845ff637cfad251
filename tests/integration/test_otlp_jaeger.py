"""OTLP span export end to end, no mocks: simulated events -> the real broker -> a worker process
-> OTLP (gRPC and HTTP/protobuf) -> a real Jaeger v2, read back through Jaeger's query API; and
Jaeger stopped mid-run and restarted: the landing never stalls, every span is counted exported
or dropped, and what was counted exported is what Jaeger holds."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter

from agentflux.harness import WorkerProcess, wait_until
from agentflux.runtime.emitter import Emitter
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.sinks.otlp import SPAN_TYPES

EXPORTED = 'agentflux_otlp_spans_total{outcome="exported"}'
DROPPED = 'agentflux_otlp_spans_total{outcome="dropped"}'
EVENTS_ROWS = 'agentflux_history_rows{table="events"}'


def simulated(n: int, seed: int, runtime: str) -> list[dict]:
    """``n`` events of a simulated fleet in live event time (Jaeger searches by time)."""
    return list(itertools.islice(SyntheticRuntime(SimConfig(
        agents=4, seed=seed, runtime=runtime, start_ns=None)).events(), n))


def expected_spans(events: list[dict]) -> int:
    """Spans a run becomes with every trace kept: one per event of a span type, one root per
    session."""
    return (sum(1 for e in events if e["type"] in SPAN_TYPES)
            + len({e["session_id"] for e in events}))


def publish(settings, events: list[dict]) -> None:
    with Emitter(settings) as em:
        for e in events:
            em.emit(e)
        assert em.flush(30)


def worker_for(settings, tmp_path, endpoint: str, protocol: str, **env: str) -> WorkerProcess:
    return WorkerProcess.with_free_ports(settings, log_path=tmp_path / "worker.log", extra_env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_BSP_SCHEDULE_DELAY": "200", "AGENTFLUX_OTLP_SESSION_IDLE_S": "1", **env})


def accounted_in(m: dict, n: int) -> bool:
    return m.get(EXPORTED, 0) + m.get(DROPPED, 0) >= n


def jaeger_spans(jaeger, service: str) -> list[dict]:
    return [s for t in jaeger.traces(service) for s in t["spans"]]


def spans_in_jaeger(jaeger, service: str, n: int, deadline_s: float = 30.0) -> list[dict]:
    """The service's spans in Jaeger once there are at least ``n`` (its ingestion is
    asynchronous), read again after that so a late extra span would show."""
    wait_until(lambda: len(jaeger_spans(jaeger, service)) >= n, deadline_s, f"{n} spans in Jaeger")
    return jaeger_spans(jaeger, service)


def tags(span: dict) -> dict:
    return {t["key"]: t["value"] for t in span.get("tags", ())}


def test_a_simulated_run_is_read_back_from_jaeger_as_genai_traces(settings, jaeger, tmp_path):
    service = f"sim-{uuid.uuid4().hex[:8]}"
    events = simulated(3000, seed=5, runtime=service)
    n = expected_spans(events)
    worker = worker_for(settings, tmp_path, jaeger.otlp_grpc, "grpc").start()
    try:
        publish(settings, events)
        worker.wait_for(lambda m: accounted_in(m, n), 90, f"{n} spans exported or dropped")
        m = worker.metrics()
        assert (m[EXPORTED], m[DROPPED]) == (n, 0)
        spans = spans_in_jaeger(jaeger, service, n)
        assert len(spans) == n  # spans received = spans exported
    finally:
        worker.stop()
    by_id = {s["spanID"]: s for s in spans}
    traces = Counter(s["traceID"] for s in spans)
    sessions = {e["session_id"] for e in events}
    assert len(traces) == len({e["trace_id"] for e in events})
    roots = [s for s in spans if not s.get("references")]
    assert len(roots) == len(sessions)
    for r in roots:
        assert r["operationName"].startswith("invoke_agent ")
        assert tags(r)["gen_ai.operation.name"] == "invoke_agent"
    for s in spans:
        if s.get("references"):
            (ref,) = s["references"]
            parent = by_id[ref["spanID"]]  # every parent is in Jaeger: the tree is whole
            assert not parent.get("references")  # (the simulator's spans hang under the root)
            assert parent["traceID"] == s["traceID"]
            assert parent["startTime"] <= s["startTime"]
    chats = [s for s in spans if s["operationName"].startswith("chat ")]
    llm = [e for e in events if e["type"] == "llm.call"]
    assert len(chats) == len(llm)
    want = {e["span_id"]: e["attrs"] for e in llm}
    for s in chats:
        t, a = tags(s), want[s["spanID"]]
        assert (t["gen_ai.operation.name"], t["gen_ai.provider.name"], t["gen_ai.request.model"],
                t["gen_ai.usage.input_tokens"], t["gen_ai.usage.output_tokens"]) == (
            "chat", a["provider"], a["model"], a["input_tokens"], a["output_tokens"])
        assert s["operationName"] == f"chat {a['model']}"
        assert abs(s["duration"] - a["duration_ms"] * 1000) <= 1  # microseconds
        assert (t.get("otel.status_code") == "ERROR") == (a["status"] != "ok")
    tools = [s for s in spans if s["operationName"].startswith("execute_tool ")]
    assert len(tools) == sum(1 for e in events if e["type"] == "tool.call")
    assert all(tags(s)["gen_ai.tool.name"] == s["operationName"].split(" ", 1)[1]
               for s in tools)


def test_http_protobuf_reaches_jaeger_too(settings, jaeger, tmp_path):
    service = f"sim-{uuid.uuid4().hex[:8]}"
    events = simulated(400, seed=6, runtime=service)
    n = expected_spans(events)
    worker = worker_for(settings, tmp_path, jaeger.otlp_http, "http/protobuf").start()
    try:
        publish(settings, events)
        worker.wait_for(lambda m: accounted_in(m, n), 90, f"{n} spans exported or dropped")
        assert worker.value(EXPORTED) == n
        assert len(spans_in_jaeger(jaeger, service, n)) == n
    finally:
        worker.stop()


def test_jaeger_stopped_mid_run_drops_are_counted_and_the_landing_never_stalls(settings, jaeger,
                                                                               tmp_path):
    service = f"sim-{uuid.uuid4().hex[:8]}"
    before, during, after = (simulated(800, seed=s, runtime=service) for s in (11, 12, 13))
    worker = worker_for(settings, tmp_path, jaeger.otlp_grpc, "grpc",
                        OTEL_EXPORTER_OTLP_TIMEOUT="2").start()
    try:
        n1 = expected_spans(before)
        publish(settings, before)
        worker.wait_for(lambda m: accounted_in(m, n1), 90, "the first run's spans")
        assert worker.value(EXPORTED) == n1
        jaeger.stop()
        n2 = n1 + expected_spans(during)
        publish(settings, during)
        # the history lands the events while the backend is away ...
        worker.wait_for(lambda m: m.get(EVENTS_ROWS, 0) >= len(before) + len(during), 60,
                        "the events landed during the outage")
        # ... and every span of them is counted: the exporter gives up within its bound
        worker.wait_for(lambda m: accounted_in(m, n2), 60, "the outage's spans counted")
        m = worker.metrics()
        failed = m['agentflux_otlp_spans_dropped_total{reason="export_failed"}']
        assert failed > 0 and m[DROPPED] == failed
        assert m[EXPORTED] + m[DROPPED] == n2  # exactly: nothing lost uncounted
        # the exporter retried (with jittered backoff) before it gave up, within its bound
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert "retrying in" in log, log[-2000:]
        exported_before = m[EXPORTED]
        jaeger.restart()  # (in-memory storage: it starts empty)
        n3 = expected_spans(after)
        publish(settings, after)
        worker.wait_for(lambda m: accounted_in(m, n2 + n3), 90, "the spans after the restart")
        m = worker.metrics()
        assert m[EXPORTED] - exported_before == n3 and m[DROPPED] == failed
        assert len(spans_in_jaeger(jaeger, service, n3)) == n3  # received = counted exported
        assert m[EVENTS_ROWS] >= len(before) + len(during) + len(after)
    finally:
        worker.stop()

