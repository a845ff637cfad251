"""The fault suite: the pipeline under the faults every deployment meets, with counts.

Each scenario runs the real thing (a Kafka broker from Maven Central jars, a worker process, the
Emitter or foreign producers), injects one kind of fault, waits until the pipeline has recovered,
and then counts from the history itself:

* ``sent``: events the producer side offered (Emitter: ``emitted``; raw producers: items);
* ``acked``: events the broker acknowledged;
* ``landed``: distinct event ids in the history; ``dead_lettered``: rows in ``deadletters``;
* ``lost``: events that should have landed and did not (acknowledged, or delivered from the
  spool, and not in the history); ``dropped``: events the Emitter refused and *counted*
  (buffer and spool full: never silent);
* ``duplicated``: history rows beyond one per id (``suppressed``: re-sent events the history
  recognised by id and did not land twice);
* ``recovery_s``: from the end of the fault (restart, network healed) until every expected event
  had landed; ``crash_loops``: worker exits nobody asked for, after the fault was over.

Pass: lost = 0, duplicated = 0, valid + dead-lettered = sent (minus what was counted as dropped),
crash_loops = 0. ``agentflux bench faults --json`` prints one object per scenario; the tests in
``tests/faults/`` run the same scenarios at CI size (``AGENTFLUX_FAULT_EVENTS``).
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from agentflux.config import Settings, Topics
from agentflux.harness import WorkerProcess, wait_until
from agentflux.localkafka import LocalKafka, free_port
from agentflux.sinks.catalog import connect
from agentflux.sinks.history import History

EVENTS_ROWS = 'agentflux_history_rows{table="events"}'
DL_ROWS = 'agentflux_history_rows{table="deadletters"}'
DEFAULT_EVENTS = 100_000


def fault_events(default: int = 20_000) -> int:
    """The size of a scenario: ``AGENTFLUX_FAULT_EVENTS`` (CI-sized default)."""
    raw = os.environ.get("AGENTFLUX_FAULT_EVENTS")
    return int(raw) if raw else default


@dataclass
class Outcome:
    scenario: str
    sent: int = 0
    acked: int = 0
    landed: int = 0
    dead_lettered: int = 0
    lost: int = 0
    duplicated: int = 0
    suppressed: int = 0
    dropped: int = 0
    expected_valid: int = 0
    expected_dead: int = 0
    recovery_s: float | None = None
    crash_loops: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and self.crash_loops == 0
                and self.landed == self.expected_valid
                and self.dead_lettered == self.expected_dead
                and self.landed + self.dead_lettered + self.dropped == self.sent)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


# --- the rig: broker, worker, history ---------------------------------------------------------

@dataclass
class Rig:
    """A broker (shared, or one of the scenario's own that it may kill), a worker process with a
    history of its own, and a scratch directory."""

    settings: Settings
    work: Path
    kafka: LocalKafka | None = None  # set when the scenario owns the broker
    proxy: Any = None
    worker: WorkerProcess | None = None
    exits: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def start_worker(self) -> WorkerProcess:
        n = len(self.exits) + (1 if self.worker else 0)
        self.worker = WorkerProcess.with_free_ports(self.settings,
                                                    log_path=self.work / f"worker{n}.log")
        self.worker.start(ready_timeout_s=120)
        return self.worker

    def worker_exited(self) -> int | None:
        """The exit code if the worker died (recorded once), else None."""
        w = self.worker
        if w is None or w.proc is None or w.proc.poll() is None:
            return None
        code = w.proc.returncode
        self._exited(w, code)
        self.worker = None
        return code

    def _exited(self, w: WorkerProcess, code: int | None) -> None:
        """Record an exit; one nobody asked for keeps the end of the worker's log in the notes
        (the scratch directory is deleted with the scenario)."""
        if code in (0, None):
            return
        self.exits.append(code)
        try:
            tail = Path(w.log_path).read_text(errors="replace").splitlines()[-12:]
        except OSError:
            tail = []
        self.notes.append(f"worker exited with {code}; its log ended: " + " | ".join(tail))

    def landed(self) -> float:
        w = self.worker
        if w is None:
            return -1
        m = w.metrics()
        return m.get(EVENTS_ROWS, 0) + m.get(DL_ROWS, 0)

    def wait_landed(self, n: int, deadline_s: float, restart_on_exit: bool = True) -> None:
        """Wait until ``n`` events + dead letters landed; a worker that dies is restarted (and
        counted: after a fault is over, that is a crash loop)."""
        end = time.monotonic() + deadline_s
        while True:
            if self.worker_exited() is not None and restart_on_exit:
                self.start_worker()
            try:
                if self.landed() >= n:
                    return
            except OSError:
                pass
            if time.monotonic() > end:
                raise TimeoutError(f"timed out after {deadline_s}s: {self.landed():.0f} of {n} "
                                   "events and dead letters landed")
            time.sleep(0.1)  # polling the worker's /metrics for a condition, bounded

    def stop(self) -> None:
        if self.worker is not None:
            w = self.worker
            self._exited(w, w.stop())
            self.worker = None

    def recover(self, out: Outcome, n: int, since: float) -> Outcome:
        """Wait until ``n`` events + dead letters have landed (recovery counted from ``since``,
        the end of the fault), stop the worker and count the history into ``out``."""
        self.wait_landed(n, 300)
        out.recovery_s = round(time.monotonic() - since, 2)
        self.stop()
        out.crash_loops = len(self.exits)
        out.notes += self.notes
        return self.count(out)

    def count(self, out: Outcome) -> Outcome:
        """Fill the history's figures into ``out`` (the worker must be stopped)."""
        con = connect(self.settings.history_path)
        try:
            rows, distinct = con.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone()
            out.landed = distinct
            out.duplicated = rows - distinct
            out.dead_lettered = con.execute("SELECT count(*) FROM deadletters").fetchone()[0]
            out.suppressed = con.execute("SELECT count(*) FROM duplicates").fetchone()[0]
        finally:
            con.close()
        out.lost = max(0, out.expected_valid - out.landed)
        return out


def _settings(bootstrap: str, work: Path, **kw: Any) -> Settings:
    run = uuid.uuid4().hex[:8]
    kw = {"history_path": str(work / "history"), "window_s": 5.0, "grace_s": 1.0, **kw}
    return Settings.from_env(
        env={}, bootstrap_servers=bootstrap, app_id=f"faults-{run}",
        topics=Topics.with_prefix(f"faults-{run}"), state_dir=Settings.from_env().state_dir, **kw)


@contextmanager
def rig(bootstrap: str | None = None, *, own_broker: bool = False, proxy: bool = False,
        **settings_kw: Any) -> Iterator[Rig]:
    """A rig on ``bootstrap`` or, with ``own_broker``, on a broker of its own (behind a loopback
    proxy with ``proxy``: the broker advertises the proxy's port, so every client goes through
    it)."""
    from agentflux.streams.topics import ensure_topics

    work = Path(tempfile.mkdtemp(prefix="agentflux-faults-"))
    kafka = prx = None
    r = None
    try:
        if own_broker:
            port = free_port()
            if proxy:
                from agentflux.bench.netproxy import Proxy
                prx = Proxy(target=("127.0.0.1", port)).start()
            kafka = LocalKafka(work_dir=work / "kafka", cache_dir=Settings.from_env().state_dir,
                               port=port, advertised_port=prx.port if prx else 0)
            kafka.start()
            bootstrap = f"127.0.0.1:{prx.port}" if prx else kafka.bootstrap
        assert bootstrap, "a bootstrap address or own_broker=True"
        s = _settings(bootstrap, work, **settings_kw)
        asyncio.run(ensure_topics(s))
        r = Rig(s, work, kafka, prx)
        yield r
    finally:
        if r is not None:
            try:
                r.stop()
            except Exception:  # the scenario's outcome matters more than a tidy stop
                pass
        if kafka is not None:
            kafka.stop()
        if prx is not None:
            prx.stop()
        shutil.rmtree(work, ignore_errors=True)


def kill9_broker(kafka: LocalKafka) -> None:
    if kafka.proc is not None and kafka.proc.poll() is None:
        kafka.proc.send_signal(signal.SIGKILL)
        kafka.proc.wait()
    kafka.proc = None


# --- load -------------------------------------------------------------------------------------

def synthetic(n: int, seed: int) -> list[dict]:
    from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
    return list(SyntheticRuntime(SimConfig(events=n, agents=16, seed=seed,
                                           start_ns=time.time_ns() - 3600 * 10**9)).events())


class Load:
    """An Emitter publishing ``events`` at ``rate`` events/s from a thread."""

    def __init__(self, settings: Settings, events: list[dict], rate: float, **emitter_kw: Any):
        from agentflux.runtime.emitter import Emitter
        self.events = events
        self.rate = rate
        self.emitter = Emitter(settings, **emitter_kw)
        self.emitted = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Load":
        self.emitter.start()
        self._thread.start()
        return self

    def _run(self) -> None:
        step = max(1, int(self.rate / 20))  # 20 slices a second
        t0 = time.monotonic()
        for i in range(0, len(self.events), step):
            for e in self.events[i:i + step]:
                self.emitter.emit(e)
            self.emitted = min(len(self.events), i + step)
            ahead = t0 + self.emitted / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)  # pacing the load generator, not synchronising

    def join(self, timeout_s: float = 300) -> None:
        self._thread.join(timeout_s)

    def finish(self, flush_s: float = 120.0) -> Any:
        self.join()
        self.emitter.flush(flush_s)
        self.emitter.close(30)
        return self.emitter.stats()


def _emitter_outcome(name: str, st: Any) -> Outcome:
    dropped = st.dropped + st.failed
    return Outcome(name, sent=st.emitted, acked=st.acked, dropped=dropped,
                   expected_valid=st.emitted - dropped)


# --- scenarios --------------------------------------------------------------------------------

def worker_kill(bootstrap: str, n: int, at: float, rate: float = 8000.0) -> Outcome:
    """kill -9 the worker when ``at`` of the events have landed; restart it at once."""
    t0 = time.monotonic()
    with rig(bootstrap) as r:
        r.start_worker()
        load = Load(r.settings, synthetic(n, seed=int(at * 100)), rate, batch_events=500).start()
        r.worker.wait_for(lambda m: m.get(EVENTS_ROWS, 0) >= at * n, 300,
                          f"{at:.0%} of the events")
        r.worker.kill()
        r.worker = None
        restart = time.monotonic()
        r.start_worker()
        st = load.finish()
        out = _emitter_outcome(f"worker_kill_{int(at * 100)}", st)
        r.recover(out, out.expected_valid, since=restart)
    out.seconds = round(time.monotonic() - t0, 1)
    return out


def broker_kill(n: int, rate: float = 8000.0, down_s: float = 3.0) -> Outcome:
    """kill -9 the broker mid-stream and restart it on its data and ports."""
    t0 = time.monotonic()
    with rig(own_broker=True) as r:
        r.start_worker()
        load = Load(r.settings, synthetic(n, seed=31), rate, spool_dir=r.work / "spool").start()
        r.worker.wait_for(lambda m: m.get(EVENTS_ROWS, 0) >= n // 3, 300, "a third landed")
        kill9_broker(r.kafka)
        time.sleep(down_s)  # the outage itself: the fault lasts this long
        r.kafka.start()
        restart = time.monotonic()
        st = load.finish(flush_s=180)
        out = _emitter_outcome("broker_kill", st)
        r.recover(out, out.expected_valid, since=restart)
    out.seconds = round(time.monotonic() - t0, 1)
    return out


def broker_outage_spool(n: int, buffer_events: int = 2000, spool_max_bytes: int | None = None,
                        restart_runtime: bool = False) -> Outcome:
    """The broker is down for longer than the Emitter's memory buffer holds: events spill to the
    spool (bounded; beyond it drops are counted) and are delivered after recovery, in order per
    session. With ``restart_runtime`` the runtime stops during the outage and a new Emitter on
    the same spool delivers it."""
    from agentflux.runtime.emitter import Emitter

    name = ("broker_outage_spool" + ("_bounded" if spool_max_bytes else "")
            + ("_runtime_restart" if restart_runtime else ""))
    t0 = time.monotonic()
    with rig(own_broker=True) as r:
        r.start_worker()
        spool = r.work / "spool"
        # emit() may wait up to 1 s for a spill (default 50 ms): a spool fsync behind the
        # worker's segment fsyncs on one busy disk can take longer than 50 ms, and this scenario
        # is about delivery through the spool, not emit()'s latency bound
        kw: dict = dict(buffer_events=buffer_events, batch_events=500, spool_dir=spool,
                        max_block_ms=1000.0)
        if spool_max_bytes:
            kw["spool_max_bytes"] = spool_max_bytes
        evs = synthetic(n, seed=41)
        em = Emitter(r.settings, **kw).start()
        for e in evs[: n // 4]:
            em.emit(e)
        assert em.flush(60), "the first quarter was not delivered with the broker up"
        r.kafka.stop()
        for e in evs[n // 4:]:
            em.emit(e)
        if restart_runtime:
            em.close(10)
            before = em.stats()
        wait_until(lambda: em.stats().buffered == 0 if not restart_runtime else True, 60,
                   "the memory buffer to spill")
        r.kafka.start()
        restart = time.monotonic()
        if restart_runtime:
            em2 = Emitter(r.settings, **kw).start()
            em2.flush(180)
            em2.close(30)
            after = em2.stats()
            out = Outcome(name, sent=n, acked=before.acked + after.acked,
                          dropped=before.dropped + before.failed + after.dropped + after.failed)
            out.notes.append(f"spooled at restart {after.recovered}")
        else:
            em.flush(180)
            em.close(30)
            st = em.stats()
            out = _emitter_outcome(name, st)
            out.notes.append(f"spool bytes at the end {st.spool_bytes}")
        out.expected_valid = out.sent - out.dropped
        r.recover(out, out.expected_valid, since=restart)
        out.notes.append(session_order_note(r.settings, evs))
    out.seconds = round(time.monotonic() - t0, 1)
    return out


def session_order_note(settings: Settings, evs: list[dict]) -> str:
    """Whether every session's events landed in the order they were emitted."""
    order = {e["id"]: i for i, e in enumerate(evs)}
    # the visible rows segment by segment, each partition's in offset order: a segment keeps its
    # rows in the order they landed, i.e. the order of the events in a record
    rows = History(settings.history_path).read("events", columns=["session_id", "id"])
    last: dict[str, int] = {}
    out_of_order = 0
    for sid, eid in zip(rows.column("session_id").to_pylist(), rows.column("id").to_pylist()):
        i = order.get(eid, -1)
        if i < last.get(sid, -1):
            out_of_order += 1
        last[sid] = max(i, last.get(sid, -1))
    return f"events out of session order: {out_of_order}"


def network(n: int, fault: str, rate: float = 5000.0) -> Outcome:
    """Network faults between every client and the broker (a loopback proxy the broker
    advertises): ``latency`` (200 ms each way for a while), ``blackhole`` (nothing passes for
    8 s), ``resets`` (every connection reset, five times)."""
    t0 = time.monotonic()
    with rig(own_broker=True, proxy=True) as r:
        r.start_worker()
        load = Load(r.settings, synthetic(n, seed=51), rate, spool_dir=r.work / "spool").start()
        r.worker.wait_for(lambda m: m.get(EVENTS_ROWS, 0) >= n // 5, 300, "a fifth landed")
        if fault == "latency":
            r.proxy.set_latency(200)
            time.sleep(5)  # the fault lasts this long
            r.proxy.set_latency(0)
        elif fault == "blackhole":
            r.proxy.blackhole(True)
            time.sleep(8)  # the fault lasts this long
            r.proxy.blackhole(False)
        elif fault == "resets":
            for _ in range(5):
                r.proxy.reset_all()
                time.sleep(1)  # spacing the resets
        else:
            raise ValueError(f"unknown network fault {fault!r}")
        healed = time.monotonic()
        st = load.finish(flush_s=180)
        out = _emitter_outcome(f"network_{fault}", st)
        r.recover(out, out.expected_valid, since=healed)
    out.seconds = round(time.monotonic() - t0, 1)
    return out


def hostile(bootstrap: str, n: int, bad_fraction: float = 0.01, seed: int = 7) -> Outcome:
    """Hostile input at ``bad_fraction`` of ``n`` events, through every compression codec."""
    from agentflux.bench.hostile import expected_totals, hostile_stream, publish_sync

    t0 = time.monotonic()
    records = hostile_stream(n, bad_fraction, seed)
    exp = expected_totals(records)
    with rig(bootstrap) as r:
        r.start_worker()
        acked = publish_sync(records, r.settings.topics.events, **r.settings.kafka_client_kwargs())
        out = Outcome("hostile_input", sent=exp["sent_items"], expected_valid=exp["valid"],
                      expected_dead=exp["dead"])
        out.acked = exp["sent_items"] if acked == len(records) else -1
        out.notes.append(f"{len(records)} records, {acked} acknowledged")
        start = time.monotonic()
        r.recover(out, exp["sent_items"], since=start)
    out.seconds = round(time.monotonic() - t0, 1)
    return out


@contextmanager
def small_volume(size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` (needs root; raises with a clear message otherwise)."""
    if os.geteuid() != 0:
        raise PermissionError("the disk-full scenario mounts a small tmpfs and needs root")
    mnt = Path(tempfile.mkdtemp(prefix="agentflux-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(mnt, ignore_errors=True)


def fill(volume: Path) -> None:
    """Write a ballast file on ``volume`` until the volume has no room left."""
    chunk = bytes(64 * 1024)
    with open(volume / "ballast", "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


def disk_full(bootstrap: str, n: int) -> Outcome:
    """The history's volume fills up: the worker stops (exit 70, the real error in its log) and
    never acks what it could not land; with room again a restart lands everything once.

    The volume is filled once the worker is up (its catalog and schema files written), before
    the events are sent: its first segment finds no room, however few events there are."""
    from agentflux.runtime.emitter import Emitter

    t0 = time.monotonic()
    with small_volume() as vol:
        with rig(bootstrap, history_path=str(vol / "history")) as r:
            w = WorkerProcess.with_free_ports(r.settings, log_path=r.work / "worker0.log")
            w.start(ready_timeout_s=120)
            fill(vol)
            with Emitter(r.settings) as em:
                for e in synthetic(n, seed=61):
                    em.emit(e)
                em.flush(120)
                st = em.stats()
            out = _emitter_outcome("disk_full", st)
            try:
                w.proc.wait(300)
            except subprocess.TimeoutExpired:
                out.notes.append("the worker did not stop on the full disk")
                w.kill()
            log = (r.work / "worker0.log").read_text(errors="replace")
            out.notes.append(f"worker exit {w.proc.returncode}; "
                             f"'No space left on device' in its log: "
                             f"{'No space left on device' in log}")
            subprocess.run(["mount", "-o", "remount,size=1g", str(vol)], check=True)
            healed = time.monotonic()
            r.start_worker()
            r.recover(out, out.expected_valid, since=healed)
    out.seconds = round(time.monotonic() - t0, 1)
    return out


SCENARIOS: dict[str, Callable[[str, int], Outcome]] = {
    "worker_kill_25": lambda b, n: worker_kill(b, n, 0.25),
    "worker_kill_50": lambda b, n: worker_kill(b, n, 0.50),
    "worker_kill_75": lambda b, n: worker_kill(b, n, 0.75),
    "broker_kill": lambda b, n: broker_kill(n),
    "broker_outage_spool": lambda b, n: broker_outage_spool(n),
    "broker_outage_spool_bounded": lambda b, n: broker_outage_spool(
        n, spool_max_bytes=64 * 1024),
    "broker_outage_runtime_restart": lambda b, n: broker_outage_spool(n, restart_runtime=True),
    "network_latency": lambda b, n: network(n, "latency"),
    "network_blackhole": lambda b, n: network(n, "blackhole"),
    "network_resets": lambda b, n: network(n, "resets"),
    "hostile_input": lambda b, n: hostile(b, n),
    "disk_full": lambda b, n: disk_full(b, n),
}


def main(events: int = DEFAULT_EVENTS, only: list[str] | None = None, as_json: bool = False,
         console: Any = None) -> int:
    """Run the scenarios (all, or ``only``) on a local broker; print one line (or JSON object)
    per scenario. Exit 0 when every scenario passed."""
    import orjson
    from rich.progress import Progress

    from agentflux.config import ConfigError

    names = only or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ConfigError(f"unknown fault scenario(s) {unknown}: choose from {list(SCENARIOS)}")
    work = Path(tempfile.mkdtemp(prefix="agentflux-faults-kafka-"))
    kafka = LocalKafka(work_dir=work, cache_dir=Settings.from_env().state_dir).start()
    results = []
    try:
        with Progress(console=console, transient=True, disable=as_json) as progress:
            task = progress.add_task("fault scenarios", total=len(names))
            for name in names:
                progress.update(task, description=name)
                try:
                    out = SCENARIOS[name](kafka.bootstrap, events)
                except Exception as exc:  # a scenario that cannot finish is a failed scenario
                    out = Outcome(name, notes=[f"{type(exc).__name__}: {exc}"], lost=-1)
                results.append(out)
                progress.advance(task)
                if not as_json and console is not None:
                    d = out.to_dict()
                    console.print(
                        f"{'ok  ' if out.ok else 'FAIL'} {name:32} sent {d['sent']:>7} acked "
                        f"{d['acked']:>7} landed {d['landed']:>7} dead {d['dead_lettered']:>5} "
                        f"dropped {d['dropped']:>5} lost {d['lost']:>3} dup {d['duplicated']:>3} "
                        f"recovery {d['recovery_s']} s  {'; '.join(out.notes)}")
    finally:
        kafka.stop()
        shutil.rmtree(work, ignore_errors=True)
    if as_json:
        print(orjson.dumps({"events": events, "scenarios": [o.to_dict() for o in results]},
                           option=orjson.OPT_INDENT_2).decode())
    return 0 if all(o.ok for o in results) else 1
