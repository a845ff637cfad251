"""Prometheus exposition of the pipeline's own metrics.

A custom collector keeps plain counters and numpy histogram buckets, updated once per batch
(``observe_many`` bins a whole array with ``searchsorted``), because a per-event
``Histogram.observe`` would cost more than the rest of the pipeline. Units are base units
(seconds), counters end in ``_total``, and span durations use the OpenTelemetry GenAI bucket
boundaries of ``gen_ai.client.operation.duration``.
"""

from __future__ import annotations

import bisect
import re
import threading
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from prometheus_client.samples import Exemplar

GENAI_DURATION_BUCKETS_S = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12,
                            10.24, 20.48, 40.96, 81.92)

# event time to the commit of the transaction that landed it (freshness of the history)
FRESHNESS_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
                       60.0, 300.0)

MAX_LABEL_CHARS = 128
# C0/C1 controls, DEL, line/paragraph separators, lone surrogates (not encodable as UTF-8)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def label_value(value: object, max_chars: int = MAX_LABEL_CHARS) -> str:
    """A label value safe to expose: control characters become U+FFFD and the length is
    bounded (``…`` marks a cut). Label values come from events (tool, model, philosophy), so
    a runtime must not be able to break a scrape, a dashboard or a log line through them."""
    s = value if type(value) is str else str(value)
    if len(s) <= max_chars and s.isprintable():  # the common case: nothing to do
        return s
    s = _UNSAFE.sub("\ufffd", s)
    return s if len(s) <= max_chars else s[:max_chars - 1] + "…"


# KPI measures of closed windows -> Prometheus counters: (type, measure) -> (family, fixed
# labels); the row's name goes in the type's name label (NAME_LABELS), with its philosophy.
# Ratios (hit rates, warm-start rate ...) are rates of these counters, computed by Prometheus.
KPI_COUNTERS: dict[tuple[str, str], tuple[str, tuple[tuple[str, str], ...]]] = {
    **{("cache.lookup", m): ("cache_lookups", (("outcome", o), ("source", "events")))
       for m, o in (("hits", "hit"), ("misses", "miss"), ("expired", "expired"))},
    **{("cache.stats", m): ("cache_lookups", (("outcome", o), ("source", "stats")))
       for m, o in (("hits", "hit"), ("misses", "miss"), ("expired", "expired"))},
    ("cache.stats", "evictions"): ("cache_evictions", ()),
    **{("llm.call", f"{k}_tokens"): ("llm_tokens", (("kind", k),))
       for k in ("input", "output", "cache_read", "cache_write")},
    ("llm.call", "cost_usd"): ("llm_cost_usd", ()),
    ("prompt_cache.lookup", "hits"): ("prompt_cache_lookups", (("outcome", "hit"),)),
    ("prompt_cache.lookup", "misses"): ("prompt_cache_lookups", (("outcome", "miss"),)),
    ("context.compress", "tokens_before"): ("compression_tokens", (("stage", "before"),)),
    ("context.compress", "tokens_after"): ("compression_tokens", (("stage", "after"),)),
    ("routing.decision", "count"): ("routing_decisions", ()),
    ("routing.decision", "fallbacks"): ("routing_fallbacks", ()),
    **{("executor.task", m): ("executor_tasks", (("outcome", m),))
       for m in ("won", "failed", "cancelled")},
    ("executor.task", "speculative"): ("executor_speculative_tasks", ()),
    ("executor.task", "budget_exceeded"): ("executor_budget_exceeded", ()),
    ("pool.acquire", "warm"): ("pool_acquires", (("start", "warm"),)),
    ("pool.acquire", "cold"): ("pool_acquires", (("start", "cold"),)),
    # calls and failed calls: the error ratios of the burn-rate and streak alerting rules
    ("tool.call", "count"): ("tool_calls", ()),
    ("tool.call", "errors"): ("tool_call_errors", ()),
    ("llm.call", "count"): ("llm_calls", ()),
    ("llm.call", "errors"): ("llm_call_errors", ()),
    ("context.compress", "count"): ("compressions", ()),
}
NAME_LABELS = {"tool.call": "tool", "cache.lookup": "cache", "cache.stats": "cache", "llm.call": "model",
               "prompt_cache.lookup": "prefix", "context.compress": "strategy",
               "routing.decision": "model", "executor.task": "task", "pool.acquire": "pool"}
KPI_HELP = {
    "cache_lookups": "Cache lookups by outcome, from sampled lookup events or stats deltas",
    "cache_evictions": "Cache entries evicted (stats deltas)",
    "llm_tokens": "LLM tokens by kind (input includes cached; cache_read/cache_write are part of it)",
    "llm_cost_usd": "LLM cost in US dollars",
    "prompt_cache_lookups": "Prompt-prefix registry lookups by outcome",
    "compression_tokens": "Context tokens before and after compression, per strategy",
    "routing_decisions": "Routing decisions per chosen model",
    "routing_fallbacks": "Routing decisions that fell back from another model",
    "executor_tasks": "Executor tasks by outcome",
    "executor_speculative_tasks": "Speculative executor tasks",
    "executor_budget_exceeded": "Executor tasks refused or stopped by their budget",
    "pool_acquires": "Container acquisitions by start (warm or cold)",
    "tool_calls": "Tool calls, per tool (of closed KPI windows)",
    "tool_call_errors": "Tool calls that failed, per tool (of closed KPI windows)",
    "llm_calls": "LLM calls, per model (of closed KPI windows)",
    "llm_call_errors": "LLM calls that failed, per model (of closed KPI windows)",
    "compressions": "Context compressions, per strategy (of closed KPI windows)",
}
# a KPI family keeps at most this many label sets; a measure of a new one past the cap is added
# to the family's overflow series (name and philosophy OVERFLOW, other labels kept) and counted
# in agentflux_kpi_series_overflow_total
MAX_KPI_SERIES = 2000
# Span-duration histogram series (type, name, philosophy) kept; a new one past the cap is folded
# into its type's overflow series (name and philosophy OVERFLOW), so sums and counts over all
# series stay exact, and the spans folded are counted (agentflux_span_series_overflow_total).
# Each series is 17 samples a scrape: 1,000 series is ~17,000 lines, rendered in ~0.1 s.
MAX_SPAN_SERIES = 1000
OVERFLOW = "__overflow__"
# per-philosophy gauges (resource maxima) keep at most this many philosophies
MAX_PHILOSOPHY_SERIES = 200
# dead-letter reasons are identifiers from the codec and the validator (invalid_json, oversize,
# unknown_type ...; the detail goes in the dead-letter record's headers, never in a label); any
# other string, or a reason past the cap, is counted as "other"
MAX_DEADLETTER_REASONS = 64
_REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")
# exemplar trace ids: W3C (32 hex) or 64-bit (16 hex) ids only (OpenMetrics bounds an exemplar's
# labels to 128 characters; anything else a runtime sends is not a trace id a backend can open)
_TRACE_ID = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}")
# last closed window's maximum of a resource measure, per philosophy: (measure, gauge, help)
RESOURCE_GAUGES = (("cpu_percent", "resource_cpu_percent_max",
                    "CPU percent, maximum over the last closed window's samples"),
                   ("memory_percent", "resource_memory_percent_max",
                    "Memory percent, maximum over the last closed window's samples"))


