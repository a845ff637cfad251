"""``agentflux bench pipeline``: one worker on the real broker beside its peers doing the same
work, the history's freshness, landing and query figures, and the emitter's cost in the caller.

The work: validate every event, land every valid event as Parquet segments of a history (a root
directory of its own per contender), p50/p99 per span key per 10 s tumbling window. Every
contender gets N events of its own, produced before it starts into a fresh topic (4 partitions)
in records of 1,000 events, as the Emitter sends them (the per-event Faust baseline: one event
per record); its clock runs from its first consumed record until all N are processed or landed.

* ``events_per_s``: one worker process (``agentflux worker``); done when its /metrics say the
  history holds all N. The benchmark reads /metrics and the worker's RSS (psutil) once a second
  while it drains (the worker renders ~1,000 series a scrape; faster polling would cost it CPU),
  more often only before its first record and in its last second, to place both ends.
* Peers, each in a process of its own, in turn (``--peer-events`` each; rates are compared):
  ``faust_per_event_events_per_s`` (one event per record through a per-event Faust agent,
  bench/baseline.py), ``quixstreams_events_per_s`` (an idiomatic Quix Streams application,
  bench/peers.py) and ``raw_consume_events_per_s`` (a bare aiokafka consumer decoding the JSON
  and discarding it: this machine's limit for a Python consumer). ``ratio_faust``,
  ``ratio_quixstreams`` and ``fraction_of_raw`` divide ``events_per_s`` by them.
* ``freshness_p99_s``: after the drain, the same worker receives events emitted live (event time
  = now) through the Emitter at 10,000 events/s for ~20 s (``--freshness-seconds``; 0 skips
  the phase); the p99 of event time to its segment being in place, from the worker's
  ``agentflux_landing_freshness_seconds`` histogram (only what this phase added to it).
* ``freshness_prometheus_p99_s`` (and ``_p50_s``): in the same phase, a real Prometheus
  (Debian's ``prometheus``, :mod:`agentflux.localprom`) scrapes the worker every
  ``freshness_prometheus_scrape_interval_s`` (1 s) and its query API is polled every 50 ms for
  ``sum(agentflux_events_total)`` (counted when an event has landed). The k-th emitted event
  (by event time) is visible once the query returns at least k events more than before the
  phase; its freshness is that poll's wall time minus its event time. Target: p99 <= 2 s plus
  the scrape interval. A missing ``prometheus`` is an error naming the Debian package.
* ``landing_rows_per_s``: in this process, with the worker stopped: 1,000,000 realistic event
  rows (``--landing-rows``; synthetic events in records of 1,000, decoded by the worker's
  codec, one :class:`~agentflux.streams.frame.EventFrame` per 100,000 rows as an Arrow table in
  the ``events`` schema) are written to a fresh history root as segments of 100,000 rows
  (``History.write_segment``: Parquet, zstd, fsync, rename); rows over the seconds of the
  writes alone.
* ``query_events_by_type_ms``: the median of 5 runs of ``SELECT type, count(*) FROM events GROUP
  BY type`` through the history's DuckDB catalog (:func:`agentflux.sinks.catalog.connect`) over
  the worker's history once it has stopped (the drain plus the freshness phase); below 1,000,000
  events (a small ``--events``) the rows above are landed into it too, as segments of a
  log of their own. ``query_events_rows`` is the rows the query counted,
  ``query_events_segments`` the events segment files under the root.
* ``emit_median_us``: the median wall time of one ``Emitter.emit()`` call with a live producer;
  ``ack_p99_ms``: write-to-ack p99 (emit() call to broker ack, acks=all) at a paced 10,000
  events/s for a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..config import ConfigError, Settings, Topics

if TYPE_CHECKING:
    import pyarrow as pa

RECORD_EVENTS = 1000
EVENTS_ROWS = 'agentflux_history_rows{table="events"}'
RECORDS = "agentflux_records_total"
FRESHNESS = "agentflux_landing_freshness_seconds"
SCRAPE_EVERY_S = 1.0
FRESHNESS_RATE = 10_000
FRESHNESS_S = 20.0
PROM_SCRAPE_S = 1.0  # the scrape interval of the Prometheus of the freshness phase
PROM_POLL_S = 0.05  # how often its query API is read
PROM_EVENTS = "sum(agentflux_events_total)"
RSS_FLAT_TOLERANCE = 0.10
LANDING_ROWS = 1_000_000
SEGMENT_ROWS = 100_000
QUERY_MIN_ROWS = 1_000_000
QUERY_RUNS = 5
QUERY = "SELECT type, count(*) FROM events GROUP BY type"
# key prefix -> (module run with -m, events per record); each prints one JSON line when done
PEERS = {"faust_per_event": ("agentflux.bench.baseline", 1),
         "quixstreams": ("agentflux.bench.peers", RECORD_EVENTS),
         "raw_consume": ("agentflux.bench.peers", RECORD_EVENTS)}


def _events(n: int, seed: int):
    from ..runtime.simulate import SimConfig, SyntheticRuntime
    return SyntheticRuntime(SimConfig(events=n, agents=64, seed=seed)).events()


async def _produce(settings: Settings, topic: str, n: int, per_record: int) -> None:
    from aiokafka import AIOKafkaProducer

    from ..schemas.wire import encode_batch
    producer = AIOKafkaProducer(**settings.kafka_client_kwargs(), linger_ms=5,
                                max_batch_size=4 * 1024 * 1024, max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        chunk: list[bytes] = []
        pending = []
        for i, ev in enumerate(_events(n, seed=n), 1):
            chunk.append(orjson.dumps(ev))
            if len(chunk) == per_record or i == n:
                value = encode_batch(chunk) if per_record > 1 else chunk[0]
                pending.append(await producer.send(topic, value, key=ev["session_id"].encode()))
                chunk = []
                if len(pending) >= 2000:
                    await asyncio.gather(*pending)
                    pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _settings_for(base: Settings, tmp: Path, name: str) -> Settings:
    """Settings with topics, a consumer group and a history of their own, topics created."""
    from ..localkafka import free_port
    from ..streams.topics import ensure_topics
    run = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    s = base.replace(app_id=run, topics=Topics.with_prefix(run), window_s=10.0, grace_s=2.0,
                     history_path=str(tmp / f"{run}-history"), metrics_port=free_port(),
                     web_port=free_port())
    asyncio.run(ensure_topics(s))
    return s


# --- the worker --------------------------------------------------------------------------------

def _third_max(samples: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Largest sample in [lo, hi]; the sample nearest to its middle when none falls inside."""
    inside = [v for t, v in samples if lo <= t <= hi]
    if inside:
        return max(inside)
    return min(samples, key=lambda s: abs(s[0] - (lo + hi) / 2))[1]


def _drain(worker: Any, n: int, deadline_s: float = 1800.0) -> dict[str, Any]:
    """Watch ``worker`` land ``n`` events: the rate from its first record (its /metrics read
    about once a second) and its RSS (read from /proc every 0.1 s, which costs the worker
    nothing: a drain of a few seconds still has tens of samples per third)."""
    import psutil
    proc = psutil.Process(worker.pid)
    t_start = time.perf_counter()
    rss: list[tuple[float, float]] = []  # (seconds since t_start, MiB)
    t0 = None
    rows = scrapes = 0
    before = t_start  # the last scrape that saw no record consumed
    next_scrape = t_start
    while True:
        now = time.perf_counter()
        if now - t_start > deadline_s:
            raise TimeoutError(f"only {rows:,} of {n:,} events landed in {deadline_s:.0f} s")
        rss.append((now - t_start, proc.memory_info().rss / 2**20))
        if now >= next_scrape:
            try:
                m = worker.metrics()
            except OSError:  # a slow answer under load: the next sample will tell
                if worker.proc.poll() is not None:
                    tail = worker.log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"the worker exited with {worker.proc.returncode}:\n{tail}")
                m = None
            if m is not None:
                scrapes += 1
                now = time.perf_counter()
                rows = int(m.get(EVENTS_ROWS, 0))
                if t0 is None:
                    if m.get(RECORDS, 0) > 0:
                        # the first record came since the last scrape, which saw nothing
                        # consumed (and so nothing landed): the clock starts then, at most
                        # 50 ms early
                        t0 = before
                    else:
                        before = now
                if rows >= n:
                    break
            if t0 is None or m is None:
                pause = 0.05  # not consuming yet: placing the start costs the worker nothing
            else:  # once a second; in the last second often enough to place the end
                rate = rows / (now - t0)
                pause = min(SCRAPE_EVERY_S, max(0.05, (n - rows) / rate)) if rate else SCRAPE_EVERY_S
            next_scrape = now + pause
        # the sampling cadence of a benchmark, not test synchronisation
        time.sleep(max(0.0, min(0.1, next_scrape - time.perf_counter())))
    t1 = now
    d0, d1 = t0 - t_start, t1 - t_start
    third = (d1 - d0) / 3
    first = _third_max(rss, d0, d0 + third)
    last = _third_max(rss, d1 - third, d1)
    return {
        "events": n,
        "events_per_s": round(n / (t1 - t0)),
        "end_to_end_s_incl_startup": round(t1 - t_start, 2),
        "worker_peak_rss_mb": round(max(r for _, r in rss), 1),
        "worker_rss_mb_first_third_max": round(first, 1),
        "worker_rss_mb_last_third_max": round(last, 1),
        "rss_flat": abs(last - first) <= RSS_FLAT_TOLERANCE * first,
        # the shape: the largest reading of each tenth of the drain
        "worker_rss_mb_by_tenth": [round(_third_max(rss, d0 + i * (d1 - d0) / 10,
                                                    d0 + (i + 1) * (d1 - d0) / 10), 1)
                                   for i in range(10)],
        "metrics_scrapes": scrapes,
    }


