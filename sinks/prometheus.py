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
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)

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


def _bucket_counts(bounds: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-bucket counts of ``values``: bucket i counts values <= bounds[i]; the last is +Inf."""
    return np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds) + 1)


def _cumulative(bounds: Sequence[float], counts: np.ndarray) -> list[tuple[str, int]]:
    """Prometheus histogram buckets (``le``, cumulative count) from per-bucket counts."""
    cum = np.cumsum(counts).tolist()
    return [*((repr(b), cum[i]) for i, b in enumerate(bounds)), ("+Inf", cum[-1])]


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
        self._open_windows = 0
        self._bounds = np.asarray(GENAI_DURATION_BUCKETS_S)
        self._hist: dict[tuple[str, str, str], list] = {}  # labels -> [bucket counts, sum]
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
        reason = label_value(reason)
        with self._lock:
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

    def set_open_windows(self, n: int) -> None:
        with self._lock:
            self._open_windows = n

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
            if arr.size == 0:
                return
            # bucket i counts values <= bounds[i]; the last slot is +Inf
            counts = _bucket_counts(self._bounds, arr)
            total = float(arr.sum())
        key = (label_value(span_type), label_value(name), label_value(philosophy))
        with self._lock:
            h = self._hist.get(key)
            if h is None:
                h = self._hist[key] = [np.zeros(len(self._bounds) + 1, dtype=np.int64), 0.0]
            h[0] += counts
            h[1] += total

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
            fresh_counts, fresh_sum = self._fresh[0].copy(), self._fresh[1]
            records, windows, open_windows = self._records, self._kpi_windows, self._open_windows
            duplicates, event_time = self._duplicates, dict(self._event_time)
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
            h.add_metric(list(labels), _cumulative(GENAI_DURATION_BUCKETS_S, counts), total)
        yield h
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