def _bucket_counts(bounds: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-bucket counts of ``values``: bucket i counts values <= bounds[i]; the last is +Inf."""
    return np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds) + 1)


def _cumulative(bounds: Sequence[float], counts: np.ndarray,
                exemplars: dict[int, Exemplar] | None = None) -> list[tuple]:
    """Prometheus histogram buckets (``le``, cumulative count[, exemplar]) from per-bucket
    counts; ``exemplars``: bucket index -> the exemplar of an observation in that bucket."""
    cum = np.cumsum(counts).tolist()
    out = [*((repr(b), cum[i]) for i, b in enumerate(bounds)), ("+Inf", cum[-1])]
    if exemplars:
        for i, ex in exemplars.items():
            out[i] = (*out[i], ex)
    return out


class PipelineMetrics:
    """The worker's metrics. Thread-safe; register with ``registry`` and serve with :meth:`serve`."""

    def __init__(self, registry: CollectorRegistry | None = None, prefix: str = "agentflux"):
        self.prefix = prefix
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._events: dict[str, int] = {}
        self._deadletters: dict[str, int] = {}
        self._records = 0
        self._duplicates = 0
        self._event_time: dict[str, int] = {}  # "early" / "late" -> events
        self._lag: dict[tuple[str, int], int] = {}
        self._rows: dict[str, int] = {}
        self._kpi_windows = 0
        self._kpi: dict[str, dict[tuple, float]] = {}  # family -> labels -> total
        self._kpi_overflow = 0
        self._resource: dict[tuple[str, str], tuple[int, float]] = {}  # -> (window, max)
        self._alerts: dict[tuple[str, str], int] = {}  # (rule, status) -> transitions
        self._active_alerts = 0
        self._evicted: dict[str, int] = {}  # rule -> keys forgotten early (max_keys)
        # rule -> rows of new keys past max_keys_per_rule taken as its overflow key's
        self._alert_overflow: dict[str, int] = {}
        self._delivery: dict[tuple[str, str], int] = {}  # (sink, outcome) -> alerts
        self._open_windows = 0
        self._otlp_spans: dict[str, int] = {}  # outcome -> spans
        self._otlp_dropped: dict[str, int] = {}  # reason -> spans
        self._otlp_queue = 0
        self._loop: dict[tuple[str, str], int] = {}  # (kind, outcome) -> predictions / commands
        self._pool_targets: dict[str, int] = {}  # pool -> the last target the autoscaler issued
        self._bounds = np.asarray(GENAI_DURATION_BUCKETS_S)
        self._hist: dict[tuple[str, str, str], list] = {}  # labels -> [bucket counts, sum]
        self._span_overflow: dict[str, int] = {}  # type -> spans folded into its overflow series
        self._exemplars: dict[tuple[str, str, str], dict[int, Exemplar]] = {}  # -> bucket -> ex
        self._philosophy_overflow = 0
        self._fresh_bounds = np.asarray(FRESHNESS_BUCKETS_S)
        self._fresh = [np.zeros(len(FRESHNESS_BUCKETS_S) + 1, dtype=np.int64), 0.0]
        self._server = None
        self.registry.register(self)

    # --- updates (once per batch) ------------------------------------------------------------
    def count_events(self, counts: dict[str, int]) -> None:
        with self._lock:
            for k, n in counts.items():
                k = label_value(k)
                self._events[k] = self._events.get(k, 0) + n

    def count_records(self, n: int) -> None:
        with self._lock:
            self._records += n

    def count_deadletters(self, reason: str, n: int = 1) -> None:
        """Dead letters by reason: an identifier of a bounded set; anything else (or a new
        reason past :data:`MAX_DEADLETTER_REASONS`) is counted as ``other``."""
        if type(reason) is not str or not _REASON.fullmatch(reason):
            reason = "other"
        with self._lock:
            if reason not in self._deadletters and len(self._deadletters) >= MAX_DEADLETTER_REASONS:
                reason = "other"
            self._deadletters[reason] = self._deadletters.get(reason, 0) + n

    def count_duplicates(self, n: int) -> None:
        with self._lock:
            self._duplicates += n

    def count_event_time(self, kind: str, n: int) -> None:
        """Events whose time was ahead of the wall clock by more than the allowed skew
        (``early``, clamped for windowing) or behind an already published window (``late``)."""
        with self._lock:
            self._event_time[kind] = self._event_time.get(kind, 0) + n

    def count_kpi_windows(self, n: int) -> None:
        with self._lock:
            self._kpi_windows += n

    def add_kpi_rows(self, rows: Iterable[dict]) -> None:
        """Add closed window rows' measures to the KPI counters (dimension ``name`` only: a
        session or agent id is never a label)."""
        with self._lock:
            for r in rows:
                t = r["type"]
                if r["dim"] != "name":
                    continue
                if t == "resource.sample":
                    for m, gauge, _ in RESOURCE_GAUGES:
                        v = r["maxes"].get(m)
                        key = (gauge, label_value(r["philosophy"]))
                        if v is None:
                            continue
                        if key not in self._resource and (
                                len(self._resource) >= MAX_PHILOSOPHY_SERIES * len(RESOURCE_GAUGES)):
                            self._philosophy_overflow += 1
                            continue
                        if r["window_start_ns"] >= self._resource.get(key, (-1, 0.0))[0]:
                            self._resource[key] = (r["window_start_ns"], v)
                    continue
                label = NAME_LABELS.get(t)
                if label is None:
                    continue
                for m in ("count", "errors", *r["sums"]):
                    spec = KPI_COUNTERS.get((t, m))
                    if spec is None:
                        continue
                    v = r.get(m, 0) if m in ("count", "errors") else r["sums"][m]
                    if not v:
                        continue
                    family, fixed = spec
                    series = self._kpi.setdefault(family, {})
                    key = ((label, label_value(r["name"])),
                           ("philosophy", label_value(r["philosophy"])), *fixed)
                    if key not in series and len(series) >= MAX_KPI_SERIES:
                        # folded into the family's overflow series: its sum stays exact
                        self._kpi_overflow += 1
                        key = ((label, OVERFLOW), ("philosophy", OVERFLOW), *fixed)
                    series[key] = series.get(key, 0.0) + v

    def count_alert(self, rule: str, status: str) -> None:
        with self._lock:
            k = (label_value(rule), status)
            self._alerts[k] = self._alerts.get(k, 0) + 1

    def count_alert_keys_evicted(self, rule: str, n: int) -> None:
        with self._lock:
            k = label_value(rule)
            self._evicted[k] = self._evicted.get(k, 0) + n

    def count_alert_rows_overflowed(self, rule: str, n: int) -> None:
        with self._lock:
            k = label_value(rule)
            self._alert_overflow[k] = self._alert_overflow.get(k, 0) + n

    def set_active_alerts(self, n: int) -> None:
        with self._lock:
            self._active_alerts = n

    def count_delivery(self, sink: str, outcome: str, n: int = 1) -> None:
        with self._lock:
            k = (sink, outcome)
            self._delivery[k] = self._delivery.get(k, 0) + n

    def set_open_windows(self, n: int) -> None:
        with self._lock:
            self._open_windows = n

    # OTLP span export (called by sinks/otlp.py); outcomes and reasons are a fixed set
    OTLP_OUTCOMES = ("exported", "dropped", "sampled_out")
    OTLP_DROP_REASONS = ("queue_full", "export_failed", "shutdown")

    def count_spans(self, outcome: str, n: int) -> None:
        """Spans by outcome: ``exported``, ``dropped`` or ``sampled_out``."""
        k = label_value(outcome)
        with self._lock:
            self._otlp_spans[k] = self._otlp_spans.get(k, 0) + n

    def count_spans_dropped(self, reason: str, n: int) -> None:
        """Spans dropped, by reason: ``queue_full``, ``export_failed`` or ``shutdown``."""
        k = label_value(reason)
        with self._lock:
            self._otlp_dropped[k] = self._otlp_dropped.get(k, 0) + n

    def set_otlp_queue(self, n: int) -> None:
        """Spans waiting in the OTLP export queue now."""
        with self._lock:
            self._otlp_queue = n

    # the closed loop (agents/loop.py): outcomes are a fixed set
    LOOP_OUTCOMES = ("published", "unsigned", "stale", "failed")
    MAX_POOLS = 200

    def count_loop(self, kind: str, outcome: str, n: int = 1) -> None:
        """Predictions and pool commands made, by outcome: ``published``, ``unsigned`` (no
        command key set: landed, not sent), ``stale`` (decided on a backlog: landed, not sent),
        ``failed`` (the broker refused them; sent again later)."""
        with self._lock:
            k = (kind, outcome)
            self._loop[k] = self._loop.get(k, 0) + n

    def set_pool_target(self, pool: str, target: int) -> None:
        """The target size the autoscaler last issued for ``pool`` (at most :data:`MAX_POOLS`
        pools are shown)."""
        pool = label_value(pool)
        with self._lock:
            if pool in self._pool_targets or len(self._pool_targets) < self.MAX_POOLS:
                self._pool_targets[pool] = target

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        topic = label_value(topic)
        with self._lock:
            self._lag[(topic, partition)] = lag

    def set_rows(self, table: str, rows: int) -> None:
        with self._lock:
            self._rows[table] = rows

    def add_rows(self, table: str, rows: int) -> None:
        with self._lock:
            self._rows[table] = self._rows.get(table, 0) + rows

    def observe_many(self, span_type: str, name: str, philosophy: str,
                     seconds: Iterable[float] | np.ndarray) -> None:
        if type(seconds) is list and len(seconds) < 48:  # numpy's fixed cost loses on small lists
            counts = np.zeros(len(self._bounds) + 1, dtype=np.int64)
            for v in seconds:
                counts[bisect.bisect_left(GENAI_DURATION_BUCKETS_S, v)] += 1
            total = float(sum(seconds))
        else:
            arr = np.asarray(seconds, dtype=np.float64)
            self.observe_grouped([(span_type, name, philosophy)], arr,
                                 np.zeros(arr.size, np.int64))
            return
        with self._lock:
            h = self._series(span_type, name, philosophy, len(seconds))[1]
            h[0] += counts
            h[1] += total

    def _series(self, span_type: str, name: str, philosophy: str, n: int) -> tuple[tuple, list]:
        """The histogram series of a span key (with the lock held): its own while fewer than
        :data:`MAX_SPAN_SERIES` exist, else its type's overflow series (``n`` spans counted as
        folded)."""
        key = (label_value(span_type), label_value(name), label_value(philosophy))
        h = self._hist.get(key)
        if h is None:
            if len(self._hist) >= MAX_SPAN_SERIES:
                self._span_overflow[key[0]] = self._span_overflow.get(key[0], 0) + n
                key = (key[0], OVERFLOW, OVERFLOW)
                h = self._hist.get(key)
            if h is None:
                h = self._hist[key] = [np.zeros(len(self._bounds) + 1, dtype=np.int64), 0.0]
        return key, h

    def observe_grouped(self, spans: Sequence[tuple[str, str, str]], seconds: np.ndarray,
                        groups: np.ndarray) -> None:
        """``observe_many(*spans[g], seconds[groups == g])`` for every g at once (one
        ``searchsorted`` and one ``bincount`` for a whole frame's spans)."""
        if not len(seconds):
            return
        width = len(self._bounds) + 1
        flat = groups * width + np.searchsorted(self._bounds, seconds, side="left")
        counts = np.bincount(flat, minlength=len(spans) * width).reshape(-1, width)
        totals = np.bincount(groups, weights=seconds, minlength=len(spans)).tolist()
        present = np.unique(groups).tolist()
        sizes = counts.sum(axis=1).tolist()
        with self._lock:
            for g in present:
                h = self._series(*spans[g], sizes[g])[1]
                h[0] += counts[g]
                h[1] += totals[g]

    def observe_exemplars(self, keys: Sequence[tuple[str, str, str]], key_index: np.ndarray,
                          duration_ms: np.ndarray, trace_ids, ts_ns: np.ndarray) -> None:
        """Exemplars for the span-duration histogram from a batch of events: per (span key,
        bucket), the batch's last event with a duration and a trace id becomes the bucket's
        exemplar ``{trace_id=...}`` (value: its duration, timestamp: its event time). Picked
        with numpy; Python touches one event per (series, bucket) present. ``keys`` and
        ``key_index``: the span key of every event (``EventFrame.spans()``), ``trace_ids``: a
        pyarrow string array with nulls. Call after :meth:`observe_grouped` for the batch."""
        if trace_ids is None or len(trace_ids) == 0 or trace_ids.null_count == len(trace_ids):
            return
        valid = ~np.isnan(duration_ms)
        if trace_ids.null_count:
            valid &= trace_ids.is_valid().to_numpy(zero_copy_only=False)
        sel = np.flatnonzero(valid)
        if not sel.size:
            return
        width = len(self._bounds) + 1
        seconds = duration_ms[sel] / 1000.0
        combo = key_index[sel].astype(np.int64) * width + np.searchsorted(
            self._bounds, seconds, side="left")
        slot = np.full(len(keys) * width, -1, np.int64)
        slot[combo] = np.arange(sel.size)  # (a repeated index keeps one of its events)
        last = slot[slot >= 0]
        tids = trace_ids.take(pa.array(sel[last])).to_pylist()
        k_of = key_index[sel[last]].tolist()
        b_of = (combo[last] % width).tolist()
        vals = seconds[last].tolist()
        times = (ts_ns[sel[last]] / 1e9).tolist()
        with self._lock:
            for tid, k, b, v, t in zip(tids, k_of, b_of, vals, times):
                if not _TRACE_ID.fullmatch(tid):
                    continue
                span_type, name, philosophy = keys[k]
                key = (label_value(span_type), label_value(name), label_value(philosophy))
                if key not in self._hist:
                    key = (key[0], OVERFLOW, OVERFLOW)
                    if key not in self._hist:
                        continue
                self._exemplars.setdefault(key, {})[b] = Exemplar({"trace_id": tid}, v, t)

    def observe_freshness(self, seconds: np.ndarray) -> None:
        """Event time to landed, one value per landed event (a batch at a time)."""
        if seconds.size == 0:
            return
        counts = _bucket_counts(self._fresh_bounds, seconds)
        with self._lock:
            self._fresh[0] += counts
            self._fresh[1] += float(seconds.sum())

    # --- exposition --------------------------------------------------------------------------
    def collect(self):
        p = self.prefix
        with self._lock:
            events = dict(self._events)
            dls = dict(self._deadletters)
            lag = dict(self._lag)
            rows = dict(self._rows)
            hist = {k: (v[0].copy(), v[1]) for k, v in self._hist.items()}
            exemplars = {k: dict(v) for k, v in self._exemplars.items()}
            span_overflow, phil_overflow = dict(self._span_overflow), self._philosophy_overflow
            fresh_counts, fresh_sum = self._fresh[0].copy(), self._fresh[1]
            records, windows, open_windows = self._records, self._kpi_windows, self._open_windows
            duplicates, event_time = self._duplicates, dict(self._event_time)
            kpi = {f: dict(v) for f, v in self._kpi.items()}
            kpi_overflow, resource = self._kpi_overflow, dict(self._resource)
            alerts, active, delivery = (dict(self._alerts), self._active_alerts,
                                        dict(self._delivery))
            evicted, alert_overflow = dict(self._evicted), dict(self._alert_overflow)
            otlp_spans, otlp_dropped = dict(self._otlp_spans), dict(self._otlp_dropped)
            otlp_queue = self._otlp_queue
            loop, pool_targets = dict(self._loop), dict(self._pool_targets)
        c = CounterMetricFamily(f"{p}_loop_outputs", "Resource predictions and pool commands "
                                "the closed loop made, by kind and outcome",
                                labels=["kind", "outcome"])
        for (kind, outcome), n in sorted(loop.items()):
            c.add_metric([kind, outcome], n)
        yield c
        g = GaugeMetricFamily(f"{p}_pool_target_containers", "The target size the autoscaler "
                              "last issued per pool", labels=["pool"])
        for pool, n in sorted(pool_targets.items()):
            g.add_metric([pool], n)
        yield g
        c = CounterMetricFamily(f"{p}_events", "Valid events consumed, by event type", labels=["type"])
        for k, n in sorted(events.items()):
            c.add_metric([k], n)
        yield c
        c = CounterMetricFamily(f"{p}_deadletter", "Events and records sent to the dead-letter "
                                "topic, by reason", labels=["reason"])
        for k, n in sorted(dls.items()):
            c.add_metric([k], n)
        yield c
        yield CounterMetricFamily(f"{p}_records", "Kafka records consumed from the events topic",
                                  value=records)
        yield CounterMetricFamily(f"{p}_duplicate_events", "Events not landed because an event "
                                  "with the same id was landed recently (idempotency on id)",
                                  value=duplicates)
        c = CounterMetricFamily(f"{p}_event_time_skew_events", "Events early (time ahead of the "
                                "wall clock beyond the allowed skew; clamped for windowing) or "
                                "late (for a window already published); all of them land",
                                labels=["kind"])
        for k in ("early", "late"):
            c.add_metric([k], event_time.get(k, 0))
        yield c
        yield CounterMetricFamily(f"{p}_kpi_windows", "KPI window rows published", value=windows)
        yield GaugeMetricFamily(f"{p}_open_windows", "KPI windows still open (not yet published)",
                                value=open_windows)
        g = GaugeMetricFamily(f"{p}_consumer_lag", "Records not yet processed, per partition "
                              "(high watermark - next offset)", labels=["topic", "partition"])
        for (t, part), n in sorted(lag.items()):
            g.add_metric([t, str(part)], n)
        yield g
        g = GaugeMetricFamily(f"{p}_history_rows", "Rows in the DuckDB history, by table",
                              labels=["table"])
        for t, n in sorted(rows.items()):
            g.add_metric([t], n)
        yield g
        h = HistogramMetricFamily(f"{p}_span_duration_seconds",
                                  "Duration of spans (tool calls, LLM calls, ...) in seconds",
                                  labels=["type", "name", "philosophy"], unit="")
        for labels, (counts, total) in sorted(hist.items()):
            h.add_metric(list(labels), _cumulative(GENAI_DURATION_BUCKETS_S, counts,
                                                   exemplars.get(labels)), total)
        yield h
        c = CounterMetricFamily(f"{p}_span_series_overflow", "Spans observed into their type's "
                                f"{OVERFLOW} series of {p}_span_duration_seconds because "
                                f"{MAX_SPAN_SERIES} (type, name, philosophy) series already "
                                "existed, by type", labels=["type"])
        for t, n in sorted(span_overflow.items()):
            c.add_metric([t], n)
        yield c
        yield CounterMetricFamily(f"{p}_philosophy_series_overflow", "Resource maxima not "
                                  f"exposed because {MAX_PHILOSOPHY_SERIES} philosophies "
                                  "already have a series", value=phil_overflow)
        for family, series in sorted(kpi.items()):
            names = [k for k, _ in next(iter(series))]
            c = CounterMetricFamily(f"{p}_{family}", KPI_HELP[family], labels=names)
            for key, v in sorted(series.items()):
                c.add_metric([v_ for _, v_ in key], v)
            yield c
        yield CounterMetricFamily(f"{p}_kpi_series_overflow", "KPI measures added to their "
                                  f"family's {OVERFLOW} series because it already had "
                                  f"{MAX_KPI_SERIES} series", value=kpi_overflow)
        for _, gauge, help_ in RESOURCE_GAUGES:
            g = GaugeMetricFamily(f"{p}_{gauge}", help_, labels=["philosophy"])
            for (name, phil), (_, v) in sorted(resource.items()):
                if name == gauge:
                    g.add_metric([phil], v)
            yield g
        c = CounterMetricFamily(f"{p}_alerts", "Alert transitions raised by the failure "
                                "detector, by rule and status", labels=["rule", "status"])
        for (rule, status), n in sorted(alerts.items()):
            c.add_metric([rule, status], n)
        yield c
        yield GaugeMetricFamily(f"{p}_alerts_active", "Alerts firing now", value=active)
        c = CounterMetricFamily(f"{p}_alert_keys_evicted", "Keys (sessions ...) a rule forgot "
                                "before their time to stay within its max_keys, by rule",
                                labels=["rule"])
        for rule, n in sorted(evicted.items()):
            c.add_metric([rule], n)
        yield c
        c = CounterMetricFamily(f"{p}_alert_rows_overflow", "KPI rows of new keys a rule took "
                                "as its overflow key's (__overflow__), past its "
                                "max_keys_per_rule, by rule", labels=["rule"])
        for rule, n in sorted(alert_overflow.items()):
            c.add_metric([rule], n)
        yield c
        c = CounterMetricFamily(f"{p}_alert_deliveries", "Alert transitions delivered, retried, "
                                "dropped or rejected, by sink", labels=["sink", "outcome"])
        for (sink, outcome), n in sorted(delivery.items()):
            c.add_metric([sink, outcome], n)
        yield c
        c = CounterMetricFamily(f"{p}_otlp_spans", "Spans handed to the OTLP exporter, by "
                                "outcome (exported, dropped, sampled_out)", labels=["outcome"])
        for o in sorted({*self.OTLP_OUTCOMES, *otlp_spans}):
            c.add_metric([o], otlp_spans.get(o, 0))
        yield c
        c = CounterMetricFamily(f"{p}_otlp_spans_dropped", "Spans dropped by the OTLP exporter, "
                                "by reason (queue_full, export_failed, shutdown)",
                                labels=["reason"])
        for r in sorted({*self.OTLP_DROP_REASONS, *otlp_dropped}):
            c.add_metric([r], otlp_dropped.get(r, 0))
        yield c
        yield GaugeMetricFamily(f"{p}_otlp_queue_spans", "Spans waiting in the OTLP export "
                                "queue", value=otlp_queue)
        h = HistogramMetricFamily(f"{p}_landing_freshness_seconds",
                                  "Event time to the commit of the history transaction that "
                                  "landed the event, in seconds (clamped at 0)", unit="")
        h.add_metric([], _cumulative(FRESHNESS_BUCKETS_S, fresh_counts), fresh_sum)
        yield h

    def serve(self, host: str = "127.0.0.1", port: int = 9464) -> int:
        """Serve /metrics on ``host:port`` (port 0 picks a free one); returns the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return server.server_address[1]

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
