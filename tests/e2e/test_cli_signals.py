"""SIGINT / SIGTERM to a running command, as a script or a terminal sends them: the command says
"interrupted", stops what it started (producers and the worker before the broker) and exits
within 5 s with what it knows so far; no child process is left, no log floods, the history
opens. Each test runs the real CLI in a subprocess, waits until it is doing real work (events
landed, published or sampled), then sends the signal."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from agentflux.config import Settings
from agentflux.harness import scrape, wait_until
from agentflux.sinks.catalog import connect

STOP_WITHIN_S = 5.0


class Running:
    """A CLI command in a subprocess, its output collected line by line as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]):
        # a process group of its own, as a shell gives a foreground command (see interrupt)
        self.proc = subprocess.Popen([sys.executable, "-m", "agentflux.cli", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL, process_group=0)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(s, lines), daemon=True)
                         for s, lines in ((self.proc.stdout, self.out),
                                          (self.proc.stderr, self.err))]
        for r in self._readers:
            r.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait_for(self, cond, deadline_s: float, what: str) -> None:
        def check() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode} before {what}:\n"
                                     f"{self.stdout[-3000:]}\n{self.stderr[-3000:]}")
            return cond()
        wait_until(check, deadline_s, what, interval_s=0.1)

    def printed(self, text: str, deadline_s: float = 120) -> None:
        self.wait_for(lambda: text in self.stdout + self.stderr, deadline_s, repr(text))

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def interrupt(self, sig: int, terminal: bool = False) -> tuple[int, float]:
        """Send ``sig`` to the command (``terminal``: to its process group, as Ctrl-C in a
        terminal does); return the exit status and the seconds it took, after checking that
        every process the command had started is gone."""
        children = self.children()
        t0 = time.monotonic()
        if terminal:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(STOP_WITHIN_S * 3)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running {STOP_WITHIN_S * 3:g} s after {sig!r}:\n"
                        f"{self.stdout[-2000:]}\n{self.stderr[-2000:]}")
        took = time.monotonic() - t0
        for r in self._readers:
            r.join(5)
        _, alive = psutil.wait_procs(children, timeout=1.0)  # reaped by init if orphaned
        alive = [p for p in alive if _running(p)]
        assert not alive, f"left running: {[(p.pid, _cmdline(p)[-200:]) for p in alive]}"
        return code, took

    def kill(self) -> None:
        for p in [*self.children(), psutil.Process(self.proc.pid)]:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(10)


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return "?"


def worker_metrics(run: Running) -> dict[str, float]:
    """The /metrics of the worker the command started (found among its children by its
    listening sockets); {} while it is not up."""
    for child in run.children():
        try:
            if "agentflux.cli" not in child.cmdline() or "worker" not in child.cmdline():
                continue
            ports = [c.laddr.port for c in child.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue
        for port in ports:
            try:
                m = scrape(f"http://127.0.0.1:{port}/metrics", timeout_s=1.0)
            except OSError:
                continue
            if "agentflux_records_total" in m:
                return m
    return {}


def landed(run: Running) -> int:
    return int(worker_metrics(run).get('agentflux_history_rows{table="events"}', 0))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The state directory (logs included) and temporary files under this test's tmp_path: a
    command that leaves a file in /tmp fails the check at the end of the test."""
    (tmp_path / "tmp").mkdir()
    e = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "AGENTFLUX_"))}
    return {**e, "AGENTFLUX_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"),
            "COLUMNS": "200"}


def assert_nothing_left_in_tmp(env: dict[str, str]) -> None:
    left = os.listdir(env["TMPDIR"])
    assert not left, f"left in the temporary directory: {left}"


def test_demo_stops_worker_then_reports_what_landed(kafka_bootstrap, env, tmp_path):
    """SIGTERM, as a script or a service manager sends it, to the demo alone."""
    sig = signal.SIGTERM
    root = tmp_path / "history"
    run = Running(["demo", "--events", "20000000", "--history", str(root)],
                  {**env, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    try:
        run.printed("worker pid")
        run.wait_for(lambda: landed(run) > 0, 60, "events to land")
        code, took = run.interrupt(sig)
    finally:
        if run.proc.poll() is None:
            run.kill()
    assert code == 130, (code, run.stderr[-3000:])
    assert took < STOP_WITHIN_S, f"took {took:.1f} s"
    assert f"agentflux: interrupted ({sig.name})" in run.stderr, run.stderr
    summary = [line for line in run.out if line.startswith("interrupted after")]
    assert summary, run.stdout[-2000:]
    con = connect(root)
    try:
        n = con.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        con.close()
    assert n > 0 and f"landed {n:,}" in summary[0], (n, summary)
    # the worker's log is in the state directory, named in the summary, and small
    logs = list((Path(env["AGENTFLUX_HOME"]) / "logs").glob("demo-worker-*.log"))
    assert len(logs) == 1 and str(logs[0]) in summary[0], (logs, summary)
    assert logs[0].stat().st_size < 200_000
    assert_nothing_left_in_tmp(env)


def test_demo_with_its_own_broker_stops_the_worker_before_the_broker(kafka_bootstrap, env,
                                                                     tmp_path):
    """No broker configured: the demo starts one (a child). Ctrl-C in a terminal (SIGINT to
    the foreground process group) reaches only the demo, which stops the producer and the
    worker before the broker, so the worker's log has no reconnect errors."""
    home = Path(env["AGENTFLUX_HOME"])
    home.mkdir()
    jars = Settings.from_env().state_dir / "kafka-3.9.1"
    (home / "kafka-3.9.1").symlink_to(jars)  # resolved by the session broker: no Maven here
    root = tmp_path / "history"
    run = Running(["demo", "--events", "20000000", "--history", str(root)], env)
    try:
        run.printed("worker pid", deadline_s=180)
        run.wait_for(lambda: landed(run) > 0, 60, "events to land")
        kinds = sorted("java" if "kafka.Kafka" in _cmdline(c) else "worker"
                       for c in run.children() if "kafka.Kafka" in _cmdline(c)
                       or "agentflux.cli worker" in _cmdline(c))
        assert kinds == ["java", "worker"], [_cmdline(c) for c in run.children()]
        code, took = run.interrupt(signal.SIGINT, terminal=True)
    finally:
        if run.proc.poll() is None:
            run.kill()
    assert code == 130 and took < STOP_WITHIN_S, (code, took, run.stderr[-3000:])
    assert "agentflux: interrupted (SIGINT)" in run.stderr
    assert any(line.startswith("interrupted after") for line in run.out), run.stdout[-2000:]
    log = next((home / "logs").glob("demo-worker-*.log")).read_text(errors="replace")
    assert len(log) < 200_000
    for flood in ("Unable connect", "Unable to bootstrap", "KafkaConnectionError",
                  "Connection refused"):
        assert flood not in log, log[-3000:]
    connect(root).close()
    assert_nothing_left_in_tmp(env)  # the broker's data directory went with it


@pytest.mark.parametrize("when", ["starting", "running"])
def test_worker_stops_within_5s_and_summarises(kafka_bootstrap, env, tmp_path, when):
    """A signal while the worker starts (it has printed its line, Faust is starting), or once
    it runs (Faust's web server answers): the same bounded stop."""
    import urllib.request

    from agentflux.localkafka import free_port

    root = tmp_path / "history"
    metrics_port, web_port = free_port(), free_port()
    run = Running(["worker", "--history", str(root), "--metrics-port", str(metrics_port),
                   "--web-port", str(web_port)],
                  {**env, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                   "AGENTFLUX_TOPIC_PREFIX": f"sig-{uuid.uuid4().hex[:8]}",
                   "AGENTFLUX_APP_ID": f"sig-{uuid.uuid4().hex[:8]}"})
    try:
        run.printed("agentflux worker:")
        if when == "running":
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            run.wait_for(lambda: "agentflux_records_total" in scrape(url), 60, "/metrics")
            run.wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{web_port}/",
                                                        timeout=1).status == 200,
                         60, "Faust's web server")
        code, took = run.interrupt(signal.SIGINT)
    finally:
        if run.proc.poll() is None:
            run.kill()
    assert code == 0 and took < STOP_WITHIN_S, (code, took, run.stderr[-3000:])
    assert "agentflux worker: interrupted (SIGINT)" in run.stderr, run.stderr
    assert "agentflux worker: stopped; this run landed 0 events" in run.stderr, run.stderr
    connect(root).close()
    assert_nothing_left_in_tmp(env)


async def _has_records(bootstrap: str, topic: str) -> bool:
    """Whether ``topic`` holds a record (read from the beginning, without a group)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        return any((await consumer.getmany(timeout_ms=2000)).values())
    finally:
        await consumer.stop()


def test_simulate_stops_within_5s_with_its_counters(kafka_bootstrap, env):
    prefix = f"sig-{uuid.uuid4().hex[:8]}"
    run = Running(["simulate", "--synthetic", "--events", "50000000"],
                  {**env, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                   "AGENTFLUX_TOPIC_PREFIX": prefix})
    try:
        run.printed("agentflux simulate: publishing")
        run.wait_for(lambda: asyncio.run(_has_records(kafka_bootstrap, f"{prefix}.events")),
                     60, "records on the events topic")
        code, took = run.interrupt(signal.SIGINT)
    finally:
        if run.proc.poll() is None:
            run.kill()
    assert code == 130 and took < STOP_WITHIN_S, (code, took, run.stderr[-3000:])
    assert "agentflux: interrupted (SIGINT)" in run.stderr
    counters = [line for line in run.out if line.startswith("emitted ")]
    assert counters, run.stdout
    emitted = int(counters[0].split()[1].rstrip(","))
    assert emitted > 0 and "acked" in counters[0]
    assert_nothing_left_in_tmp(env)


def test_bench_soak_stops_within_5s_with_a_partial_summary(kafka_bootstrap, env):
    run = Running(["bench", "soak", "--minutes", "1", "--rate", "1000", "--json"],
                  {**env, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    try:
        run.printed("worker log")
        run.wait_for(lambda: landed(run) > 0, 60, "soak events to land")
        code, took = run.interrupt(signal.SIGTERM)
    finally:
        if run.proc.poll() is None:
            run.kill()
    assert code == 130 and took < STOP_WITHIN_S, (code, took, run.stderr[-3000:])
    assert "agentflux: interrupted (SIGTERM)" in run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["interrupted"] is True and result["emitted"] > 0, result
    assert_nothing_left_in_tmp(env)
