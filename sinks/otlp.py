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
# the export process's own bound on its last flush (the worker waits a little longer for it)
CHILD_STOP_S = 4.0
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


_STR_COLS = ("trace_id", "span_id", "parent_span_id", "session_id", "agent_id", "philosophy",
             "source_runtime", "source_host", "id", "name", "attrs")
_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def sample(frame: EventFrame, settings: OtlpSettings) -> np.ndarray | None:
    """The positions of ``frame``'s events kept by the sampler, or None for all of them: whole
    traces at ``sample_ratio`` (decided once per trace and session of the batch), and every
    error event with ``keep_errors``."""
    if settings.sample_ratio >= 1.0:
        return None
    keep = np.zeros(frame.n, bool)
    if settings.sample_ratio > 0.0:
        traces = pc.dictionary_encode(frame.strings["trace_id"], null_encoding="encode")
        sessions = pc.dictionary_encode(frame.strings["session_id"])
        nt = len(traces.dictionary)
        pair = (sessions.indices.to_numpy().astype(np.int64) * (nt + 1)
                + traces.indices.to_numpy(zero_copy_only=False).astype(np.int64))
        uniq, inverse = np.unique(pair, return_inverse=True)
        td, sd = traces.dictionary.to_pylist(), sessions.dictionary.to_pylist()
        decide = np.fromiter(
            (keep_trace(trace_id_of(td[p % (nt + 1)] if p % (nt + 1) < nt else None,
                                    sd[p // (nt + 1)]), settings.sample_ratio)
             for p in uniq.tolist()), bool, len(uniq))
        keep = decide[inverse.reshape(-1)]
    if settings.keep_errors:
        keep |= frame.error
    return np.flatnonzero(keep)


def chunk_of(frame: EventFrame, keep: np.ndarray | None) -> pa.RecordBatch:
    """The events at ``keep`` (None: all) as the columns span building reads (zero-copy where
    all are kept)."""
    take = (lambda a: a) if keep is None else (lambda a: a[keep])
    at = None if keep is None else pa.array(keep, pa.int64())
    m = take(frame.measures)
    arrays = [pa.array(take(frame.ts)), pa.array(take(frame.duration_ms)),
              pa.array(take(frame.type_code)), pa.array(take(frame.error)),
              pa.array(take(frame.source_pid)),
              *(pa.array(np.ascontiguousarray(m[:, _TOKEN_SLOTS[f]])) for f in _TOKENS),
              *(frame.strings[c] if at is None else frame.strings[c].take(at)
                for c in _STR_COLS)]
    return pa.RecordBatch.from_arrays(arrays, names=[
        "ts", "duration_ms", "type_code", "error", "source_pid", *_TOKENS, *_STR_COLS])


def span_count(frame: EventFrame, keep: np.ndarray | None) -> tuple[int, int]:
    """(events of a span type in ``frame``, ... of them at ``keep``)."""
    is_span = np.isin(frame.type_code, _SPAN_CODES)
    total = int(is_span.sum())
    return total, (total if keep is None else int(is_span[keep].sum()))


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


class _SpanQueue:
    """What both transports share: sampling and taking columns on the event loop (``offer``),
    a queue bounded in spans (``put``: what does not fit is dropped and counted), and the
    counts, kept here and in /metrics (``metrics``: the worker's
    :class:`agentflux.sinks.prometheus.PipelineMetrics`, or None)."""

    def __init__(self, settings: OtlpSettings, metrics: Any = None):
        self.settings = settings
        self.metrics = metrics
        self._cond = threading.Condition()
        self._chunks: deque[tuple[pa.RecordBatch, int]] = deque()
        self._queued = 0  # events of a span type in the queued chunks
        self._stopping = False
        # totals, also in /metrics: spans exported and dropped by reason; sampled out
        self.exported = 0
        self.dropped: dict[str, int] = {}
        self.sampled_out = 0

    def offer(self, frame: EventFrame) -> None:
        """Sample ``frame``'s events and queue the kept ones (never blocks; a batch that does
        not fit the queue is dropped and counted)."""
        if not frame.n:
            return
        keep = sample(frame, self.settings)
        total, kept = span_count(frame, keep)
        if kept < total:
            self.sampled_out += total - kept
            self._count("sampled_out", total - kept)
        if keep is None or len(keep):
            self.put(chunk_of(frame, keep), kept)

    def put(self, chunk: pa.RecordBatch, n_spans: int) -> None:
        """Queue ``chunk`` (:func:`chunk_of`) holding ``n_spans`` events of a span type, or
        drop it and count them if the queue has no room for them."""
        with self._cond:
            if self._stopping or self._queued + n_spans > self.settings.max_queue_spans:
                self._drop("shutdown" if self._stopping else "queue_full", n_spans)
                return
            self._chunks.append((chunk, n_spans))
            self._queued += n_spans
            if self._queued >= self._notify_at:
                self._cond.notify()
        self._set_queue()

    _notify_at = 1  # queued spans that wake the consumer of the queue

    def _drop(self, reason: str, n: int) -> None:
        if n <= 0:
            return
        self.dropped[reason] = self.dropped.get(reason, 0) + n
        if self.metrics is not None:
            self.metrics.count_spans("dropped", n)
            self.metrics.count_spans_dropped(reason, n)

    def _count(self, outcome: str, n: int) -> None:
        if self.metrics is not None:
            self.metrics.count_spans(outcome, n)

    def _set_queue(self) -> None:
        if self.metrics is not None:
            self.metrics.set_otlp_queue(self._queued)


class SpanExport(_SpanQueue):
    """Event frames -> sampled OTLP spans, exported in batches from a thread of their own.

    ``exporter``: any OpenTelemetry ``SpanExporter`` (default: the OTLP exporter of
    ``settings.protocol``, configured by the ``OTEL_EXPORTER_OTLP_*`` variables); ``metrics``:
    the worker's :class:`agentflux.sinks.prometheus.PipelineMetrics` (or None)."""

    def __init__(self, settings: OtlpSettings, metrics: Any = None, exporter: Any = None,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(settings, metrics)
        self._notify_at = settings.max_export_batch
        self.exporter = exporter if exporter is not None else make_exporter(settings.protocol)
        self._clock = clock
        self._abandon = False
        self._thread: threading.Thread | None = None
        self._roots: OrderedDict[tuple[int, str], _Root] = OrderedDict()
        self._closed: OrderedDict[tuple[int, str], None] = OrderedDict()  # roots exported
        self._resources: dict[tuple, Any] = {}
        # spans taken from the queue and not yet exported or dropped; on_progress is called
        # after each round of exports (the process transport reports from it)
        self._in_hand = 0
        self.on_progress: Callable[["SpanExport"], None] | None = None
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from agentflux import __version__
        self._scope = InstrumentationScope(SCOPE, __version__)

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
                with self._cond:  # (the thread counts nothing after this)
                    self._abandon = True
                    left = self.unaccounted()
                    self._chunks.clear()
                    self._queued = self._in_hand = 0
                    self._roots.clear()
                self._drop("shutdown", left)
                self._progress()
        try:
            self.exporter.shutdown()  # (also ends the retries of an export in progress)
        except Exception:  # noqa: BLE001 (a failing shutdown must not stop the worker's)
            log.exception("OTLP exporter shutdown failed")
        if thread is not None:
            thread.join(1.0)

    def unaccounted(self) -> int:
        """Spans queued, being built or exported, and roots still open: what a stop now
        would drop."""
        return self._queued + self._in_hand + len(self._roots)

    def _run(self) -> None:
        s = self.settings
        while True:
            with self._cond:
                if not self._stopping and self._queued < s.max_export_batch:
                    self._cond.wait(s.schedule_delay_s)
                chunks = list(self._chunks)
                self._chunks.clear()
                self._in_hand += self._queued
                self._queued = 0
                stopping = self._stopping
            self._set_queue()
            spans: list = []
            for chunk, _ in chunks:
                spans += self._spans_of(chunk)
            roots = self._due_roots(flush_all=stopping)
            with self._cond:
                self._in_hand += len(roots)  # (out of the open roots, into hand)
            spans += roots
            for i in range(0, len(spans), s.max_export_batch):
                batch = spans[i:i + s.max_export_batch]
                ok = self._export(batch)
                with self._cond:
                    if self._abandon:  # stop() has counted this batch and the rest
                        return
                    self._in_hand -= len(batch)
                if ok:
                    self.exported += len(batch)
                    self._count("exported", len(batch))
                else:
                    self._drop("export_failed", len(batch))
            self._progress()
            if stopping:
                return  # (nothing is queued after stopping: offer() drops and counts it)

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self)

    def _export(self, batch: list) -> bool:
        from opentelemetry.sdk.trace.export import SpanExportResult
        try:
            return self.exporter.export(batch) == SpanExportResult.SUCCESS
        except Exception:  # noqa: BLE001 (an exporter bug is counted as a failed export)
            log.exception("OTLP export raised")
            return False

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

    def _spans_of(self, chunk: pa.RecordBatch) -> list:
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        sampled = TraceFlags(TraceFlags.SAMPLED)
        st = {c: chunk.column(c).to_pylist() for c in _STR_COLS}
        pids = chunk.column("source_pid").to_pylist()
        ts, dur = chunk.column("ts").to_pylist(), chunk.column("duration_ms").to_pylist()
        codes, errors = chunk.column("type_code").to_pylist(), chunk.column("error").to_pylist()
        tok = {f: chunk.column(f).to_pylist() for f in _TOKENS}
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
                tokens = {f: tok[f][i] for f in _TOKENS}
                a.update({"gen_ai.operation.name": "chat", "gen_ai.request.model": name})
                if type(attrs.get("provider")) is str:
                    a["gen_ai.provider.name"] = attrs["provider"]
                for f, key in (("input_tokens", "gen_ai.usage.input_tokens"),
                               ("output_tokens", "gen_ai.usage.output_tokens"),
                               ("cache_read_tokens", "gen_ai.usage.cache_read.input_tokens"),
                               ("cache_write_tokens",
                                "gen_ai.usage.cache_creation.input_tokens")):
                    if tokens[f] is not None and tokens[f] == tokens[f]:  # (NaN: absent)
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


class SpanExportProcess(_SpanQueue):
    """:class:`SpanExport` in a process of its own, fed over a pipe: what the worker runs.

    Building spans and encoding them is Python work of ~70 µs a span; in a thread of the
    worker it holds the GIL against the event loop, whose every system call then waits for it
    (measured: a backlog drained at 17,900 events/s instead of 169,000 with every trace kept).
    Here the event loop pays only for sampling and a column take (:func:`chunk_of`); a sender
    thread writes each batch to the pipe as Arrow IPC (the GIL released while it writes), and a
    reader thread takes the child's counts into /metrics. Batches waiting for the sender are
    bounded by ``max_queue_spans``, beyond which they are dropped and counted (``queue_full``);
    the child's own queue has the same bound. If the child does not finish within the stop's
    timeout it is killed, and what it had not accounted for is counted as dropped
    (``shutdown``). ``exporter``: ``"module:factory"`` building the child's exporter (tests);
    default: the OTLP exporter of ``settings.protocol``."""

    def __init__(self, settings: OtlpSettings, metrics: Any = None, exporter: str | None = None):
        super().__init__(settings, metrics)
        self.exporter = exporter
        self._proc: Any = None
        self._send: Any = None
        self._recv: Any = None
        self._threads: list[threading.Thread] = []
        self._done = threading.Event()  # the child said goodbye (or is gone)
        self.sent = 0  # events of a span type written to the pipe
        # as the child last reported: how many of them it has read, and the spans it holds
        # (queued, being exported, roots still open) that nothing has counted yet
        self.child_received = 0
        self.child_unaccounted = 0

    def start(self) -> "SpanExportProcess":
        import multiprocessing as mp
        ctx = mp.get_context("spawn")  # (never fork a process with threads and gRPC)
        to_child, self._send = ctx.Pipe(duplex=False)
        self._recv, from_child = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_child_main, name="agentflux-otlp", daemon=True,
                                 args=(to_child, from_child, self.settings, self.exporter))
        self._proc.start()
        to_child.close()
        from_child.close()
        self._threads = [threading.Thread(target=self._sender, name="agentflux-otlp-send",
                                          daemon=True),
                         threading.Thread(target=self._reader, name="agentflux-otlp-read",
                                          daemon=True)]
        for t in self._threads:
            t.start()
        return self

    # --- threads -------------------------------------------------------------------------
    def _sender(self) -> None:
        while True:
            with self._cond:
                while not self._chunks and not self._stopping:
                    self._cond.wait()
                if not self._chunks:  # stopping, everything sent
                    break
                chunk, n = self._chunks.popleft()
                self._queued -= n
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, chunk.schema) as w:
                w.write_batch(chunk)
            try:
                self._send.send_bytes(memoryview(sink.getvalue()))
                self.sent += n
            except (OSError, ValueError):  # the child is gone: counted by the reader
                self._drop("export_failed", n)
        try:
            self._send.send_bytes(b"")  # the end: the child flushes and says goodbye
        except (OSError, ValueError):
            pass

    def _reader(self) -> None:
        try:
            while True:
                msg = self._recv.recv()
                kind = msg[0]
                if kind == "count":
                    _, outcome, n = msg
                    if outcome == "exported":
                        self.exported += n
                    self._count(outcome, n)
                elif kind == "drop":
                    self._drop(msg[1], msg[2])
                elif kind == "progress":
                    _, self.child_received, self.child_unaccounted = msg
                    self._set_queue()
                elif kind == "bye":
                    break
        except (EOFError, OSError):
            # the child died: what it held is lost, and counted
            if not self._stopping:
                log.error("the OTLP export process ended unexpectedly (exit code %s)",
                          self._proc.exitcode if self._proc else None)
                self._drop("export_failed", self._lost_in_child())
        finally:
            self._done.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is pending, let the child export it and its open roots within
        ``timeout_s``; then kill it and count what it had not accounted for. Idempotent."""
        if self._proc is None:
            return
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads[:1]:
            t.join(max(0.0, deadline - time.monotonic()))
        if not self._done.wait(max(0.0, deadline - time.monotonic())):
            log.warning("OTLP export did not finish within %.1f s; dropping the rest", timeout_s)
            self._proc.kill()
            self._done.wait(5.0)
            with self._cond:
                left = sum(n for _, n in self._chunks)
                self._chunks.clear()
            self._drop("shutdown", left + self._lost_in_child())
        self._proc.join(5.0)
        self._proc = None
        for conn in (self._send, self._recv):
            conn.close()

    # --- counting ------------------------------------------------------------------------
    def _set_queue(self) -> None:
        """The gauge: spans waiting here and those the child holds (as it last reported)."""
        if self.metrics is not None:
            self.metrics.set_otlp_queue(self._queued + (self.sent - self.child_received)
                                        + self.child_unaccounted)

    def _lost_in_child(self) -> int:
        """What the child held uncounted when it went away (once)."""
        n = self.sent - self.child_received + self.child_unaccounted
        self.child_received, self.child_unaccounted = self.sent, 0
        self._set_queue()
        return n

class _Report:
    """The child's metrics: each count goes to the parent over the pipe."""

    def __init__(self, conn: Any):
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, msg: tuple) -> None:
        with self.lock:
            self.conn.send(msg)

    def count_spans(self, outcome: str, n: int) -> None:
        if outcome != "dropped":  # (sent with its reason by count_spans_dropped)
            self.send(("count", outcome, n))

    def count_spans_dropped(self, reason: str, n: int) -> None:
        self.send(("drop", reason, n))

    def set_otlp_queue(self, n: int) -> None:
        pass


def _child_main(conn_in: Any, conn_out: Any, settings: OtlpSettings,
                exporter: str | None) -> None:
    """The export process: batches from the pipe -> :class:`SpanExport` -> the backend."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (the worker stops it, in order)
    if exporter:
        import importlib
        module, _, name = exporter.partition(":")
        exp = getattr(importlib.import_module(module), name)()
    else:
        exp = make_exporter(settings.protocol)
    report = _Report(conn_out)
    sx = SpanExport(settings, report, exp)
    received = [0]  # events of a span type taken from the pipe
    sx.on_progress = lambda x: report.send(("progress", received[0], x.unaccounted()))
    sx.start()
    try:
        while True:
            data = conn_in.recv_bytes()
            if not data:
                break
            batch = pa.ipc.open_stream(data).read_next_batch()
            n = int(np.isin(batch.column("type_code").to_numpy(), _SPAN_CODES).sum())
            received[0] += n
            sx.put(batch, n)
            report.send(("progress", received[0], sx.unaccounted()))
    except EOFError:  # the worker is gone: export what is held, then end
        pass
    sx.stop(timeout_s=CHILD_STOP_S)  # (counts what it could not export)
    report.send(("progress", received[0], 0))
    report.send(("bye",))


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