def freshness_buckets(metrics: dict[str, float]) -> dict[float, float]:
    """``{upper bound: cumulative count}`` of the freshness histogram (summed over any labels);
    empty when the worker does not expose it."""
    out: dict[float, float] = {}
    pattern = re.compile(rf'^{FRESHNESS}_bucket\{{(?:.*,)?le="([^"]+)"')
    for key, value in metrics.items():
        m = pattern.match(key)
        if m:
            le = float(m.group(1))  # "+Inf" parses as inf
            out[le] = out.get(le, 0.0) + value
    return out


def quantile_upper_bound(before: dict[float, float], after: dict[float, float],
                         q: float) -> tuple[float, int]:
    """The ``q`` quantile of what a histogram observed between two scrapes, as the upper bound
    of the bucket holding it (a histogram knows no finer: the true value lies between that
    bucket's lower and upper bounds, so this errs high by at most one bucket's width); and how
    many observations there were. NaN when there were none, inf beyond the last finite bound."""
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = int(delta[-1][1]) if delta else 0
    if total == 0:
        return math.nan, 0
    rank = math.ceil(q * total)
    return next(le for le, cum in delta if cum >= rank), total


class PromPoller:
    """Reads ``expr`` from a Prometheus query API every ``interval_s`` in a thread:
    ``(wall time ns after the answer, value)`` pairs."""

    def __init__(self, prom: Any, expr: str, interval_s: float = PROM_POLL_S):
        import threading
        self.prom, self.expr, self.interval_s = prom, expr, interval_s
        self.samples: list[tuple[int, float]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prom-poller", daemon=True)

    def start(self) -> "PromPoller":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                v = self.prom.value(self.expr)
            except (OSError, RuntimeError, ValueError):
                self.errors += 1
            else:
                if v is not None:
                    self.samples.append((time.time_ns(), v))
            self._stop.wait(self.interval_s)  # the polling period

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10.0)


def visibility_freshness(event_ts_ns: list[int], samples: list[tuple[int, float]],
                         baseline: float) -> tuple[list[float], int]:
    """Per event, the seconds from its event time to the first sample whose value exceeds
    ``baseline`` by more than its rank (events ranked by event time: the k-th event is visible
    once k + 1 of them are counted); and how many events were never seen."""
    import numpy as np
    ts = np.sort(np.asarray(event_ts_ns, np.int64))
    if not ts.size or not samples:
        return [], int(ts.size)
    t = np.array([x[0] for x in samples], np.int64)
    seen = np.maximum.accumulate(np.array([x[1] for x in samples]) - baseline)
    first = np.searchsorted(seen, np.arange(ts.size) + 1, side="left")  # first seen >= k + 1
    ok = first < len(t)
    fresh = (t[first[ok]] - ts[ok]) / 1e9
    return fresh.tolist(), int((~ok).sum())


def start_prometheus(worker: Any, work_dir: Path) -> Any:
    """Debian's prometheus scraping ``worker`` every :data:`PROM_SCRAPE_S`; a missing binary
    is a :class:`ConfigError` naming the package."""
    from ..localprom import LocalPrometheus, PrometheusMissing
    target = f"{worker.settings.metrics_host}:{worker.settings.metrics_port}"
    try:
        return LocalPrometheus(work_dir, [target], scrape_interval_s=PROM_SCRAPE_S).start()
    except PrometheusMissing as exc:
        raise ConfigError(f"bench pipeline measures freshness through Prometheus: {exc}") from exc


def _freshness(worker: Any, s: Settings, landed: int, seconds: float, rate: int,
               prom: Any = None) -> dict[str, Any]:
    """Emit live events at ``rate`` for ``seconds`` to the worker's topic; the p99 freshness
    (landed, and visible in ``prom``'s query API when given)."""
    import numpy as np

    from ..harness import wait_until
    from ..runtime.emitter import Emitter
    from .soak import PacedGenerator

    before = freshness_buckets(worker.metrics())
    if not before:
        return {"freshness_p50_s": None, "freshness_p99_s": None,
                "freshness_note": f"the worker does not expose {FRESHNESS} (yet); not measured"}
    total = int(rate * seconds)
    poller = baseline = None
    if prom is not None:  # Prometheus has scraped everything landed so far
        def counted() -> float:
            return sum(v for k, v in worker.metrics().items()
                       if k.startswith("agentflux_events_total"))
        wait_until(lambda: prom.value(PROM_EVENTS) == counted(), 60,
                   "Prometheus to scrape the worker", interval_s=0.1)
        baseline = prom.value(PROM_EVENTS)
        poller = PromPoller(prom, PROM_EVENTS).start()
    emitted_ts: list[int] = []

    def emit(ev: dict) -> Any:
        emitted_ts.append(ev["ts"])
        return em.emit(ev)
    try:
        with Emitter(s, runtime="agentflux-bench", spool_dir="") as em:
            gen = PacedGenerator(emit, rate, total).start()
            while not gen.done:
                time.sleep(0.2)  # waiting for the load generator
            if gen.error is not None:
                raise RuntimeError(f"the load generator failed: {gen.error!r}") from gen.error
            em.flush(60)
            st = em.stats()
        achieved = gen.n / (gen.t_end - gen.t0)
        wait_until(lambda: worker.value(EVENTS_ROWS) >= landed + st.acked, 120,
                   "the live events to land", interval_s=SCRAPE_EVERY_S)
        if poller is not None:
            wait_until(lambda: bool(poller.samples) and poller.samples[-1][1]
                       >= baseline + st.acked, 60, "Prometheus to show the live events",
                       interval_s=0.1)
    finally:
        if poller is not None:
            poller.stop()
    after = freshness_buckets(worker.metrics())
    out: dict[str, Any] = {}
    for q in (0.5, 0.99):
        value, observed = quantile_upper_bound(before, after, q)
        out[f"freshness_p{round(q * 100)}_s"] = None if not math.isfinite(value) else value
    out.update(freshness_rate_events_per_s=round(achieved), freshness_events=observed)
    if out["freshness_p99_s"] is None:
        out["freshness_note"] = ("no landing observed" if not observed else
                                 f"p99 beyond the largest finite bucket of {FRESHNESS}")
    if poller is not None:
        fresh, unseen = visibility_freshness(emitted_ts[:st.acked], poller.samples, baseline)
        for q in (50, 99):
            out[f"freshness_prometheus_p{q}_s"] = (
                round(float(np.percentile(fresh, q, method="higher")), 3) if fresh else None)
        out.update(freshness_prometheus_scrape_interval_s=PROM_SCRAPE_S,
                   freshness_prometheus_target_s=2.0 + PROM_SCRAPE_S,
                   freshness_prometheus_events=len(fresh),
                   freshness_prometheus_unseen=unseen,
                   freshness_prometheus_queries=len(poller.samples))
    return out


