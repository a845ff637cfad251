"""Running a worker as a child process and watching it through its /metrics endpoint.

Used by ``agentflux demo``, the benchmarks and the end-to-end tests: progress is read from the
worker's Prometheus metrics (the history can be queried at any time too, but a metric is cheaper
to poll).

The worker runs in its own process group, so a terminal's Ctrl-C reaches only the parent, which
stops it in order (before the broker); on Linux it also gets SIGTERM if the parent dies. Its
output log is bounded: past ``log_max_bytes`` it is moved to ``<log>.1`` and started again
(one previous part kept), so a worker that logs reconnect errors for hours fills no disk.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from prometheus_client.parser import text_string_to_metric_families

from agentflux.config import Settings
from agentflux.localkafka import child_process_kwargs, free_port

DEFAULT_LOG_MAX_BYTES = 8 * 1024 * 1024


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce ``settings`` in a child process."""
    t = settings.topics
    prefix = t.events.rsplit(".events", 1)[0]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers or "",
        "KAFKA_SECURITY_PROTOCOL": settings.security_protocol,
        "AGENTFLUX_APP_ID": settings.app_id,
        "AGENTFLUX_WINDOW_S": repr(settings.window_s),
        "AGENTFLUX_GRACE_S": repr(settings.grace_s),
        "AGENTFLUX_KPI_DIMENSIONS": ",".join(settings.kpi_dimensions),
        "AGENTFLUX_HISTORY": str(settings.history_path),
        "AGENTFLUX_METRICS_HOST": settings.metrics_host,
        "AGENTFLUX_METRICS_PORT": str(settings.metrics_port),
        "AGENTFLUX_WEB_HOST": settings.web_host,
        "AGENTFLUX_WEB_PORT": str(settings.web_port),
        "AGENTFLUX_TOPIC_PREFIX": prefix,
        "AGENTFLUX_EVENTS_PARTITIONS": str(t.events_partitions),
        "AGENTFLUX_REPLICATION_FACTOR": str(t.replication_factor),
        "AGENTFLUX_MAX_FUTURE_SKEW_S": repr(settings.max_future_skew_s),
        "AGENTFLUX_DEDUP_EVENTS": str(settings.dedup_events),
        "AGENTFLUX_DEADLETTER_MAX_BYTES": str(settings.deadletter_max_bytes),
        "AGENTFLUX_RETENTION_DAYS": repr(settings.retention_days),
        "AGENTFLUX_SEGMENT_ROWS": str(settings.segment_rows),
        "AGENTFLUX_SEGMENT_AGE_S": repr(settings.segment_age_s),
        "AGENTFLUX_COMPACT_INTERVAL_S": repr(settings.compact_interval_s),
        "AGENTFLUX_COMPACT_MIN_FILES": str(settings.compact_min_files),
        "AGENTFLUX_COMPACT_GRACE_S": repr(settings.compact_grace_s),
        "AGENTFLUX_REPLAY": "1" if settings.replay else "0",
    }
    for key, val in (("KAFKA_SASL_MECHANISM", settings.sasl_mechanism),
                     ("KAFKA_SASL_USERNAME", settings.sasl_username),
                     ("KAFKA_SASL_PASSWORD", settings.sasl_password.get_secret_value()
                      if settings.sasl_password else None),
                     ("KAFKA_SSL_CAFILE", settings.ssl_cafile),
                     ("AGENTFLUX_COMMAND_KEYS", settings.command_keys.get_secret_value()
                      if settings.command_keys else None),
                     ("AGENTFLUX_AUTOSCALER_POLICY", settings.autoscaler_policy),
                     ("AGENTFLUX_FAILURE_RULES", settings.failure_rules)):
        if val:
            env[key] = val
    return env


def scrape(url: str, timeout_s: float = 2.0) -> dict[str, float]:
    """``{sample name + labels: value}`` from a Prometheus endpoint, e.g.
    ``agentflux_history_rows{table="events"}``."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def wait_until(cond: Callable[[], bool], deadline_s: float, what: str,
               interval_s: float = 0.05) -> None:
    """Poll ``cond`` until it holds; raise TimeoutError naming ``what`` after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    last: OSError | None = None
    while True:
        try:
            if cond():
                return
            last = None
        except OSError as exc:
            last = exc  # endpoint not up yet
        if time.monotonic() > end:
            why = f" (the last try: {type(last).__name__}: {last})" if last else ""
            raise TimeoutError(f"timed out after {deadline_s}s waiting for {what}{why}")
        time.sleep(interval_s)


async def until(cond: Callable[[], Any], deadline_s: float, what: str,
                interval_s: float = 0.05) -> float:
    """:func:`wait_until` on an event loop: poll ``cond`` (its result awaited if it is a
    coroutine) until it holds, without blocking the loop; return the monotonic time it held,
    or raise TimeoutError naming ``what`` after ``deadline_s``."""
    import asyncio
    end = time.monotonic() + deadline_s
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic()
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {deadline_s}s waiting for {what}")
        await asyncio.sleep(interval_s)


class WorkerExited(RuntimeError):
    """The worker process ended while it was expected to run (it printed why in its log)."""

    def __init__(self, returncode: int, log_path: Path | None, tail: str):
        super().__init__(f"worker exited with {returncode}\n{tail}")
        self.returncode, self.log_path, self.tail = returncode, log_path, tail

    def summary(self) -> str:
        """One line: the exit status, the worker's last line (its own error) and the log."""
        lines = [line.strip() for line in self.tail.splitlines() if line.strip()]
        last = lines[-1].removeprefix("agentflux: error: ") if lines else ""
        return (f"the worker exited with {self.returncode}" + (f": {last}" if last else "")
                + (f" (its log: {self.log_path})" if self.log_path else ""))


