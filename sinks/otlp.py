"""OTLP span export: the event stream as OpenTelemetry traces, named per the GenAI conventions.

Each agent session is a trace (the events' ``trace_id`` where they carry a valid one, else one
derived from the session id) under an ``invoke_agent`` root span; ``llm.call`` events become
``chat {model}`` spans, ``tool.call`` events ``execute_tool {tool}`` spans, and the other events
with a duration (context compression, routing, executor tasks, pool acquisitions) child spans
named ``{type} {name}``. Events without a duration (cache lookups and stats, pool states,
resource samples ...) become span events of the session's root. A span ends at its event's
time and starts ``duration`` before it (runtimes emit an event when the call completes); an
event's own ``span_id`` / ``parent_span_id`` are kept where valid, and a span without a parent
hangs under its session's root, whose id is derived from the trace and session, so no state is
needed to link them.

The landing path pays only for the sampling decision and a column take per batch
(:meth:`SpanExport.offer`, on the event loop); building spans and exporting them run in a
thread of their own. The queue between them is bounded (spans); what does not fit is dropped
and counted, and so is a batch the exporter gives up on after its bounded, jittered retries
(opentelemetry-exporter-otlp's, within ``OTEL_EXPORTER_OTLP_TIMEOUT``). Every sampled span is
counted exactly once as exported or dropped (with the reason) in /metrics. A session's root is
exported once the session has been quiet for ``session_idle_s`` (or the worker stops, or more
than ``max_sessions`` are open). Delivery is at least once: events redelivered after a crash
are exported again.

Endpoint, headers, TLS, compression and timeout come from the standard ``OTEL_EXPORTER_OTLP_*``
variables, read by the exporter itself; the protocol (``grpc`` or ``http/protobuf``), the
sampler and the batch sizes from :class:`agentflux.config.Settings`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from agentflux.config import OtlpSettings
from agentflux.streams.fields import MEASURE_FIELDS
from agentflux.streams.frame import TYPE_NAMES, EventFrame

log = logging.getLogger("agentflux.otlp")

SCOPE = "agentflux"
# event types that become spans (the rest are span events of the session's root): type ->
# (GenAI operation name or None, span kind)
SPAN_TYPES = {"llm.call": "chat", "tool.call": "execute_tool", "context.compress": None,
              "routing.decision": None, "executor.task": None, "pool.acquire": None}
_SPAN_CODES = np.array([TYPE_NAMES.index(t) for t in SPAN_TYPES], np.int16)
_LLM = TYPE_NAMES.index("llm.call")
_TOOL = TYPE_NAMES.index("tool.call")
_TOKEN_SLOTS = {f: MEASURE_FIELDS["llm.call"].index(f) for f in
                ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")}
# attrs of a span (or span event) kept as ``agentflux.<field>`` attributes: scalars only, at
# most this many, strings cut at this length
MAX_ATTRS = 32
MAX_STR = 1024
# span events kept on one root span (more are counted in ``agentflux.events_dropped``)
MAX_ROOT_EVENTS = 128
_HEX = frozenset("0123456789abcdef")


def _valid_hex(s: str | None, width: int) -> bool:
    return (s is not None and len(s) == width and _HEX.issuperset(s)
            and s != "0" * width)


def _digest(text: str, size: int) -> int:
    v = int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"),
                                       digest_size=size).digest(), "big")
    return v or 1  # all-zero ids are invalid in OTLP


def trace_id_of(trace: str | None, session: str) -> int:
    """The OTLP trace id of an event: its own where it is 32 lowercase hex digits (not all
    zero), else derived from what it carries (the same string always gives the same trace)."""
    if _valid_hex(trace, 32):
        return int(trace, 16)  # type: ignore[arg-type]
    return _digest(f"trace\x00{trace}" if trace is not None else f"session\x00{session}", 16)


def root_span_id(trace_id: int, session: str) -> int:
    """The span id of the ``invoke_agent`` root of ``session`` in ``trace_id``."""
    return _digest(f"{trace_id:032x}/{session}", 8)


def keep_trace(trace_id: int, ratio: float) -> bool:
    """The ratio sampler's decision: on the trace id's low 64 bits, like OpenTelemetry's
    ``TraceIdRatioBased`` (so a runtime sampling with the same ratio keeps the same traces)."""
    if ratio >= 1.0:
        return True
    return (trace_id & 0xFFFF_FFFF_FFFF_FFFF) < int(ratio * (1 << 64))


@dataclass
class _Chunk:
    """The kept events of one batch, as columns (built on the event loop, read by the thread)."""

    n_spans: int
    ts: np.ndarray
    duration_ms: np.ndarray
    type_code: np.ndarray
    error: np.ndarray
    measures: np.ndarray
    source_pid: np.ndarray
    strings: dict[str, pa.Array]


@dataclass
class _Root:
    trace_id: int
    span_id: int
    session: str
    agent: str
    philosophy: str
    resource: Any
    start_ns: int
    end_ns: int
    last_seen: float
    spans: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    events: list = field(default_factory=list)
    events_dropped: int = 0


def _scalar_attrs(attrs: dict, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if len(out) >= MAX_ATTRS:
            break
        if type(v) is str:
            out[prefix + k] = v if len(v) <= MAX_STR else v[:MAX_STR - 1] + "…"
        elif type(v) in (int, float, bool):
            out[prefix + k] = v
    return out


class SpanExport:
    """Event frames -> sampled OTLP spans, exported in batches from a thread of their own.

    ``exporter``: any OpenTelemetry ``SpanExporter`` (default: the OTLP exporter of
    ``settings.protocol``, configured by the ``OTEL_EXPORTER_OTLP_*`` variables); ``metrics``:
    the worker's :class:`agentflux.sinks.prometheus.PipelineMetrics` (or None)."""

    def __init__(self, settings: OtlpSettings, metrics: Any = None, exporter: Any = None,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.metrics = metrics
        self.exporter = exporter if exporter is not None else make_exporter(settings.protocol)
        self._clock = clock
        self._cond = threading.Condition()
        self._chunks: deque[_Chunk] = deque()
        self._queued = 0  # spans in the queued chunks
        self._stopping = False
        self._abandon = False
        self._thread: threading.Thread | None = None
        self._roots: OrderedDict[tuple[int, str], _Root] = OrderedDict()
        self._closed: OrderedDict[tuple[int, str], None] = OrderedDict()  # roots exported
        self._resources: dict[tuple, Any] = {}
        # totals, also in /metrics: spans exported and dropped by reason; sampled out
        self.exported = 0
        self.dropped: dict[str, int] = {}
        self.sampled_out = 0
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from agentflux import __version__
        self._scope = InstrumentationScope(SCOPE, __version__)

    # --- on the event loop ---------------------------------------------------------------
    def offer(self, frame: EventFrame) -> None:
        """Sample ``frame``'s events and queue the kept ones (never blocks; a batch that does
        not fit the queue is dropped and counted)."""
        if not frame.n:
            return
        keep = self._sample(frame)
        is_span = np.isin(frame.type_code, _SPAN_CODES)
        spans_total = int(is_span.sum())
        if keep is None:
            at = None
            kept_spans = spans_total
        else:
            kept_spans = int(is_span[keep].sum())
            if kept_spans < spans_total:
                self.sampled_out += spans_total - kept_spans
                self._count("sampled_out", spans_total - kept_spans)
            if not len(keep):
                return
            at = pa.array(keep, pa.int64())
        cols = ("trace_id", "span_id", "parent_span_id", "session_id", "agent_id",
                "philosophy", "source_runtime", "source_host", "id", "name", "attrs")
        if at is None:
            chunk = _Chunk(kept_spans, frame.ts, frame.duration_ms, frame.type_code,
                           frame.error, frame.measures, frame.source_pid,
                           {c: frame.strings[c] for c in cols})
        else:
            chunk = _Chunk(kept_spans, frame.ts[keep], frame.duration_ms[keep],
                           frame.type_code[keep], frame.error[keep], frame.measures[keep],
                           frame.source_pid[keep], {c: frame.strings[c].take(at) for c in cols})
        with self._cond:
            if self._stopping or self._queued + chunk.n_spans > self.settings.max_queue_spans:
                reason = "shutdown" if self._stopping else "queue_full"
                self._drop(reason, chunk.n_spans)
                return
            self._chunks.append(chunk)
            self._queued += chunk.n_spans
            if self._queued >= self.settings.max_export_batch:
                self._cond.notify()
        self._set_queue()

    def _sample(self, frame: EventFrame) -> np.ndarray | None:
        """The positions of the events kept, or None for all of them."""
        s = self.settings
        if s.sample_ratio >= 1.0:
            return None
        keep = np.zeros(frame.n, bool)
        if s.sample_ratio > 0.0:
            traces = pc.dictionary_encode(frame.strings["trace_id"], null_encoding="encode")
            sessions = pc.dictionary_encode(frame.strings["session_id"])
            nt = len(traces.dictionary)
            pair = (sessions.indices.to_numpy().astype(np.int64) * (nt + 1)
                    + traces.indices.to_numpy(zero_copy_only=False).astype(np.int64))
            uniq, inverse = np.unique(pair, return_inverse=True)
            td, sd = traces.dictionary.to_pylist(), sessions.dictionary.to_pylist()
            decide = np.fromiter(
                (keep_trace(trace_id_of(td[p % (nt + 1)] if p % (nt + 1) < nt else None,
                                        sd[p // (nt + 1)]), s.sample_ratio)
                 for p in uniq.tolist()), bool, len(uniq))
            keep = decide[inverse.reshape(-1)]
        if s.keep_errors:
            keep |= frame.error
        return np.flatnonzero(keep)

    # --- the thread ------------------------------------------------------------------------
    def start(self) -> "SpanExport":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="agentflux-otlp", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Export what is queued and every open root within ``timeout_s``; what is left then
        is dropped (counted, reason ``shutdown``). Idempotent."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("OTLP export did not finish within %.1f s; dropping the rest",
                            timeout_s)
                self._abandon = True  # the thread drops (and counts) the rest
        try:
            self.exporter.shutdown()  # (also ends the retries of an export in progress)
        except Exception:  # noqa: BLE001 (a failing shutdown must not stop the worker's)
            log.exception("OTLP exporter shutdown failed")
        if thread is not None:
            thread.join(1.0)

    def _run(self) -> None:
        s = self.settings
        while True:
            with self._cond:
                if not self._stopping and self._queued < s.max_export_batch:
                    self._cond.wait(s.schedule_delay_s)
                chunks = list(self._chunks)
                self._chunks.clear()
                self._queued = 0
                stopping = self._stopping
            self._set_queue()
            spans: list = []
            for chunk in chunks:
                spans += self._spans_of(chunk)
            spans += self._due_roots(flush_all=stopping)
            for i in range(0, len(spans), s.max_export_batch):
                if self._abandon:
                    self._drop("shutdown", len(spans) - i)
                    break
                self._export(spans[i:i + s.max_export_batch])
            if stopping:
                return  # (nothing is queued after stopping: offer() drops and counts it)
    def _export(self, batch: list) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult
        try:
            ok = self.exporter.export(batch) == SpanExportResult.SUCCESS
        except Exception:  # noqa: BLE001 (an exporter bug is counted as a failed export)
            log.exception("OTLP export raised")
            ok = False
        if ok:
            self.exported += len(batch)
            self._count("exported", len(batch))
        else:
            self._drop("export_failed", len(batch))

    # --- building spans (the thread) ------------------------------------------------------
    def _resource(self, runtime: str | None, host: str | None, pid: int) -> Any:
        """The OTel resource of an event's source (``service.name`` = its runtime)."""
        key = (runtime or "agent-runtime", host or "", pid)
        res = self._resources.get(key)
        if res is None:
            if len(self._resources) >= 1024:
                self._resources.clear()
            from opentelemetry.sdk.resources import Resource
            attrs: dict[str, Any] = {"service.name": key[0]}
            if host:
                attrs["host.name"] = host
            if pid:
                attrs["process.pid"] = pid
            res = self._resources[key] = Resource(attrs)
        return res

    def _root(self, trace_id: int, session: str, agent: str, philosophy: str,
              resource: Any, start_ns: int, end_ns: int, now: float) -> _Root | None:
        k = (trace_id, session)
        r = self._roots.get(k)
        if r is None:
            if k in self._closed:  # exported already (the session went quiet, then resumed)
                return None
            r = self._roots[k] = _Root(trace_id, root_span_id(trace_id, session), session,
                                       agent, philosophy, resource, start_ns, end_ns, now)
        else:
            self._roots.move_to_end(k)
            r.start_ns = min(r.start_ns, start_ns)
            r.end_ns = max(r.end_ns, end_ns)
            r.last_seen = now
        return r

    def _spans_of(self, chunk: _Chunk) -> list:
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        sampled = TraceFlags(TraceFlags.SAMPLED)
        st = {c: a.to_pylist() for c, a in chunk.strings.items()}
        pids = chunk.source_pid.tolist()
        ts, dur = chunk.ts.tolist(), chunk.duration_ms.tolist()
        codes, errors = chunk.type_code.tolist(), chunk.error.tolist()
        now = self._clock()
        out = []
        for i in range(len(ts)):
            session = st["session_id"][i] or ""
            trace_id = trace_id_of(st["trace_id"][i], session)
            end = ts[i]
            d = dur[i]
            start = end - int(d * 1e6) if d == d and d > 0 else end
            resource = self._resource(st["source_runtime"][i], st["source_host"][i], pids[i])
            root = self._root(trace_id, session, st["agent_id"][i] or "",
                              st["philosophy"][i] or "", resource, start, end, now)
            type_name = TYPE_NAMES[codes[i]]
            try:
                attrs = orjson.loads(st["attrs"][i]) if st["attrs"][i] else {}
            except orjson.JSONDecodeError:
                attrs = {}
            if type_name not in SPAN_TYPES:
                if root is not None:
                    if len(root.events) < MAX_ROOT_EVENTS:
                        root.events.append(Event(type_name, _scalar_attrs(attrs, ""), end))
                    else:
                        root.events_dropped += 1
                continue
            parent_hex = st["parent_span_id"][i]
            if _valid_hex(parent_hex, 16):
                parent = int(parent_hex, 16)
            else:
                parent = root_span_id(trace_id, session)
            span_hex = st["span_id"][i]
            span_id = (int(span_hex, 16) if _valid_hex(span_hex, 16)
                       else _digest(f"event\x00{st['id'][i]}", 8))
            name = st["name"][i] or ""
            a: dict[str, Any] = {"gen_ai.conversation.id": session,
                                 "gen_ai.agent.id": st["agent_id"][i] or "",
                                 "agentflux.philosophy": st["philosophy"][i] or "",
                                 "agentflux.event.id": st["id"][i] or "",
                                 "agentflux.event.type": type_name}
            kind = SpanKind.INTERNAL
            op = SPAN_TYPES[type_name]
            if codes[i] == _LLM:
                kind = SpanKind.CLIENT
                m = chunk.measures[i]
                tokens = {f: m[j] for f, j in _TOKEN_SLOTS.items()}
                a.update({"gen_ai.operation.name": "chat", "gen_ai.request.model": name})
                if type(attrs.get("provider")) is str:
                    a["gen_ai.provider.name"] = attrs["provider"]
                for f, key in (("input_tokens", "gen_ai.usage.input_tokens"),
                               ("output_tokens", "gen_ai.usage.output_tokens"),
                               ("cache_read_tokens", "gen_ai.usage.cache_read.input_tokens"),
                               ("cache_write_tokens",
                                "gen_ai.usage.cache_creation.input_tokens")):
                    if tokens[f] == tokens[f]:
                        a[key] = int(tokens[f])
                if type(attrs.get("finish_reason")) is str:
                    a["gen_ai.response.finish_reasons"] = [attrs["finish_reason"]]
                if type(attrs.get("ttft_ms")) in (int, float):
                    a["gen_ai.response.time_to_first_chunk"] = attrs["ttft_ms"] / 1000.0
                if type(attrs.get("cost_usd")) in (int, float):
                    a["agentflux.cost_usd"] = attrs["cost_usd"]
                span_name = f"chat {name}" if name else "chat"
                if root is not None:
                    root.input_tokens += a.get("gen_ai.usage.input_tokens", 0)
                    root.output_tokens += a.get("gen_ai.usage.output_tokens", 0)
            elif codes[i] == _TOOL:
                a.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                          "gen_ai.tool.type": "function"})
                for f in ("cached", "idempotent"):
                    if type(attrs.get(f)) is bool:
                        a[f"agentflux.tool.{f}"] = attrs[f]
                span_name = f"execute_tool {name}" if name else "execute_tool"
            else:
                a.update(_scalar_attrs(attrs, "agentflux."))
                span_name = f"{type_name} {name}" if name else type_name
            if op is not None:
                a["gen_ai.operation.name"] = op
            status = Status(StatusCode.UNSET)
            if errors[i]:
                err = attrs.get("error")
                err_s = (err if type(err) is str and err else
                         str(attrs.get("status") or attrs.get("outcome") or "error"))
                a["error.type"] = err_s[:MAX_STR]
                status = Status(StatusCode.ERROR, err_s[:MAX_STR])
                if root is not None:
                    root.errors += 1
            if root is not None:
                root.spans += 1
            out.append(ReadableSpan(
                span_name, context=SpanContext(trace_id, span_id, False, sampled),
                parent=SpanContext(trace_id, parent, False, sampled),
                resource=resource, attributes=a, kind=kind, status=status,
                start_time=start, end_time=end, instrumentation_scope=self._scope))
        return out

    def _due_roots(self, flush_all: bool) -> list:
        """The roots of sessions quiet for ``session_idle_s`` (all of them when stopping),
        and the oldest beyond ``max_sessions``, as spans; forgotten afterwards."""
        s = self.settings
        now = self._clock()
        due = []
        while self._roots:
            k, r = next(iter(self._roots.items()))  # least recently seen first
            if not (flush_all or now - r.last_seen >= s.session_idle_s
                    or len(self._roots) > s.max_sessions):
                break
            del self._roots[k]
            self._closed[k] = None
            if len(self._closed) > 10 * s.max_sessions:
                self._closed.popitem(last=False)
            due.append(self._root_span(r))
        return due

    def _root_span(self, r: _Root) -> Any:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

        sampled = TraceFlags(TraceFlags.SAMPLED)
        a: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": r.agent,
            "gen_ai.agent.name": r.agent, "gen_ai.conversation.id": r.session,
            "agentflux.philosophy": r.philosophy, "agentflux.spans": r.spans,
            "agentflux.errors": r.errors}
        if r.input_tokens or r.output_tokens:
            a["gen_ai.usage.input_tokens"] = r.input_tokens
            a["gen_ai.usage.output_tokens"] = r.output_tokens
        if r.events_dropped:
            a["agentflux.events_dropped"] = r.events_dropped
        return ReadableSpan(
            f"invoke_agent {r.agent}" if r.agent else "invoke_agent",
            context=SpanContext(r.trace_id, r.span_id, False, sampled), parent=None,
            resource=r.resource, attributes=a, events=r.events,
            kind=SpanKind.INTERNAL, start_time=r.start_ns, end_time=r.end_ns,
            instrumentation_scope=self._scope)

    # --- counting ------------------------------------------------------------------------
    def _drop(self, reason: str, n: int) -> None:
        if n <= 0:
            return
        self.dropped[reason] = self.dropped.get(reason, 0) + n
        self._count("dropped", n)
        if self.metrics is not None:
            self.metrics.count_spans_dropped(reason, n)

    def _count(self, outcome: str, n: int) -> None:
        if self.metrics is not None:
            self.metrics.count_spans(outcome, n)

    def _set_queue(self) -> None:
        if self.metrics is not None:
            self.metrics.set_otlp_queue(self._queued)


def make_exporter(protocol: str) -> Any:
    """The OTLP span exporter of ``protocol``; it reads its endpoint, headers, certificates,
    compression and timeout from the ``OTEL_EXPORTER_OTLP_*`` variables."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter()
    raise ValueError(f"OTLP protocol {protocol!r}: use grpc or http/protobuf")


def spans_of(frames: Sequence[EventFrame], settings: OtlpSettings | None = None) -> list:
    """Every span the export would send for ``frames`` (roots included), synchronously: for
    tests and for looking at what a run becomes."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exp = InMemorySpanExporter()
    sx = SpanExport(settings or OtlpSettings(), exporter=exp)
    for f in frames:
        sx.offer(f)
    sx.start().stop(timeout_s=60.0)
    return list(exp.get_finished_spans())