def bench_worker(base: Settings, n: int, tmp: Path, console,
                 freshness_s: float = FRESHNESS_S) -> tuple[dict[str, Any], Path]:
    """The worker's figures, and its history's root (the worker stopped)."""
    from ..harness import WorkerProcess

    s = _settings_for(base, tmp, "pipeline")
    console.print(f"producing {n:,} events in records of {RECORD_EVENTS} ...")
    asyncio.run(_produce(s, s.topics.events, n, RECORD_EVENTS))
    with contextlib.chdir(tmp):  # the worker's Faust data directory goes to its cwd
        worker = WorkerProcess(s, log_path=tmp / "worker.log").start()
    try:
        console.print(f"one worker draining {n:,} events ...")
        result = _drain(worker, n)
        if freshness_s > 0:
            console.print(f"freshness: emitting live at {FRESHNESS_RATE:,} events/s for "
                          f"{freshness_s:g} s, Prometheus scraping every "
                          f"{PROM_SCRAPE_S:g} s ...")
            prom = start_prometheus(worker, tmp / "prometheus")
            try:
                result.update(_freshness(worker, s, n, freshness_s, FRESHNESS_RATE, prom))
            finally:
                prom.stop()
    finally:
        worker.stop()
    return result, Path(s.history_path)


# --- the history -------------------------------------------------------------------------------

def landing_segments(rows: int, seed: int = 11) -> list["pa.Table"]:
    """``rows`` events as the worker lands them, in tables of :data:`SEGMENT_ROWS`: synthetic
    events encoded with orjson in records of 1,000, decoded by the codec, one
    :class:`~agentflux.streams.frame.EventFrame` per table in the ``events`` schema (partition 0,
    the record's index as its offset)."""
    from ..sinks.tables import EVENTS
    from ..streams.codec import decode_record
    from ..streams.frame import EventFrame

    out, records, chunk = [], [], []
    offset = 0
    for i, ev in enumerate(_events(rows, seed), 1):
        chunk.append(ev)
        if len(chunk) == RECORD_EVENTS or i == rows:
            records.append((decode_record(orjson.dumps(chunk)), 0, offset))
            offset += 1
            chunk = []
            if len(records) * RECORD_EVENTS >= SEGMENT_ROWS or i == rows:
                out.append(EventFrame.from_structs(records).table(EVENTS.schema))
                records = []
    return out


def write_segments(root: Path, segments: list["pa.Table"]) -> float:
    """Write ``segments`` (from :func:`landing_segments`) to the history at ``root`` in a log of
    their own; the seconds the writes took."""
    from ..sinks.history import History, log_id
    from ..sinks.tables import EVENTS

    history = History(root)
    history.init()
    log = log_id("agentflux-bench", "landing")
    seconds = 0.0
    for table in segments:
        offsets = table.column("kafka_offset")
        first, last = offsets[0].as_py(), offsets[-1].as_py()
        t0 = time.perf_counter()
        history.write_segment(EVENTS, table, log=log, partition=0, first=first, last=last)
        seconds += time.perf_counter() - t0
    return seconds


def query_events_by_type(root: Path) -> dict[str, Any]:
    """The median of :data:`QUERY_RUNS` runs of :data:`QUERY` through the history's catalog."""
    from ..sinks.catalog import connect
    from ..sinks.history import History

    con = connect(root)
    try:
        times, counted = [], 0
        for _ in range(QUERY_RUNS):
            t0 = time.perf_counter()
            by_type = con.execute(QUERY).fetchall()
            times.append(time.perf_counter() - t0)
            counted = sum(n for _, n in by_type)
    finally:
        con.close()
    return {"query_events_by_type_ms": round(statistics.median(times) * 1000, 1),
            "query_events_rows": counted,
            "query_events_segments": len(History(root).segments("events"))}


def bench_history(worker_history: Path, tmp: Path, console,
                  rows: int = LANDING_ROWS) -> dict[str, Any]:
    """``landing_rows_per_s`` and ``query_events_by_type_ms`` (see the module docstring), on
    ``rows`` event rows (``--landing-rows``)."""
    from ..sinks.history import History

    console.print(f"landing: building {rows:,} event rows ...")
    segments = landing_segments(rows)
    console.print(f"landing: writing them as segments of {SEGMENT_ROWS:,} rows ...")
    seconds = write_segments(tmp / "landing-history", segments)
    out: dict[str, Any] = {"landing_rows": rows, "landing_rows_per_s": round(rows / seconds)}
    if History(worker_history).count("events") < QUERY_MIN_ROWS:
        console.print(f"query: adding {rows:,} rows to the worker's history ...")
        write_segments(worker_history, segments)
    del segments  # ~400 MB of Arrow tables, not kept through the query and the peers
    console.print(f"query: {QUERY} ({QUERY_RUNS} runs) ...")
    out.update(query_events_by_type(worker_history))
    return out


# --- the peers ---------------------------------------------------------------------------------

def bench_peer(name: str, base: Settings, n: int, tmp: Path, console) -> float:
    """Events per second of one peer (see :data:`PEERS`) on ``n`` events of its own."""
    from ..localkafka import free_port

    module, per_record = PEERS[name]
    s = _settings_for(base, tmp, name.replace("_", "-"))
    console.print(f"{name}: producing {n:,} events in records of {per_record:,} ...")
    asyncio.run(_produce(s, s.topics.events, n, per_record))
    common = ["--bootstrap", s.bootstrap_servers, "--topic", s.topics.events, "--events", str(n)]
    if name == "faust_per_event":
        args = [*common, "--history", s.history_path, "--web-port", str(free_port())]
    elif name == "quixstreams":
        args = ["quixstreams", *common, "--history", s.history_path,
                "--state-dir", str(tmp / f"{s.app_id}-state")]
    else:
        args = ["raw", *common]
    console.print(f"{name}: draining {n:,} events ...")
    line = _run_for_line([sys.executable, "-m", module, *args], tmp / f"{s.app_id}.out",
                         timeout_s=600 + n / 500)
    return json.loads(line)["events_per_s"]


def _run_for_line(cmd: list[str], out: Path, timeout_s: float) -> str:
    """Run ``cmd`` until it prints its result line (``{"events": ...}``); the line. A child
    that does not exit within 30 s of printing it is killed (its figure is already taken)."""
    err = out.with_suffix(".err")
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            lines = [l for l in out.read_text(errors="replace").splitlines()
                     if l.startswith('{"events"')]
            if lines:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    pass
                return lines[-1]
            if proc.poll() is not None or time.monotonic() > deadline:
                what = "timed out" if proc.poll() is None else f"exited with {proc.returncode}"
                raise RuntimeError(f"{' '.join(cmd[2:4])} {what}:\n{out.read_text(errors='replace')[-2000:]}"
                                   f"{err.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)  # waiting for a child's result
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- the emitter -------------------------------------------------------------------------------

def bench_emitter(base: Settings, tmp: Path, console, rate: int = 10_000,
                  seconds: float = 4.0) -> dict[str, Any]:
    from ..runtime.emitter import Emitter

    s = _settings_for(base, tmp, "emitter")
    evs = list(_events(100_000, seed=5))
    # 1. the cost of emit() in the caller, with the producer live in the background
    with Emitter(s, buffer_events=len(evs) + 1) as em:
        clock = time.perf_counter_ns
        costs = []
        for ev in evs:
            t = clock()
            em.emit(ev)
            costs.append(clock() - t)
        em.flush(120)
    # 2. write-to-ack latency at a paced rate
    console.print(f"emitting at {rate:,} events/s for {seconds:.0f} s ...")
    with Emitter(s, linger_ms=1.0) as em:
        step = rate // 100  # 100 bursts a second
        t_next = time.perf_counter()
        i = 0
        end = t_next + seconds
        while t_next < end:
            for _ in range(step):
                em.emit(evs[i % len(evs)])
                i += 1
            t_next += 0.01
            delay = t_next - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing the load generator
        em.flush(60)
        st = em.stats()
    return {"emit_median_us": round(statistics.median(costs) / 1000, 3),
            "emit_p99_us": round(sorted(costs)[int(len(costs) * 0.99)] / 1000, 3),
            "ack_p50_ms": round(st.ack_p50_ms, 3), "ack_p99_ms": round(st.ack_p99_ms, 3),
            "ack_rate_events_per_s": rate, "emitter_failed": st.failed, "emitter_dropped": st.dropped}


# --- the run -----------------------------------------------------------------------------------

def _ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return round(a / b, digits) if a and b else None


MEANING = {
    "events_per_s": "one worker, records of 1,000 events",
    "worker_rss_mb_first_third_max": "worker RSS, first third of the drain",
    "worker_rss_mb_last_third_max": "worker RSS, last third of the drain",
    "rss_flat": f"last third within {RSS_FLAT_TOLERANCE:.0%} of the first",
    "worker_rss_mb_by_tenth": "largest RSS reading of each tenth of the drain",
    "metrics_scrapes": "reads of the worker's /metrics during the drain",
    "freshness_p50_s": "event time to landed (bucket upper bound)",
    "freshness_p99_s": "event time to landed (bucket upper bound)",
    "freshness_prometheus_p50_s": "event time to visible in a Prometheus query",
    "freshness_prometheus_p99_s": "event time to visible in a Prometheus query",
    "freshness_prometheus_scrape_interval_s": "that Prometheus' scrape interval",
    "freshness_prometheus_target_s": "p99 target: 2 s + the scrape interval",
    "freshness_prometheus_events": "events whose visibility was measured",
    "freshness_prometheus_unseen": "events never seen in a query (should be 0)",
    "freshness_prometheus_queries": f"queries answered (one per {PROM_POLL_S * 1000:g} ms)",
    "landing_rows": "event rows built in-process for landing_rows_per_s",
    "landing_rows_per_s": f"events rows written as Parquet segments of {SEGMENT_ROWS:,}",
    "query_events_by_type_ms": f"median of {QUERY_RUNS}: {QUERY}",
    "query_events_rows": "rows that query counted",
    "query_events_segments": "events segment files in that history",
    "faust_per_event_events_per_s": "Faust agent, one event per record",
    "quixstreams_events_per_s": "Quix Streams application",
    "raw_consume_events_per_s": "aiokafka fetch + orjson decode only",
    "ratio_faust": "events_per_s / Faust per event",
    "ratio_quixstreams": "events_per_s / Quix Streams",
    "fraction_of_raw": "events_per_s / raw consume",
    "emit_median_us": "Emitter.emit() in the caller",
    "ack_p99_ms": "emit() to broker ack, acks=all",
}


def _table(result: dict[str, Any], console) -> int:
    from rich.table import Table
    table = Table(title="agentflux bench pipeline")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("what", style="dim")
    for key, value in result.items():
        shown = (f"{value:,}" if isinstance(value, int) and not isinstance(value, bool)
                 else "-" if value is None else str(value))
        table.add_row(key, shown, MEANING.get(key, ""))
    console.print(table)
    return 0


def main(events: int, peer_events: int, skip_peers: bool, as_json: bool, console,
         freshness_s: float = FRESHNESS_S, landing_rows: int = LANDING_ROWS) -> int:
    from ..cli import broker_for

    if events < RECORD_EVENTS:
        raise ConfigError(f"--events must be >= {RECORD_EVENTS}, got {events}")
    if landing_rows < RECORD_EVENTS:
        raise ConfigError(f"--landing-rows must be >= {RECORD_EVENTS}, got {landing_rows}")
    if not math.isfinite(freshness_s) or freshness_s < 0 or (
            0 < freshness_s * FRESHNESS_RATE < 1):
        raise ConfigError(f"--freshness-seconds must be 0 (skips the phase) or a number of "
                          f"seconds >= {1 / FRESHNESS_RATE:g}, got {freshness_s:g}")
    if not skip_peers and peer_events < RECORD_EVENTS:
        raise ConfigError(f"--peer-events must be >= {RECORD_EVENTS}, got {peer_events}")
    quiet = console
    if as_json:
        from rich.console import Console
        quiet = Console(stderr=True)
    tmp = Path(tempfile.mkdtemp(prefix="agentflux-bench-"))
    try:
        with broker_for(Settings.from_env(), quiet) as settings:
            result: dict[str, Any] = {"cpu_count": os.cpu_count()}
            worker, worker_history = bench_worker(settings, events, tmp, quiet, freshness_s)
            result.update(worker)
            result.update(bench_history(worker_history, tmp, quiet, landing_rows))
            result["peer_events"] = None if skip_peers else peer_events
            for name in PEERS:
                rate = None if skip_peers else bench_peer(name, settings, peer_events, tmp, quiet)
                result[f"{name}_events_per_s"] = None if rate is None else round(rate)
            ours = result["events_per_s"]
            result["ratio_faust"] = _ratio(ours, result["faust_per_event_events_per_s"])
            result["ratio_quixstreams"] = _ratio(ours, result["quixstreams_events_per_s"])
            result["fraction_of_raw"] = _ratio(ours, result["raw_consume_events_per_s"], 3)
            result.update(bench_emitter(settings, tmp, quiet))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if as_json:
        print(json.dumps(result))
        return 0
    return _table(result, console)