class BoundedLog:
    """Keeps a child's output file (opened for appending, so the child writes at its end
    whatever the size) under ``max_bytes``: checked every ``interval_s``, a larger file is
    copied to ``<name>.1`` and truncated. Runs until :meth:`close` or the process ends."""

    def __init__(self, path: Path, proc: subprocess.Popen, max_bytes: int,
                 interval_s: float = 0.5):
        self.path, self.proc, self.max_bytes, self.interval_s = path, proc, max_bytes, interval_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agentflux-worker-log",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.interval_s):
            self.rotate_if_full()
            if self.proc.poll() is not None:
                return

    def rotate_if_full(self) -> None:
        try:
            if self.path.stat().st_size <= self.max_bytes:
                return
            shutil.copyfile(self.path, self.path.with_name(self.path.name + ".1"))
            os.truncate(self.path, 0)
        except OSError:
            pass  # the log's directory went away (a test's tmp dir): nothing to bound

    def close(self) -> None:
        self._done.set()
        self._thread.join(2.0)


@dataclass
class WorkerProcess:
    """A worker (``agentflux worker``) in a child process, configured by ``settings``.

    ``stop_timeout_s``: the worker's ``--stop-timeout`` (its bound on a stop); ``log_path``: its
    output, kept under ``log_max_bytes`` (plus one previous part, ``<log>.1``)."""

    settings: Settings
    log_path: Path | None = None
    proc: subprocess.Popen | None = None
    extra_env: dict = field(default_factory=dict)
    stop_timeout_s: float | None = None
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    _log: BoundedLog | None = field(default=None, repr=False)

    @classmethod
    def with_free_ports(cls, settings: Settings, **kw) -> "WorkerProcess":
        return cls(settings.replace(metrics_port=free_port(), web_port=free_port()), **kw)

    @property
    def metrics_url(self) -> str:
        return f"http://{self.settings.metrics_host}:{self.settings.metrics_port}/metrics"

    def start(self, ready_timeout_s: float = 60.0) -> "WorkerProcess":
        """Start the worker and return once its /metrics answers. If it exits first, raises
        WorkerExited; if it is not ready in time (TimeoutError) or the wait is interrupted
        (KeyboardInterrupt), the started process is stopped before the exception goes on."""
        env = {**os.environ, **settings_env(self.settings), **self.extra_env}
        cmd = [sys.executable, "-m", "agentflux.cli", "worker"]
        if self.stop_timeout_s is not None:
            cmd += ["--stop-timeout", repr(float(self.stop_timeout_s))]
        out = subprocess.DEVNULL
        if self.log_path:
            Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, **child_process_kwargs())
        finally:
            if self.log_path:
                out.close()
        if self.log_path:
            self._log = BoundedLog(Path(self.log_path), self.proc, self.log_max_bytes)
        try:
            wait_until(lambda: self._alive_or_raise() and "agentflux_records_total" in self.metrics(),
                       ready_timeout_s, "the worker's /metrics endpoint")
        except WorkerExited:
            raise
        except TimeoutError as exc:
            dump = self.thread_dump()
            self.stop(timeout_s=3.0)
            if dump:
                raise TimeoutError(f"{exc}; the worker's threads then:\n{dump}") from None
            raise
        except BaseException:
            self.stop(timeout_s=3.0)
            raise
        return self

    def thread_dump(self, timeout_s: float = 5.0) -> str:
        """Every thread's stack in the running worker (``kill -QUIT``; it goes on running), as
        it wrote them to its log; "" without a log, or before the worker has said it serves
        /metrics (until then SIGQUIT would end it)."""
        if self.proc is None or self.proc.poll() is not None or not self.log_path:
            return ""
        path = Path(self.log_path)
        text = path.read_text(errors="replace")
        if "agentflux worker: " not in text or "/metrics" not in text:
            return ""
        start = len(text.encode())
        self.proc.send_signal(signal.SIGQUIT)

        seen = [""]

        def done() -> bool:  # the dump is in the log and has stopped growing
            with open(path, "rb") as f:
                f.seek(start)
                new = f.read().decode(errors="replace")
            settled = "most recent call first" in new and new == seen[0]
            seen[0] = new
            return settled
        try:
            wait_until(done, timeout_s, "the worker's thread dump", interval_s=0.1)
        except TimeoutError:
            pass
        return seen[0] if "most recent call first" in seen[0] else ""

    def _alive_or_raise(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path else ""
            raise WorkerExited(self.proc.returncode, self.log_path, tail)
        return True

    def metrics(self) -> dict[str, float]:
        return scrape(self.metrics_url)

    def value(self, name: str, default: float = 0.0) -> float:
        return self.metrics().get(name, default)

    def wait_for(self, cond: Callable[[dict[str, float]], bool], deadline_s: float, what: str) -> None:
        wait_until(lambda: self._alive_or_raise() and cond(self.metrics()), deadline_s, what)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Graceful stop (SIGTERM, then SIGKILL after ``timeout_s``)."""
        if self.proc is None or self.proc.poll() is not None:
            self._close_log()
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._close_log()

    def kill(self) -> None:
        """kill -9: no chance to flush or commit anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.rotate_if_full()
            self._log.close()
            self._log = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid
