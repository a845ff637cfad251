"""A local Prometheus server (Debian's ``prometheus`` 2.x) for the tests and the benchmarks.

:class:`LocalPrometheus` writes a scrape configuration for the given targets, starts
``prometheus`` on a free loopback port with its own TSDB directory (exemplar storage on, so
``/api/v1/query_exemplars`` answers), waits until ``/-/ready`` says so, and stops it again.
:func:`query` and friends read its HTTP API. A missing binary is an error naming the Debian
package (``prometheus`` gives both ``prometheus`` and ``promtool``), never a silent skip.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from agentflux.localkafka import child_process_kwargs, free_port

DEBIAN_PACKAGE = "prometheus"


class PrometheusMissing(RuntimeError):
    """``prometheus`` or ``promtool`` is not installed."""


def binary(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``; raises :class:`PrometheusMissing` naming
    the Debian package when it is not on PATH."""
    path = shutil.which(name)
    if path is None:
        raise PrometheusMissing(
            f"{name} not found on PATH: install the Debian package {DEBIAN_PACKAGE!r} "
            f"(sudo apt-get install {DEBIAN_PACKAGE}, or run deploy/setup-system.sh as root)")
    return path


def promtool(*args: str, stdin: bytes | None = None, timeout_s: float = 60.0
             ) -> subprocess.CompletedProcess:
    """Run ``promtool args...`` and return the completed process (output captured as text)."""
    return subprocess.run([binary("promtool"), *args], input=stdin, capture_output=True,
                          timeout=timeout_s)


def scrape_config(targets: Sequence[str], interval_s: float = 1.0, job: str = "agentflux",
                  rule_files: Sequence[str | Path] = ()) -> dict[str, Any]:
    """A Prometheus configuration (as a dict; JSON is valid YAML) scraping ``targets``
    (``host:port``) every ``interval_s`` at ``/metrics``."""
    interval = f"{int(interval_s * 1000)}ms"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": job, "metrics_path": "/metrics",
                            "static_configs": [{"targets": list(targets)}]}],
    }


def _get(url: str, timeout_s: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read())


@dataclass
class LocalPrometheus:
    """``prometheus`` in a child process on ``127.0.0.1:<free port>``, scraping
    ``scrape_targets`` (``host:port``)."""

    work_dir: Path
    scrape_targets: Sequence[str]
    scrape_interval_s: float = 1.0
    rule_files: Sequence[str | Path] = ()
    port: int = 0
    proc: subprocess.Popen | None = None
    extra_args: Sequence[str] = field(default_factory=tuple)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return Path(self.work_dir) / "prometheus.log"

    def start(self, ready_timeout_s: float = 60.0, attempts: int = 3) -> "LocalPrometheus":
        """Start and wait for ``/-/ready``. A port taken between choosing and binding it is
        retried on another (up to ``attempts`` times); any other exit raises with the log."""
        exe = binary("prometheus")
        work = Path(self.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        config = work / "prometheus.yml"
        config.write_text(json.dumps(scrape_config(self.scrape_targets, self.scrape_interval_s,
                                                   rule_files=self.rule_files), indent=2))
        for attempt in range(attempts):
            self.port = free_port()
            cmd = [exe, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
                   f"--web.listen-address=127.0.0.1:{self.port}",
                   "--enable-feature=exemplar-storage", "--storage.tsdb.retention.time=1d",
                   "--web.enable-lifecycle", *self.extra_args]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, cwd=work,
                                             **child_process_kwargs())
            try:
                self._wait_ready(ready_timeout_s)
                return self
            except RuntimeError:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                if "address already in use" in tail and attempt + 1 < attempts:
                    continue
                raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _wait_ready(self, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        while True:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2.0) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > end:
                self.stop()
                raise TimeoutError(f"prometheus not ready after {deadline_s}s ({self.log_path})")
            time.sleep(0.05)  # polling a readiness endpoint, bounded by the deadline

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "LocalPrometheus":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- the HTTP API ------------------------------------------------------------------------
    def query(self, expr: str, timeout_s: float = 5.0) -> list[dict]:
        return query(self.url, expr, timeout_s)

    def value(self, expr: str, default: float | None = None) -> float | None:
        return query_value(self.url, expr, default)

    def exemplars(self, expr: str, start_s: float, end_s: float) -> list[dict]:
        return query_exemplars(self.url, expr, start_s, end_s)

    def targets(self) -> list[dict]:
        return _get(f"{self.url}/api/v1/targets")["data"]["activeTargets"]

    def rules(self) -> list[dict]:
        """Every loaded rule (``/api/v1/rules``) with its ``health`` and ``lastError``."""
        groups = _get(f"{self.url}/api/v1/rules")["data"]["groups"]
        return [r for g in groups for r in g["rules"]]


def query(url: str, expr: str, timeout_s: float = 5.0) -> list[dict]:
    """The result vector of an instant query ``expr`` at Prometheus ``url``: a list of
    ``{"metric": {labels}, "value": [time, "value"]}``."""
    q = urllib.parse.urlencode({"query": expr})
    body = _get(f"{url}/api/v1/query?{q}", timeout_s)
    if body.get("status") != "success":
        raise RuntimeError(f"query {expr!r} failed: {body}")
    data = body["data"]
    if data["resultType"] != "vector":
        return [{"metric": {}, "value": data["result"]}]
    return data["result"]


def query_value(url: str, expr: str, default: float | None = None) -> float | None:
    """The single value of ``expr`` (e.g. ``sum(...)``); ``default`` when the vector is empty."""
    result = query(url, expr)
    if not result:
        return default
    if len(result) != 1:
        raise ValueError(f"{expr!r} returned {len(result)} series, expected one")
    return float(result[0]["value"][1])


def query_exemplars(url: str, expr: str, start_s: float, end_s: float) -> list[dict]:
    """``/api/v1/query_exemplars``: per series, ``{"seriesLabels": ..., "exemplars": [{"labels":
    {...}, "value": "...", "timestamp": ...}]}``."""
    q = urllib.parse.urlencode({"query": expr, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}"})
    body = _get(f"{url}/api/v1/query_exemplars?{q}")
    if body.get("status") != "success":
        raise RuntimeError(f"exemplar query {expr!r} failed: {body}")
    return body["data"]


__all__ = ["DEBIAN_PACKAGE", "LocalPrometheus", "PrometheusMissing", "binary", "promtool",
           "query", "query_exemplars", "query_value", "scrape_config"]
