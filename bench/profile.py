"""``agentflux bench profile``: where one worker's time goes, in microseconds per event, from a
sampling profiler (py-spy) over a backlog drain.

N events are produced first (records of 1,000 events, as the Emitter sends them); then one
worker process starts *under* py-spy (``py-spy record ... -- python -m agentflux.cli worker``:
the worker is the profiler's child, so ptrace of one's own child is all it needs, which
``kernel.yama.ptrace_scope = 1`` allows) and is stopped (SIGTERM) once its history holds all N.

Every thread is sampled at ``--rate`` Hz, idle or not (``--idle``), with native frames when
py-spy can unwind them here (``--native``: garbage collection, GIL waits and C frames). py-spy
writes a trace with timestamps (``--format chrometrace``) rather than ``--format raw``, which
sums a whole run: only the drain counts, from the first record decoded to the end of the last
events landed, so the worker's start-up (imports, Faust's boot, the group join) and shutdown
are not charged to the events. The drain's stacks are written in the collapsed format of
``--format raw`` (``thread;frame;...;frame count``) as ``stacks-drain.txt``.

Each sample goes to exactly one bucket (:data:`BUCKETS`): its frames are read from the innermost
outwards and the first frame a *strong* rule claims decides. Frames of libraries that serve
whoever calls them (pyarrow, msgspec, orjson, socket reads) only *suggest* a bucket, used when
no caller is claimed; pyarrow's Parquet writer and reader are the history's segments wherever
they run; libraries without rules (numpy, the interpreter) are transparent.

Two figures per bucket and thread group:

* ``sampled_us_per_event`` = samples / rate / N * 1e6, thread time in that state per event.
  It includes the time the worker stood still while py-spy read its stacks (``--native``
  stops the process for every sample) and time runnable but waiting for a CPU, so on a busy
  machine it overstates the work.
* ``cpu_us_per_event``: the kernel's CPU time of the group's threads over the drain (per OS
  thread, from /proc, read every 0.1 s), divided by N and split over the buckets in proportion
  to the group's non-idle samples. This is the figure to compare between runs. py-spy samples
  only threads with a Python thread state; the CPU of the others (jemalloc's background thread,
  native pool threads) is counted as "other" from the kernel's figures alone, listed by name.

Thread groups: the main thread (the event loop: Faust, the agents, the codec), the history
threads (``agentflux-history``, the executor that writes the segments, and ``agentflux-upkeep``,
compaction and retention), Faust's consumer thread (a mode ServiceThread running aiokafka's
fetcher) and the rest (the /metrics server ...).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import functools
import gzip
import json
import linecache
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from agentflux.config import ConfigError, Settings

BUCKETS = (
    "Kafka fetch and record decoding",
    "Faust stream and take() machinery",
    "JSON decode",
    "validation",
    "span extraction",
    "Arrow building",
    "Parquet segment writes",
    "windows and sketches",
    "Prometheus updates",
    "garbage collection",
    "idle / waiting",
    "other",
)
KAFKA, FAUST, JSON, VALID, SPAN, ARROW, SEGMENTS, WINDOWS, PROM, GC, IDLE, OTHER = BUCKETS
# history threads: the history's executor (segment writes) and the upkeep executor (compaction,
# retention)
GROUPS = ("main event loop", "history threads", "Faust consumer thread", "other threads")
MAIN, HISTORY_THREADS, CONSUMER, OTHER_THREADS = GROUPS
HISTORY_THREAD_NAMES = ("agentflux-history", "agentflux-upkeep")

# --- frames -----------------------------------------------------------------------------------

_THREAD = re.compile(r"^thread \((\d+)\)(?::\s*(.*))?$")
_PROJECT_DIRS = ("agents", "streams", "sinks", "schemas", "runtime", "bench")
_PROJECT = re.compile(r"(?:^|/)(?:agentflux/)?((?:%s)/[^/]+\.py|agentflux/[^/]+\.py)$"
                      % "|".join(_PROJECT_DIRS))


@functools.lru_cache(maxsize=None)
def _project_path(path: str) -> str | None:
    p = path.replace("\\", "/")
    if "-packages/" in p and "-packages/agentflux/" not in p:
        return None
    m = _PROJECT.search(p)
    return m.group(1) if m else None


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as py-spy prints it: ``function (path:line)``; native frames carry the
    library (``epoll_wait (libc.so.6)``) or C file instead of a Python file."""

    func: str
    path: str
    line: int = 0

    @classmethod
    def parse(cls, text: str) -> "Frame":
        func, sep, loc = text.rpartition(" (")
        if not sep or not loc.endswith(")"):
            return cls(text, "")
        loc = loc[:-1]
        path, colon, line = loc.rpartition(":")
        if colon and line.isdigit():
            return cls(func, path, int(line))
        return cls(func, loc)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{self.func} ({where})"

    @property
    def project(self) -> str | None:
        """The path inside this repository (``streams/windows.py``) of a frame of agentflux's own
        code, editable or installed; ``None`` for libraries."""
        return _project_path(self.path)

    @property
    def short(self) -> str:
        """Function and a short location without the line: how "other" is listed."""
        p = self.path.replace("\\", "/")
        where = self.project
        if where is None:
            for marker in ("-packages/", "/lib/python3"):
                if marker in p:
                    where = p.split(marker, 1)[1]
                    if marker == "/lib/python3":
                        where = where.split("/", 1)[-1]
                    break
            else:
                where = p.rsplit("/", 1)[-1]
        return f"{self.func} ({where})"

    def source(self) -> str:
        """The source line (Python frames whose file is readable here), else ''."""
        if not self.line or not self.path.endswith(".py"):
            return ""
        return linecache.getline(self.path, self.line)


# --- rules ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """``bucket`` claims a frame whose project path (``project``; agentflux's own code) or
    library path (``path``), function name (``func``) and source line (``text``) all match
    (``re.search``; an unset field matches anything). A ``weak`` rule only suggests."""

    bucket: str
    project: str | None = None
    path: str | None = None
    func: str | None = None
    text: str | None = None
    weak: bool = False

    def __post_init__(self) -> None:
        if self.bucket not in BUCKETS:
            raise ValueError(f"unknown bucket {self.bucket!r}")
        if self.project is not None and self.path is not None:
            raise ValueError("a rule matches a project path or a library path, not both")

    def matches(self, f: Frame, rel: str | None) -> bool:
        if self.project is not None and (rel is None or not re.search(self.project, rel)):
            return False
        if self.path is not None and (rel is not None or not re.search(self.path, f.path)):
            return False
        if self.func is not None and not re.search(self.func, f.func):
            return False
        return self.text is None or bool(re.search(self.text, f.source()))


_WAIT_C = (r"^(take_gil|lock_PyThread_acquire_lock|PyThread_acquire_lock_timed\w*|acquire_timed"
           r"|_queue_SimpleQueue_get\w*|time_sleep|pysleep|select_epoll_poll\w*"
           r"|select_poll_poll\w*|select_select\w*)$")
_WAIT_LIBC = (r"^(__)?(epoll_wait|e?poll|ppoll|p?select|\w*futex\w*|pthread_cond_\w*wait\w*"
              r"|\w*sem_\w*wait\w*|clock_nanosleep|nanosleep|__GI___\w*wait\w*)$")



def _fn(*names: str) -> str:
    """A function-name pattern: ``names`` as a whole part of the qualified name, so that
    ``EventFrame.spans`` and ``EventFrame.spans.<locals>.<listcomp>`` match ``spans``."""
    return r"(^|\.)(%s)(\.|$)" % "|".join(names)


# First match per frame wins, so specific rules come before general ones.
RULES: tuple[Rule, ...] = (
    # waiting: blocked in the kernel, on a lock or a queue, or for the GIL
    Rule(IDLE, func=_WAIT_C),
    Rule(IDLE, path=r"(^|/)selectors\.py$"),
    Rule(IDLE, path=r"(^|/)threading\.py$",
         func=r"(Condition|Event|Semaphore|Barrier)\.wait|Thread\.join|_wait_for_tstate_lock"
              r"|Semaphore\.acquire"),
    Rule(IDLE, path=r"(^|/)queue\.py$", func=r"Queue\.get"),
    Rule(IDLE, func=_WAIT_LIBC),
    # the cyclic garbage collector (native frames)
    Rule(GC, func=r"^(gc_collect\w*|_PyGC_Collect\w*|collect_generations|collect_with_callback"
                  r"|_PyObject_GC_Link)$"),
    Rule(GC, path=r"gcmodule\.c", func=r"^collect$"),
    # agentflux's own code, old (per-event dicts) and new (Structs and columns) hot paths
    Rule(JSON, project=r"^schemas/structs\.py$", text=r"_raw"),  # the skipping attrs pass
    Rule(VALID, project=r"^schemas/(structs|validate)\.py$"),
    Rule(SPAN, project=r"^streams/codec\.py$", func=_fn("spans")),
    Rule(SPAN, project=r"^streams/codec\.py$", text=r"span_of"),
    Rule(JSON, project=r"^streams/codec\.py$", func=_fn("_utf8", "element_spans")),
    Rule(JSON, project=r"^streams/codec\.py$", text=r"orjson\.loads|_utf8\(|\.decode\(\)"),
    # the per-record decode and check loop (weak: an orjson frame inside it is JSON decode)
    Rule(VALID, project=r"^streams/codec\.py$", weak=True),
    Rule(SPAN, project=r"^streams/fields\.py$", func=_fn("span_of")),
    Rule(WINDOWS, project=r"^streams/windows\.py$"),
    Rule(WINDOWS, project=r"^(schemas|streams)/sketch\.py$"),
    Rule(ARROW, project=r"^streams/frame\.py$", func=_fn("table")),
    Rule(ARROW, project=r"^streams/frame\.py$", func=_fn("str_array", "json_array"), weak=True),
    Rule(SPAN, project=r"^streams/frame\.py$",
         func=_fn("from_structs", "spans", "_error_field")),
    # the native decoder: JSON decode, validation and the column buffers in one pass (all of it
    # counted as JSON decode), and the wrapping of its buffers as arrays
    Rule(JSON, path=r"(^|/)_native\."),
    Rule(JSON, project=r"^streams/native\.py$", text=r"DECODER\.decode"),
    Rule(ARROW, project=r"^streams/native\.py$"),
    # the history: a segment written (Parquet, fsync, rename), the compactor's merges, the
    # listings and reads of an assignment; batching rows per partition is Arrow work
    Rule(SEGMENTS, project=r"^sinks/history\.py$"),
    Rule(SEGMENTS, project=r"^sinks/sink\.py$", func=_fn("write")),
    Rule(ARROW, project=r"^sinks/(sink|tables)\.py$"),
    Rule(PROM, project=r"^sinks/prometheus\.py$"),
    Rule(PROM, project=r"^streams/frame\.py$", func=_fn("type_counts")),  # for a counter
    Rule(PROM, project=r"^agents/", text=r"\bmetrics\.|\bobserve\("),
    Rule(ARROW, project=r"^agents/", text=r"\bpa\.\w+\("),
    Rule(WINDOWS, project=r"^agents/kpis\.py$", func=_fn("add", "publish", "close_windows",
                                                           "checkpoint", "close_idle")),
    Rule(WINDOWS, project=r"^agents/kpis\.py$", text=r"windows\.|close_due|publish\("),
    Rule(FAUST, project=r"^streams/batching\.py$"),  # take() bounded by events
    # libraries
    Rule(PROM, path=r"(^|/)prometheus_client/"),
    Rule(KAFKA, path=r"(^|/)(aiokafka|kafka)/"),
    Rule(KAFKA, path=r"(^|/)faust/transport/drivers/aiokafka\.py$"),
    Rule(KAFKA, path=r"(^|/)(cramjam|lz4|zstandard|snappy)"),
    Rule(KAFKA, path=r"(^|/)asyncio/streams\.py$"),  # aiokafka's connections read through it
    Rule(KAFKA, path=r"(^|/)asyncio/selector_events\.py$",
         func=r"_read_ready|sock_recv|_sock_recv|recv_into"),
    Rule(KAFKA, func=r"^(sock_recv\w*|sock_recv_into\w*|recv|__libc_recv|recvfrom|read|readv"
                     r"|__libc_read)$", weak=True),
    Rule(FAUST, path=r"(^|/)(faust|mode|venusian|aiohttp|yarl|multidict|croniter|aiohttp_cors"
                     r"|opentracing)/"),
    Rule(FAUST, path=r"(^|/)asyncio/"),  # the event loop Faust's agents, streams and timers run on
    Rule(SEGMENTS, path=r"(^|/)(pyarrow/(parquet/|_parquet)|libparquet)"),
    Rule(SEGMENTS, func=r"^parquet::"),
    Rule(ARROW, path=r"(^|/)(pyarrow/|libarrow)", weak=True),
    Rule(ARROW, func=r"^arrow::", weak=True),
    Rule(VALID, path=r"(^|/)msgspec/", weak=True),
    Rule(JSON, path=r"(^|/)orjson", weak=True),
)


class Classifier:
    """:func:`classify` with a memory: what each distinct frame string is claimed by (a profile
    has a few thousand distinct frames, in hundreds of thousands of stack positions)."""

    def __init__(self, rules: Sequence[Rule] = RULES):
        self.rules = tuple(rules)
        self._claims: dict[Frame, Rule | None] = {}

    def claim(self, f: Frame) -> Rule | None:
        """The first rule that matches ``f``."""
        if f not in self._claims:
            rel = f.project
            self._claims[f] = next((r for r in self.rules if r.matches(f, rel)), None)
        return self._claims[f]

    def __call__(self, frames: Sequence[str | Frame]) -> str:
        weak = None
        in_project = False
        for fr in reversed(frames):
            f = fr if isinstance(fr, Frame) else _frame(fr)
            if f.project is None and in_project:
                continue  # a caller of agentflux's code (Faust, asyncio): not the work sampled
            in_project = in_project or f.project is not None
            r = self.claim(f)
            if r is None:
                continue
            if not r.weak:
                return r.bucket
            if weak is None:
                weak = r.bucket
        return weak or OTHER


_DEFAULT = Classifier()
_frame = functools.lru_cache(maxsize=None)(Frame.parse)


def classify(frames: Sequence[str | Frame], rules: Sequence[Rule] | None = None) -> str:
    """The bucket of one sample. ``frames`` outermost first (the collapsed-stack order), without
    the ``thread (...)`` frame. The innermost frame a strong rule claims decides; else the
    innermost weak suggestion; else "other". Once the scan reaches agentflux's own code, only
    agentflux's frames are looked at: the library frames further out (Faust running an agent,
    the event loop) called the work, they did not do it."""
    return (_DEFAULT if rules is None else Classifier(rules))(frames)


# --- stacks -----------------------------------------------------------------------------------

@dataclass
class ThreadInfo:
    """What the stacks of one OS thread say about it, for its group."""

    tid: str
    names: collections.Counter = field(default_factory=collections.Counter)
    faust_thread: bool = False  # runs a mode ServiceThread (Faust's consumer)
    history_executor: bool = False  # ran the history's calls from an executor

    def see(self, name: str, frames: Sequence[Frame], weight: float) -> None:
        if name:
            self.names[name] += weight
        for f in frames:
            if "mode/threads.py" in f.path and f.func.startswith(("WorkerThread", "ServiceThread")):
                self.faust_thread = True
        if (any(f.project == "sinks/history.py" for f in frames)
                and any(f.path.endswith("concurrent/futures/thread.py") for f in frames)):
            self.history_executor = True

    @property
    def name(self) -> str:
        # py-spy names threads by pthread id, which short-lived threads reuse: take the usual one
        return self.names.most_common(1)[0][0] if self.names else ""

    @property
    def group(self) -> str:
        if self.name == "MainThread":
            return MAIN
        if self.name.startswith(HISTORY_THREAD_NAMES) or self.history_executor:
            return HISTORY_THREADS
        if self.faust_thread:
            return CONSUMER
        return OTHER_THREADS


def split_thread(stack: Sequence[str]) -> tuple[str, str, list[str]]:
    """``(tid, name, frames)`` of a collapsed stack whose first frame may be py-spy's
    ``thread (tid): name`` (``--threads``)."""
    if stack:
        m = _THREAD.match(stack[0])
        if m:
            return m.group(1), m.group(2) or "", list(stack[1:])
    return "", "", list(stack)


def parse_collapsed(lines: Iterable[str]) -> dict[tuple[str, ...], int]:
    """Samples per stack from py-spy's raw (collapsed) format: ``frame;...;frame count``."""
    out: dict[tuple[str, ...], int] = collections.defaultdict(int)
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            raise ValueError(f"not a collapsed stack line: {line[:200]!r}")
        out[tuple(stack.split(";"))] += int(count)
    return dict(out)


def write_collapsed(path: Path, seconds: dict[tuple[str, ...], float], rate: float) -> None:
    """Stacks as ``frame;...;frame samples`` (samples = seconds * rate, at least 1)."""
    with open(path, "w") as out:
        for stack, sec in sorted(seconds.items(), key=lambda kv: -kv[1]):
            out.write(";".join(stack) + f" {max(1, round(sec * rate))}\n")


@dataclass
class Breakdown:
    """Sampled seconds of thread time per (bucket, thread), and what "other" contained."""

    seconds: dict  # (bucket, tid) -> s
    other_frames: collections.Counter
    other_callers: collections.Counter
    threads: dict  # tid -> ThreadInfo

    @classmethod
    def of(cls, seconds: dict[tuple[str, ...], float],
           classifier: "Classifier | None" = None) -> "Breakdown":
        """``seconds`` per collapsed stack (thread frame first), e.g. samples / rate."""
        classifier = classifier or _DEFAULT
        threads: dict[str, ThreadInfo] = {}
        cells: dict[tuple[str, str], float] = collections.defaultdict(float)
        other_frames: collections.Counter = collections.Counter()
        other_callers: collections.Counter = collections.Counter()
        for stack, w in seconds.items():
            tid, name, frames = split_thread(stack)
            fs = [_frame(x) for x in frames]
            threads.setdefault(tid, ThreadInfo(tid)).see(name, fs, w)
            bucket = classifier(fs)
            cells[(bucket, tid)] += w
            if bucket == OTHER:
                if fs:
                    other_frames[fs[-1].short] += w
                caller = next((f for f in reversed(fs) if f.project), None)
                other_callers[caller.short if caller else "(no agentflux frame)"] += w
        return cls(dict(cells), other_frames, other_callers, threads)

    def cpu(self, thread_cpu: dict[str, float], unaccounted: float = 0.0,
            unsampled: dict[tuple[str, str], float] | None = None) -> dict[tuple[str, str], float]:
        """CPU seconds per (bucket, group): each thread's CPU (``thread_cpu``, the kernel's
        figure) split over the buckets of its non-idle samples; the CPU of threads that came
        and went between two readings (``unaccounted``: the process's CPU minus its threads')
        split likewise over the samples of the threads without a reading; ``unsampled``
        ``{(bucket, group): s}`` added as given. CPU without a non-idle sample is "other" (on
        a history thread, segment writes)."""
        out = {(b, g): 0.0 for b in BUCKETS for g in GROUPS}
        busy = collections.defaultdict(float)
        for (b, tid), sec in self.seconds.items():
            if b != IDLE:
                busy[tid] += sec
        short = {tid for tid in self.threads if tid not in thread_cpu}
        short_busy = sum(busy[tid] for tid in short)
        for (b, tid), sec in self.seconds.items():
            if b == IDLE or not busy[tid]:
                continue
            share = (thread_cpu[tid] / busy[tid] if tid in thread_cpu else
                     unaccounted / short_busy if short_busy else 0.0)
            out[(b, self.threads[tid].group)] += sec * share
        for tid, sec in thread_cpu.items():
            if tid in self.threads and not busy[tid]:
                g = self.threads[tid].group
                out[(SEGMENTS if g == HISTORY_THREADS else OTHER, g)] += sec
        if not short_busy:
            out[(OTHER, OTHER_THREADS)] += unaccounted
        for key, sec in (unsampled or {}).items():
            out[key] += sec
        return out

    def report(self, events: int, rate: float,
               cpu: dict[tuple[str, str], float] | None = None, top: int = 15) -> dict:
        """Per bucket, thread group and in total: samples, share of the samples, share of the
        non-idle samples, sampled µs per event and, given CPU seconds per (bucket, group)
        (:meth:`cpu`), CPU µs per event."""
        per_event = 1e6 / events
        seconds = {(b, g): 0.0 for b in BUCKETS for g in GROUPS}
        for (b, tid), sec in self.seconds.items():
            seconds[(b, self.threads[tid].group)] += sec

        def cell(bucket: str | None, g: str) -> dict:
            bs = [b for b in BUCKETS if b != IDLE] if bucket is None else [bucket]
            gs = GROUPS if g == "total" else (g,)
            sec = sum(seconds[(b, x)] for b in bs for x in gs)
            every = sum(seconds[(b, x)] for b in BUCKETS for x in gs)
            busy = sum(seconds[(b, x)] for b in BUCKETS if b != IDLE for x in gs)
            us = (None if cpu is None or bucket == IDLE else
                  round(sum(cpu[(b, x)] for b in bs for x in gs) * per_event, 3))
            return {"samples": round(sec * rate),
                    "share": round(sec / every, 4) if every else 0.0,
                    "busy_share": (None if bucket == IDLE else
                                   round(sec / busy, 4) if busy else 0.0),
                    "sampled_us_per_event": round(sec * per_event, 3),
                    "cpu_us_per_event": us}

        def listing(counter: collections.Counter) -> list[dict]:
            return [{"frame": k, "samples": round(v * rate),
                     "sampled_us_per_event": round(v * per_event, 3)}
                    for k, v in counter.most_common(top)]

        return {
            "buckets": {b: {g: cell(b, g) for g in (*GROUPS, "total")} for b in BUCKETS},
            "busy": {g: cell(None, g) for g in (*GROUPS, "total")},  # every bucket but idle
            "other_top_frames": listing(self.other_frames),
            "other_top_agentflux_callers": listing(self.other_callers),
        }


# --- py-spy's trace ---------------------------------------------------------------------------

Interval = tuple[int, float, float, tuple[str, ...]]  # (trace thread, start s, end s, stack)


def trace_intervals(events: Sequence[dict]) -> list[Interval]:
    """How long each thread sat in each stack, rebuilt from py-spy's chrometrace, which records
    per thread the frames that ended and began at each sample whose stack differs from the one
    before. Stacks are outermost first, spelled as in the collapsed format, the
    ``thread (tid): name`` frame first."""
    by_thread: dict[int, list[dict]] = collections.defaultdict(list)
    for ev in events:
        if ev.get("ph") in ("B", "E"):
            by_thread[ev["tid"]].append(ev)
    out: list[Interval] = []
    for tid, evs in by_thread.items():
        stack: list[str] = []
        since = 0
        i = 0
        while i < len(evs):
            ts = evs[i]["ts"]
            before = tuple(stack)
            while i < len(evs) and evs[i]["ts"] == ts:
                ev = evs[i]
                if ev["ph"] == "E":
                    if stack:
                        stack.pop()
                else:
                    a = ev.get("args") or {}
                    fn, line = a.get("filename") or "", a.get("line") or 0
                    stack.append(ev["name"] if not fn else
                                 f"{ev['name']} ({fn}:{line})" if line else f"{ev['name']} ({fn})")
                i += 1
            if tuple(stack) != before:
                if before:
                    out.append((tid, since / 1e6, ts / 1e6, before))
                since = ts
    return out


def _os_tid(stack: tuple[str, ...]) -> int | None:
    m = _THREAD.match(stack[0]) if stack else None
    return int(m.group(1)) if m else None


def end_dead_threads(intervals: list[Interval], alive: set[int] | None,
                     period_s: float) -> list[Interval]:
    """py-spy's chrometrace keeps a thread that exited in its last stack until the trace ends
    (or until a new thread reuses its pthread id). An OS thread not ``alive`` at the end of the
    drain is cut one sample period after its last change of stack (e.g. the thread of each
    /metrics request)."""
    if alive is None:
        return intervals
    last: dict[int, int] = {}
    for i, iv in enumerate(intervals):
        tid = _os_tid(iv[3])
        if tid is not None and (tid not in last or iv[1] >= intervals[last[tid]][1]):
            last[tid] = i
    out = list(intervals)
    for tid, i in last.items():
        if tid not in alive:
            k, t0, t1, stack = out[i]
            out[i] = (k, t0, min(t1, t0 + period_s), stack)
    return out


def drain_window(intervals: Sequence[Interval], period_s: float = 0.01
                 ) -> tuple[float, float] | None:
    """``(start_s, end_s)`` of the drain on the trace's clock, or None if the trace shows no
    record decoded or no batch landed.

    Start: the first sample decoding a record (a frame of streams/native.py or streams/codec.py
    outside an import).
    End: the end of the first run of segment writes (consecutive samples inside
    ``ParquetSink.write`` on one thread; the compactor's merges are not landings) still going
    when the last events table had been built or the last record decoded, whichever is later
    (``EventFrame.table``, the decoders; threads are sampled up to a period apart; with the
    native decoder a table takes a millisecond and is rarely sampled, the last decode is):
    that table's write, or the write before it with this one queued right behind. Without such
    a sample, the end of the last write. So KPI rows landed after the last events are not the
    drain."""
    marks: dict[tuple[str, ...], tuple[bool, bool, bool]] = {}

    def mark(stack: tuple[str, ...]) -> tuple[bool, bool, bool]:
        got = marks.get(stack)
        if got is None:
            fs = [_frame(x) for x in stack[1:]]
            if any(f.func == "_find_and_load" for f in fs):
                got = (False, False, False)
            else:
                places = [(f.project, f.func.rsplit(".", 1)[-1]) for f in fs]
                got = (any(rel in ("streams/codec.py", "streams/native.py") for rel, _ in places),
                       ("streams/frame.py", "table") in places,
                       ("sinks/sink.py", "write") in places)
            marks[stack] = got
        return got

    start = table_end = write_end = None
    for _, t0, t1, stack in intervals:
        decoding, table, writing = mark(stack)
        if decoding:
            start = t0 if start is None else min(start, t0)
        if table or decoding:  # the events' own work: decoding records, building the table
            table_end = t1 if table_end is None else max(table_end, t1)
        if writing:
            write_end = t1 if write_end is None else max(write_end, t1)
    if start is None or write_end is None:
        return None
    end = write_end
    if table_end is not None:
        runs: list[tuple[float, float]] = []  # consecutive samples inside the write, per thread
        by_thread: dict[int, list[Interval]] = collections.defaultdict(list)
        for iv in intervals:
            if mark(iv[3])[2]:
                by_thread[iv[0]].append(iv)
        for ivs in by_thread.values():
            ivs.sort(key=lambda iv: iv[1])
            r0, r1 = ivs[0][1], ivs[0][2]
            for _, t0, t1, _ in ivs[1:]:
                if t0 > r1 + 1e-9:
                    runs.append((r0, r1))
                    r0 = t0
                r1 = max(r1, t1)
            runs.append((r0, r1))
        after = [r for r in runs if r[1] >= table_end - period_s]
        if after:
            end = min(after)[1]
    return (start, end) if end > start else None


def window_seconds(intervals: Iterable[Interval], window: tuple[float, float] | None = None
                   ) -> dict[tuple[str, ...], float]:
    """Seconds per stack, clipped to ``window`` (the whole trace without one)."""
    out: dict[tuple[str, ...], float] = collections.defaultdict(float)
    for _, t0, t1, stack in intervals:
        if window is not None:
            t0, t1 = max(t0, window[0]), min(t1, window[1])
        if t1 > t0:
            out[stack] += t1 - t0
    return dict(out)


