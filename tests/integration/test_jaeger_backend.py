"""The tests' OTLP backend itself, no mocks: the session's Jaeger v2 (agentflux.localjaeger) runs
in a container through testcontainers against podman's Docker API, takes spans from the
OpenTelemetry SDK's own exporters over OTLP/gRPC and OTLP/HTTP (protobuf), serves them back
through its query API, and restarts on the same ports."""

from __future__ import annotations

import shutil
import uuid

from agentflux.harness import wait_until


def send_span(endpoint: str, protocol: str, service: str) -> str:
    """One span sent with the SDK's OTLP exporter for ``protocol``; its trace id (32 hex)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10)
    else:  # http/protobuf: the signal's path is appended only to the generic variable
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # exported as the span ends
    try:
        with provider.get_tracer("agentflux.tests").start_as_current_span(
                f"probe {protocol}", attributes={"probe.protocol": protocol}) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
    finally:
        provider.shutdown()
    return trace_id


def read_back(jaeger, service: str, trace_id: str) -> dict:
    """The trace as Jaeger's query API serves it, once it is there (ingestion is batched)."""
    wait_until(lambda: jaeger.trace(trace_id) is not None, 30, f"trace {trace_id} in Jaeger")
    trace = jaeger.trace(trace_id)
    assert [t["traceID"] for t in jaeger.traces(service)] == [trace["traceID"]]
    return trace


def test_jaeger_runs_in_a_container_with_only_loopback_ports(jaeger):
    if shutil.which("podman"):  # a Docker API exists: a container, never the fallback
        assert jaeger.mode == "container", jaeger.reason
    else:
        assert jaeger.mode == "process" and jaeger.reason
        return
    import docker

    from agentflux.localjaeger import IMAGE
    client = docker.from_env()  # DOCKER_HOST: the podman service the fixture started
    (c,) = [c for c in client.containers.list() if IMAGE in (c.image.tags or [])
            and c.id == jaeger._container.get_wrapped_container().id]
    bound = {inner: [(b["HostIp"], int(b["HostPort"])) for b in binds]
             for inner, binds in c.attrs["NetworkSettings"]["Ports"].items() if binds}
    assert bound == {"4317/tcp": [("127.0.0.1", jaeger.ports["grpc"])],
                     "4318/tcp": [("127.0.0.1", jaeger.ports["http"])],
                     "16686/tcp": [("127.0.0.1", jaeger.ports["query"])]}
    assert isinstance(jaeger.services(), list)  # the query API answers on the published port


def test_a_span_over_otlp_grpc_is_read_back(jaeger):
    service = f"probe-grpc-{uuid.uuid4().hex[:8]}"
    trace_id = send_span(jaeger.otlp_grpc, "grpc", service)
    (span,) = read_back(jaeger, service, trace_id)["spans"]
    assert span["operationName"] == "probe grpc"
    assert {"key": "probe.protocol", "type": "string", "value": "grpc"} in span["tags"]


def test_a_span_over_otlp_http_protobuf_is_read_back(jaeger):
    service = f"probe-http-{uuid.uuid4().hex[:8]}"
    trace_id = send_span(jaeger.otlp_http, "http/protobuf", service)
    (span,) = read_back(jaeger, service, trace_id)["spans"]
    assert span["operationName"] == "probe http/protobuf"


def test_restart_keeps_the_ports_and_starts_empty(jaeger):
    service = f"probe-restart-{uuid.uuid4().hex[:8]}"
    before = send_span(jaeger.otlp_grpc, "grpc", service)
    read_back(jaeger, service, before)
    ports, urls, mode = dict(jaeger.ports), (jaeger.otlp_grpc, jaeger.otlp_http,
                                             jaeger.query_url), jaeger.mode
    jaeger.restart()
    assert (jaeger.ports, (jaeger.otlp_grpc, jaeger.otlp_http, jaeger.query_url),
            jaeger.mode) == (ports, urls, mode)
    assert jaeger.trace(before) is None  # in-memory storage: what it held went with it
    after = send_span(jaeger.otlp_http, "http/protobuf", service)
    read_back(jaeger, service, after)  # both receivers answer again on the same ports
