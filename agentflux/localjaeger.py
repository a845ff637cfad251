"""A local Jaeger v2 (an OTLP tracing backend with a query API and UI), for tests and the demo.

``ensure_jaeger`` builds ``github.com/jaegertracing/jaeger/cmd/jaeger`` at :data:`VERSION` once,
with Go through the Go module proxy, into the cache directory beside Kafka's jars
(``CGO_ENABLED=0``: a static binary). ``LocalJaeger`` runs it on free loopback ports with
in-memory storage: in a container through testcontainers' ``DockerContainer`` against podman's
Docker API (:mod:`agentflux.localdocker`; the image is made from the binary with ``podman
import``, no registry), or, where no Docker API exists, as a plain child process (the reason is
printed). Every port it opens is one of ours: OTLP gRPC and HTTP, and the query API / UI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentflux.config import ConfigError

VERSION = "v1.76.0"
MODULE = "github.com/jaegertracing/jaeger"
IMAGE = f"localhost/agentflux-jaeger:{VERSION}"
# inside a container: fixed ports, published on free loopback ports of the host
GRPC, HTTP, QUERY = 4317, 4318, 16686
CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: {host}:{query}
    grpc:
      endpoint: {host}:{query_grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {host}:{grpc}
      http:
        endpoint: {host}:{http}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def binary_path(cache_dir: Path) -> Path:
    return Path(cache_dir) / f"jaeger-{VERSION}" / "jaeger"


def _go() -> str:
    """Go 1.24 or newer (``go get -tool``), on PATH or where the official archive puts it."""
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK)
                                else None)
    how = ("install Go 1.24 or newer (https://go.dev/dl; Debian bookworm's golang-go is 1.19, "
           "too old) and run `make` again")
    if go is None:
        raise ConfigError(f"Go is needed once to build Jaeger {VERSION} (the tracing backend of "
                          f"the OTLP tests and `agentflux demo --otlp`): {how}")
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True)
    have = out.stdout.strip()  # e.g. go1.26.8 (older Go: no GOVERSION, an empty line)
    m = re.match(r"go(\d+)\.(\d+)", have)
    if m is None or (int(m[1]), int(m[2])) < (1, 24):
        raise ConfigError(f"{go} is {have or 'older than Go 1.16'}: building Jaeger {VERSION} "
                          f"needs `go get -tool`, {how}")
    return go


def ensure_jaeger(cache_dir: Path, quiet: bool = False) -> Path:
    """The Jaeger binary, built once into ``cache_dir`` (about 4-5 minutes the first time, with
    Go through the Go module proxy; idempotent; an interrupted build leaves nothing behind)."""
    own = os.environ.get("AGENTFLUX_JAEGER_BIN")
    if own:  # a Jaeger v2 binary of the user's (or the one a test suite built already)
        if not os.access(own, os.X_OK):
            raise ConfigError(f"AGENTFLUX_JAEGER_BIN={own!r} is not an executable file: point it "
                              "at a Jaeger v2 binary, or unset it to build one")
        return Path(own)
    target = binary_path(cache_dir)
    if target.exists():
        return target
    go = _go()
    target.parent.mkdir(parents=True, exist_ok=True)
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    say(f"building Jaeger {VERSION} with Go into {target.parent} (once; about 5 minutes) ...")
    t0 = time.monotonic()
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"}
    env["PATH"] = f"{Path(go).parent}{os.pathsep}{env.get('PATH', '')}"
    with tempfile.TemporaryDirectory(prefix="jaeger-build-", dir=target.parent) as work:
        steps = (
            [go, "mod", "init", "agentflux.local/jaeger-build"],
            # (`go install ...@version` is refused: the module has replace directives)
            [go, "get", "-tool", f"{MODULE}/cmd/jaeger@{VERSION}"],
            [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(Path(work) / "jaeger"),
             f"{MODULE}/cmd/jaeger"],
        )
        for i, cmd in enumerate(steps, 1):
            say(f"  [{i}/{len(steps)}] {' '.join(cmd[:3])} ...")
            code, tail = _run_step(cmd, work, env, say, t0)
            if code != 0:
                raise ConfigError(f"building Jaeger failed at `{' '.join(cmd)}`:\n"
                                  f"{tail[-2000:]}\n(the Go module proxy must be "
                                  "reachable: GOPROXY, default https://proxy.golang.org)")
        os.replace(Path(work) / "jaeger", target)  # atomic: a binary is whole or absent
    say(f"built Jaeger {VERSION} in {time.monotonic() - t0:.0f} s: {target}")
    return target


def _run_step(cmd: list, cwd: str, env: dict, say, t0: float,
              every_s: float = 30.0) -> tuple[int, str]:
    """Run one build step, saying every ``every_s`` how long the build has taken and what Go
    did last (``go get`` downloads a few hundred modules, ``go build`` compiles for minutes in
    silence); its exit code and the tail of its output."""
    import collections
    import threading
    lines: collections.deque = collections.deque(maxlen=40)
    seen = [0]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip())
            seen[0] += 1
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while True:
            try:
                proc.wait(every_s)
                break
            except subprocess.TimeoutExpired:
                last = f"; {seen[0]} lines from go, last: {lines[-1][:100]}" if lines else ""
                say(f"      ... {time.monotonic() - t0:.0f} s{last}")
    except BaseException:
        proc.kill()  # (interrupted: nothing half-built is kept, the temporary folder goes)
        proc.wait()
        raise
    reader.join(10)
    return proc.returncode, "\n".join(lines)


def _free_port() -> int:
    from agentflux.localkafka import free_port
    return free_port()


@dataclass
class LocalJaeger:
    """Jaeger on free loopback ports (in a container where a Docker API is available)."""

    cache_dir: Path
    work_dir: Path
    use_container: bool = True
    ports: dict = field(default_factory=dict)  # grpc / http / query / query_grpc -> host port
    mode: str = ""  # "container" or "process", once started
    reason: str = ""  # why a process and not a container
    _podman: Any = None
    _container: Any = None
    _proc: subprocess.Popen | None = None

    @property
    def otlp_grpc(self) -> str:
        return f"http://127.0.0.1:{self.ports['grpc']}"

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['query']}"

    def start(self, timeout_s: float = 60.0) -> "LocalJaeger":
        binary = ensure_jaeger(self.cache_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if not self.ports:
            self.ports = {k: _free_port() for k in ("grpc", "http", "query", "query_grpc")}
        if self.use_container and not self.mode:
            try:
                self._start_podman()
                self.mode = "container"
            except (ConfigError, OSError) as exc:
                self.reason = f"no Docker API here ({exc}); Jaeger runs as a plain process"
                print(f"agentflux: {self.reason}", file=sys.stderr)
                self.mode = "process"
        elif not self.mode:
            self.mode, self.reason = "process", "containers not asked for"
        try:
            if self.mode == "container":
                self._run_container(binary)
            else:
                self._run_process(binary)
            self._wait_ready(timeout_s)
        except BaseException:
            self.close()  # (and the podman service started for it)
            raise
        return self

    # --- a container ------------------------------------------------------------------------
    def _start_podman(self) -> None:
        if os.environ.get("DOCKER_HOST"):
            return  # an engine given by the user (testcontainers reads DOCKER_HOST)
        from agentflux.localdocker import PodmanService
        self._podman = PodmanService(self.work_dir / "podman").start()
        os.environ["DOCKER_HOST"] = self._podman.base_url
        # no registry here: testcontainers' reaper (ryuk) cannot be pulled; we stop what we start
        os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

    def _image(self, binary: Path) -> str:
        podman = shutil.which("podman")
        env = self._podman.env if self._podman else dict(os.environ)
        if podman and subprocess.run([podman, "image", "exists", IMAGE], env=env).returncode == 0:
            return IMAGE
        if not podman:
            raise ConfigError("podman is needed to make Jaeger's image (apt-get install podman)")
        tar_path = self.work_dir / "jaeger-rootfs.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(binary, arcname="jaeger")
            tmp = tarfile.TarInfo("tmp")
            tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(tmp)
        out = subprocess.run([podman, "import", "--change", 'ENTRYPOINT ["/jaeger"]',
                              str(tar_path), IMAGE], env=env, capture_output=True, text=True)
        tar_path.unlink()
        if out.returncode != 0:
            raise ConfigError(f"podman import of Jaeger's image failed: {out.stderr.strip()}")
        return IMAGE

    def _run_container(self, binary: Path) -> None:
        from testcontainers.core.container import DockerContainer
        image = self._image(binary)
        conf = CONFIG.format(host="0.0.0.0", grpc=GRPC, http=HTTP, query=QUERY,
                             query_grpc=QUERY + 1)
        c = (DockerContainer(image)
             .with_command([f"--config=yaml:{_inline(conf)}"])
             .with_kwargs(ulimits=_ulimits()))
        for name, inner in (("grpc", GRPC), ("http", HTTP), ("query", QUERY)):
            # published on loopback only (with_bind_ports would bind every address)
            c.ports[f"{inner}/tcp"] = ("127.0.0.1", self.ports[name])
        self._container = c.start()

    # --- a process --------------------------------------------------------------------------
    def _run_process(self, binary: Path) -> None:
        from agentflux.localkafka import child_process_kwargs
        conf = self.work_dir / "jaeger.yaml"
        conf.write_text(CONFIG.format(host="127.0.0.1", **self.ports))
        log = open(self.work_dir / "jaeger.log", "ab")
        try:
            self._proc = subprocess.Popen([str(binary), "--config", str(conf)], stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          **child_process_kwargs())
        finally:
            log.close()

    def _logs(self) -> str:
        if self._container is not None:
            try:
                out, err = self._container.get_logs()
                return (out + err).decode(errors="replace")[-3000:]
            except Exception as exc:  # noqa: BLE001
                return f"(no logs: {exc})"
        path = self.work_dir / "jaeger.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise ConfigError(f"Jaeger exited with {self._proc.returncode}:\n{self._logs()}")
            try:
                with urllib.request.urlopen(f"{self.query_url}/api/services", timeout=1):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = self._logs()
                raise ConfigError(f"Jaeger did not answer on {self.query_url} within "
                                  f"{timeout_s:.0f} s:\n{logs}")
            time.sleep(0.1)  # polling its query API, bounded by the deadline

    # --- control ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop Jaeger now (in-memory storage: its traces are gone); ports and podman stay."""
        if self._container is not None:
            try:
                self._container.get_wrapped_container().remove(force=True)
            except Exception:  # noqa: BLE001 (gone already)
                pass
            self._container = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None

    def restart(self, timeout_s: float = 60.0) -> "LocalJaeger":
        """Stopped Jaeger started again on the same ports (empty)."""
        self.stop()
        return self.start(timeout_s)

    def close(self) -> None:
        """Stop Jaeger and the podman service started for it."""
        self.stop()
        if self._podman is not None:
            self._podman.stop()
            if os.environ.get("DOCKER_HOST") == self._podman.base_url:
                del os.environ["DOCKER_HOST"]
            self._podman = None

    # --- the query API ----------------------------------------------------------------------
    def _get(self, path: str, **params: Any) -> Any:
        url = f"{self.query_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.load(resp)

    def services(self) -> list[str]:
        return self._get("/api/services").get("data") or []

    def traces(self, service: str, limit: int = 100_000, lookback: str = "2h") -> list[dict]:
        """The traces holding spans of ``service`` (Jaeger's JSON: ``traceID``, ``spans``
        with ``spanID``, ``operationName``, ``references``, ``startTime`` / ``duration`` in
        µs, ``tags``; ``processes``)."""
        return self._get("/api/traces", service=service, limit=limit,
                         lookback=lookback).get("data") or []

    def trace(self, trace_id: str) -> dict | None:
        """The trace of ``trace_id`` (32 hex digits), or None if Jaeger holds none."""
        try:
            data = self._get(f"/api/traces/{trace_id}").get("data") or []
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # ("trace not found")
                return None
            raise
        return data[0] if data else None


def _inline(yaml_text: str) -> str:
    """A config for ``--config=yaml:...`` (the collector's inline provider: one line, flow
    style)."""
    import yaml
    return json.dumps(yaml.safe_load(yaml_text), separators=(",", ":"))


def _ulimits() -> list:
    import docker
    return [docker.types.Ulimit(name="nofile", soft=1024, hard=1024),
            docker.types.Ulimit(name="nproc", soft=1024, hard=1024)]