# --- CPU time from the kernel -----------------------------------------------------------------

# (s since launch, {OS thread id: CPU s, and 0: the whole process's})
CpuSeries = list[tuple[float, dict[int, float]]]


def cpu_between(series: CpuSeries, t0: float, t1: float) -> dict[int, float]:
    """CPU seconds per OS thread between ``t0`` and ``t1``, interpolated between readings (a
    thread not yet started counts 0; one that ended keeps its last reading)."""
    times = [t for t, _ in series]

    def at(t: float) -> dict[int, float]:
        i = bisect.bisect_right(times, t)
        if i == 0:
            return {}
        ta, a = series[i - 1]
        if i == len(series):
            return dict(a)
        tb, b = series[i]
        f = (t - ta) / (tb - ta) if tb > ta else 1.0
        return {tid: a.get(tid, 0.0) + f * (b.get(tid, a.get(tid, 0.0)) - a.get(tid, 0.0))
                for tid in set(a) | set(b)}

    def last_seen(t: float) -> dict[int, float]:
        seen: dict[int, float] = {}
        for ti, snap in series:
            if ti > t:
                break
            seen.update(snap)
        return seen

    a, b = at(t0), at(t1)
    ended = last_seen(t1)
    return {tid: max(0.0, b.get(tid, ended.get(tid, 0.0)) - a.get(tid, 0.0))
            for tid in set(a) | set(b) | set(ended)}


def split_cpu(cpu: dict[int, float], sampled: Iterable[str], comm: dict[int, str]
              ) -> tuple[dict[str, float], dict[tuple[str, str], float], list]:
    """CPU seconds of the threads py-spy sampled, by thread id; and of those it could not (it
    samples threads that have a Python thread state), counted as "other" and listed by name:
    jemalloc's background thread (``jemalloc_bg_thd``, pyarrow's allocator), unnamed native
    pool threads (numpy's, Arrow's) and the task threads of the DuckDB connection that wrote
    the catalog at start-up (gone by the drain)."""
    known = set(sampled)
    seen: dict[str, float] = {}
    unsampled = 0.0
    listing = []
    for tid, sec in sorted(cpu.items()):
        if str(tid) in known:
            seen[str(tid)] = sec
            continue
        unsampled += sec
        listing.append({"tid": tid, "comm": comm.get(tid, ""),
                        "counted_as": [OTHER, OTHER_THREADS], "cpu_s": round(sec, 3)})
    return seen, {(OTHER, OTHER_THREADS): unsampled}, listing


# --- running it -------------------------------------------------------------------------------

def py_spy() -> str:
    """The py-spy executable next to this interpreter, else on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    found = str(here) if here.exists() else shutil.which("py-spy")
    if not found:
        raise ConfigError("py-spy is not installed: pip install -e '.[bench]' (it is in the bench "
                          "extra), or put py-spy on PATH")
    return found


def native_works(spy: str, python: str) -> tuple[bool, str]:
    """Whether ``py-spy --native`` can unwind a process of ``python`` here (a short probe)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "probe.txt"
        proc = subprocess.run([spy, "record", "--native", "--format", "raw", "--rate", "200",
                               "-o", str(out), "--", python, "-c",
                               "import time\nt = time.time()\nwhile time.time() - t < 0.3: pass"],
                              capture_output=True, text=True, timeout=60)
        ok = proc.returncode == 0 and out.exists() and out.stat().st_size > 0
        return ok, "" if ok else (proc.stderr or proc.stdout)[-1000:]


_PTRACE = ("py-spy needs to ptrace the worker it starts (kernel.yama.ptrace_scope <= 1; in a "
           "container, CAP_SYS_PTRACE or a seccomp profile allowing ptrace and process_vm_readv)")


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _thread_names(pid: int) -> dict[int, str]:
    out = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as fh:
                out[int(tid)] = fh.read().strip()
    except OSError:
        pass
    return out


def _thread_cpu(p) -> dict[int, float]:
    """CPU seconds per OS thread, and under 0 the process's (threads that exited included)."""
    try:
        out = {t.id: t.user_time + t.system_time for t in p.threads()}
        times = p.cpu_times()
    except Exception:  # not started yet, or exiting
        return {}
    out[0] = times.user + times.system
    return out


@dataclass
class Drained:
    """What the run saw from outside the worker."""

    polls: list  # (s since launch, records, rows) per /metrics scrape
    cpu: CpuSeries
    alive: set | None  # OS thread ids alive when the history held all events
    comm: dict = field(default_factory=dict)  # OS thread id -> its name in /proc (comm)


def run_profiled_worker(settings: Settings, events: int, trace: Path, log: Path, rate: float,
                        python: str, native: bool, cwd: Path, console, poll_s: float = 1.0,
                        cpu_poll_s: float = 0.1, timeout_s: float = 1800.0) -> Drained:
    """Start one worker under py-spy on the backlog; stop it once the history holds ``events``
    (its /metrics read every ``poll_s``; its threads' CPU times every ``cpu_poll_s``, from
    /proc, which costs the worker nothing). ``cwd``: not a checkout, whose ``agentflux/`` would
    shadow the one ``python`` has installed."""
    import psutil

    from agentflux.harness import scrape, settings_env

    cmd = [py_spy(), "record", "--format", "chrometrace", "--rate", f"{rate:g}", "--idle",
           "--threads", "--full-filenames", *(["--native"] if native else []), "-o", str(trace),
           "--", python, "-m", "agentflux.cli", "worker"]
    env = {**os.environ, **settings_env(settings)}
    url = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    launched = time.perf_counter()  # py-spy's trace clock starts within milliseconds of this
    worker = None
    run = Drained([], [], None)
    next_scrape = 0.0
    try:
        while True:
            if proc.poll() is not None:
                raise ConfigError(f"py-spy or the worker exited (status {proc.returncode}) before "
                                  f"the history held all {events} events; {_PTRACE}. Its log "
                                  f"({log}):\n{_tail(log)}")
            if worker is None:
                kids = psutil.Process(proc.pid).children()
                worker = kids[0] if kids else None
            now = time.perf_counter() - launched
            if worker is not None:
                run.cpu.append((now, _thread_cpu(worker)))
            if now >= next_scrape:
                try:
                    m = scrape(url)
                except OSError:  # not serving yet
                    next_scrape = now + 0.2
                else:
                    next_scrape = now + poll_s
                    rows = m.get('agentflux_history_rows{table="events"}', 0.0)
                    run.polls.append((now, m.get("agentflux_records_total", 0.0), rows))
                    if rows >= events:
                        run.alive = (set(run.cpu[-1][1]) - {0}
                                     if run.cpu and run.cpu[-1][1] else None)
                        if worker is not None:
                            run.comm = _thread_names(worker.pid)
                        now = time.perf_counter() - launched
                        if worker is not None:
                            run.cpu.append((now, _thread_cpu(worker)))
                        break
            if now > timeout_s:
                raise TimeoutError(f"only {run.polls[-1][2] if run.polls else 0:.0f} of {events} "
                                   f"events landed in {timeout_s:.0f} s")
            time.sleep(cpu_poll_s)  # the cadence of a benchmark's readings
    finally:
        _stop(proc, worker, console)
    if not trace.exists():
        raise ConfigError(f"py-spy wrote no trace (status {proc.returncode}); {_PTRACE}. Its "
                          f"log ({log}):\n{_tail(log)}")
    return run


def _stop(proc: subprocess.Popen, worker, console) -> None:
    """SIGTERM to the worker (py-spy then writes its trace and exits); SIGINT to py-spy, then
    SIGKILL, if either hangs."""
    if proc.poll() is not None:
        return
    if worker is not None:
        try:
            worker.send_signal(signal.SIGTERM)
        except Exception:
            pass
    try:
        proc.wait(90)
        return
    except subprocess.TimeoutExpired:
        console.print("[yellow]the worker did not stop in 90 s: interrupting py-spy[/yellow]")
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    try:
        if worker is not None and worker.is_running():
            worker.kill()
    except Exception:
        pass


# --- output -----------------------------------------------------------------------------------

def _rows(result: dict) -> list[tuple[str, dict]]:
    return [*[(b, result["buckets"][b]) for b in BUCKETS], ("all but idle", result["busy"])]


def _us(cell: dict, key: str) -> str:
    v = cell[key]
    return "" if v is None else f"{v:.2f}"


def markdown(result: dict) -> str:
    """Two tables: CPU µs per event (kernel CPU split by samples) and sampled µs per event, by
    bucket and thread group."""
    tables = [("sampled_us_per_event", "Sampled µs per event (samples / rate / N)")]
    if result["figure"] == "cpu_us_per_event":
        tables.insert(0, ("cpu_us_per_event", "CPU µs per event (the kernel's CPU time of each "
                                              "thread group, split by its non-idle samples)"))
    out = []
    for key, title in tables:
        whole = result["busy"]["total"][key] or 0.0
        heads = ["bucket", *GROUPS, "total", "% of all but idle"]
        out += [f"{title}:", "", "| " + " | ".join(heads) + " |",
                "|---|" + "---:|" * (len(heads) - 1)]
        for name, row in _rows(result):
            if key == "cpu_us_per_event" and name == IDLE:
                continue
            v = row["total"][key]
            share = "" if name == IDLE or not whole else f"{(v or 0.0) / whole * 100:.1f} %"
            out.append(f"| {name} | " + " | ".join(_us(row[g], key) for g in (*GROUPS, "total"))
                       + f" | {share} |")
        out.append("")
    return "\n".join(out)


def print_table(result: dict, console) -> None:
    from rich.table import Table

    key = result["figure"]
    t = Table(title=f"worker profile, {'CPU' if key == 'cpu_us_per_event' else 'sampled'} µs per "
                    f"event: drain of {result['events']:,} events at {result['events_per_s']:,} "
                    f"events/s, py-spy {result['rate_hz']:g} Hz"
                    f"{' native' if result['native'] else ''}")
    t.add_column("bucket", no_wrap=True)
    for g in ("main loop", "history", "consumer", "other thr.", "total"):
        t.add_column(g, justify="right")
    t.add_column("%", justify="right")
    t.add_column("sampled", justify="right")
    t.add_column("samples", justify="right")
    whole = result["busy"]["total"][key] or 0.0
    for name, row in _rows(result):
        v = row["total"][key]
        t.add_row(name, *[_us(row[g], key) for g in (*GROUPS, "total")],
                  "" if name == IDLE or not whole else f"{(v or 0.0) / whole * 100:.1f}",
                  _us(row["total"], "sampled_us_per_event"), f"{row['total']['samples']:,}")
    console.print(t)
    busy = [t for t in result["unsampled_threads"] if t["cpu_us_per_event"] >= 0.01]
    if busy:
        console.print("threads py-spy cannot sample (no Python thread state), counted from the "
                      "kernel's CPU time: " + "; ".join(
                          f"{t['tid']} ({t['comm']}) {t['cpu_us_per_event']:.2f} µs/event as "
                          f"{t['counted_as'][0]}" for t in busy))
    for what, key in (("innermost frame", "other_top_frames"),
                      ("innermost agentflux frame", "other_top_agentflux_callers")):
        console.print(f"[bold]other[/bold] by {what} (sampled µs/event): " + "; ".join(
            f"{o['frame']} {o['sampled_us_per_event']:.2f}" for o in result[key][:8]))


# --- the command ------------------------------------------------------------------------------

def profile(settings: Settings, events: int, out: Path, rate: float, python: str, console,
            command: str) -> dict:
    """Produce, drain under py-spy, analyse; write profile.json, profile.md and the stacks."""
    from agentflux.bench.pipeline import RECORD_EVENTS, _produce, _settings_for
    from agentflux.streams.topics import ensure_topics

    load = os.getloadavg()
    native, why = native_works(py_spy(), python)
    if not native:
        console.print(f"[yellow]py-spy --native does not work here; Python frames only (no GC, "
                      f"GIL or C frames): {why.strip()[-300:]}[/yellow]")
    trace = out / "pyspy-trace.json"
    work = Path(tempfile.mkdtemp(prefix="agentflux-profile-"))
    try:
        s = _settings_for(settings, work, "profile")
        asyncio.run(ensure_topics(s))
        console.print(f"producing {events:,} events in records of {RECORD_EVENTS} ...")
        asyncio.run(_produce(s, s.topics.events, events, RECORD_EVENTS))
        console.print(f"draining them with one worker under py-spy ({rate:g} Hz"
                      f"{', native' if native else ''}) ...")
        run = run_profiled_worker(s, events, trace, out / "worker.log", rate, python, native,
                                  work, console)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()
    intervals = end_dead_threads(trace_intervals(json.loads(trace.read_text())), run.alive,
                                 1.0 / rate)
    with open(trace, "rb") as src, gzip.open(f"{trace}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    trace.unlink()
    window = drain_window(intervals, 1.0 / rate)
    if window is None:
        raise RuntimeError("the trace shows no record decoded or no batch landed: nothing to "
                           f"attribute (see {out / 'worker.log'})")
    seconds = window_seconds(intervals, window)
    write_collapsed(out / "stacks-drain.txt", seconds, rate)
    write_collapsed(out / "stacks-all.txt", window_seconds(intervals), rate)
    bd = Breakdown.of(seconds)
    cpu = None
    thread_cpu: dict[str, float] = {}
    listing: list = []
    if len(run.cpu) > 1:
        in_window = cpu_between(run.cpu, *window)
        process = in_window.pop(0, 0.0)
        thread_cpu, unsampled, listing = split_cpu(in_window, bd.threads, run.comm)
        cpu = bd.cpu(thread_cpu, max(0.0, process - sum(in_window.values())), unsampled)
    threads = {t.tid: {"name": t.name, "group": t.group,
                       "cpu_us_per_event": (round(thread_cpu[t.tid] / events * 1e6, 3)
                                            if t.tid in thread_cpu else None)}
               for t in sorted(bd.threads.values(), key=lambda t: t.tid)}
    drain_s = window[1] - window[0]
    t0, _, rows0 = next((p for p in run.polls if p[1] > 0), run.polls[-1])
    t1 = run.polls[-1][0]
    result = {
        "command": command,
        "events": events,
        "drain_s": round(drain_s, 3),
        "events_per_s": round(events / drain_s),
        # as bench pipeline measures it, from the /metrics polls (one a second: coarse)
        "events_per_s_polled": round((events - rows0) / (t1 - t0)) if t1 > t0 else None,
        "rate_hz": rate,
        "native": native,
        "python": python,
        "cpu_count": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in load],
        "load_avg_after": [round(x, 2) for x in load_end],
        "figure": "cpu_us_per_event" if cpu else "sampled_us_per_event",
        "unsampled_threads": [{**t, "cpu_us_per_event": round(t["cpu_s"] / events * 1e6, 3)}
                              for t in listing],
        **bd.report(events, rate, cpu),
        "threads": threads,  # the sampled ones, with the kernel's CPU figure where it has one
        "out": str(out),
    }
    (out / "profile.json").write_text(json.dumps(result, indent=1))
    (out / "threads-cpu.json").write_text(json.dumps({  # the kernel's readings, to re-analyse
        "window_s": window, "series": run.cpu, "comm": run.comm}))
    (out / "profile.md").write_text(markdown(result))
    return result


def main(events: int, out: str | None, rate: float, python: str | None, as_json: bool,
         console) -> int:
    from agentflux.cli import broker_for

    if events < 1000:
        raise ConfigError(f"--events must be at least 1000 (one record), got {events}")
    if not 1 <= rate <= 1000:
        raise ConfigError(f"--rate must be between 1 and 1000 samples per second, got {rate:g}")
    python = python or sys.executable
    if not (Path(python).is_file() and os.access(python, os.X_OK)):
        raise ConfigError(f"--python {python}: not an executable interpreter")
    quiet = console
    if as_json:
        from rich.console import Console
        quiet = Console(stderr=True)
    out_dir = Path(out) if out else Path(tempfile.mkdtemp(prefix="agentflux-profile-out-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    quiet.print(f"output: {out_dir}")
    command = ("agentflux " + shlex.join(sys.argv[1:]) if sys.argv[1:3] == ["bench", "profile"]
               else f"agentflux bench profile --events {events} --rate {rate:g}")
    with broker_for(Settings.from_env(), quiet) as settings:
        result = profile(settings, events, out_dir, rate, python, quiet, command)
    if as_json:
        print(json.dumps(result))
    else:
        print_table(result, console)
        console.print(f"written to {out_dir}: profile.json, profile.md, stacks-drain.txt "
                      "(collapsed stacks of the drain), stacks-all.txt, pyspy-trace.json.gz, "
                      "threads-cpu.json, worker.log")
    return 0
