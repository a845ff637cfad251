"""A local Apache Kafka (KRaft, combined broker + controller) from Maven Central jars.

``deploy/kafka/pom.xml`` lists the jars; Maven resolves them once into a cache directory. The
broker listens on free loopback ports. ``agentflux up`` starts one detached and records it in a
small state file; ``agentflux down`` stops it. A stopped or crashed broker is restarted by the
next ``agentflux up`` on its data, cluster id and ports; ``agentflux up --reset`` starts a fresh
cluster. The test suite uses :class:`LocalKafka` directly, optionally with a SASL_SSL listener
(:class:`SaslSslListener`).

Ready means: the broker logged "Kafka Server started" and a group coordinator answers (consumer
groups, which Faust needs, work from then on).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from agentflux.config import ConfigError

KAFKA_VERSION = "3.9.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
READY_LINE = "Kafka Server started"

_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=WARN
log4j.logger.org.apache.kafka=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.Kafka$=INFO
"""


class KafkaStartError(RuntimeError):
    """The local broker did not start; the message says why and where its log is."""


def pom_path() -> Path:
    env = os.environ.get("AGENTFLUX_KAFKA_POM")
    path = Path(env) if env else REPO_ROOT / "deploy" / "kafka" / "pom.xml"
    if not path.exists():
        raise ConfigError(f"cannot find {path}: run from an agentflux checkout, set "
                          "AGENTFLUX_KAFKA_POM to deploy/kafka/pom.xml, or point "
                          "KAFKA_BOOTSTRAP_SERVERS at an existing cluster")
    return path


def require_tools() -> tuple[str, str]:
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if not java:
        raise ConfigError("Java not found: install a JRE 17+ (Debian: apt-get install "
                          "openjdk-17-jre-headless) or set KAFKA_BOOTSTRAP_SERVERS")
    if not mvn:
        raise ConfigError("Maven not found: install it (Debian: apt-get install maven) or set "
                          "KAFKA_BOOTSTRAP_SERVERS")
    return java, mvn


def ensure_jars(cache_dir: Path) -> Path:
    """Resolve Kafka's jars into ``cache_dir/kafka-<version>/libs`` once; return that folder."""
    _, mvn = require_tools()
    libs = cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-q", "-B", "-f", str(pom_path()), "dependency:copy-dependencies",
           f"-DoutputDirectory={libs}", "-DincludeScope=runtime", f"-Dkafka.version={KAFKA_VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        raise KafkaStartError("Maven could not resolve Kafka's jars from Maven Central:\n"
                              + (proc.stdout + proc.stderr)[-2000:])
    marker.write_text(KAFKA_VERSION)
    return libs


_PR_SET_PDEATHSIG = 1


def child_process_kwargs() -> dict:
    """``subprocess.Popen`` arguments for a child this process stops itself (a worker, an
    ephemeral broker): its own process group, so a terminal's Ctrl-C reaches only this process,
    which then stops its children in order (producers and worker before the broker); and on
    Linux, when called from the main thread, SIGTERM to the child if this process dies (even
    by kill -9), so nothing is left running."""
    import threading

    kw: dict = {"process_group": 0}
    if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread():
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
        parent = os.getpid()

        def die_with_parent() -> None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # the parent died before prctl
                os.kill(os.getpid(), signal.SIGTERM)

        kw["preexec_fn"] = die_with_parent
    return kw


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for_group_coordinator(bootstrap: str, deadline_s: float = 60.0) -> None:
    """Wait until a group coordinator answers (``__consumer_offsets`` exists and has a leader)."""
    from aiokafka.client import AIOKafkaClient, CoordinationType

    deadline = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await client.bootstrap()
            await asyncio.wait_for(
                client.coordinator_lookup(CoordinationType.GROUP, "agentflux-ready-probe"), 10)
            return
        except Exception as exc:  # not ready yet: retry until the deadline
            last = exc
            await asyncio.sleep(0.2)
        finally:
            await client.close()
    raise KafkaStartError(f"no group coordinator answered at {bootstrap} within {deadline_s}s: {last!r}")


_SCRAM_FORBIDDEN = '",[]= '


@dataclass
class SaslSslListener:
    """A SASL_SSL listener for clients (SCRAM-SHA-512 over TLS), beside the PLAINTEXT one.

    ``cert_file`` holds the server certificate chain and ``key_file`` its unencrypted PKCS#8 key
    (PEM; see :mod:`agentflux.certs`). ``users`` (name -> password) become SCRAM-SHA-512
    credentials when the storage is formatted, i.e. on the first start of a data directory
    only; formatting passes them on the StorageTool's command line (Kafka has no other way at
    format time), so this is for local and test brokers. Inter-broker and controller traffic
    stays PLAINTEXT on loopback.
    """

    cert_file: Path
    key_file: Path
    users: dict[str, str] = field(default_factory=dict, repr=False)
    port: int = 0

    MECHANISM = "SCRAM-SHA-512"

    def __post_init__(self) -> None:
        for name, password in self.users.items():
            # StorageTool parses `[name=...,password=...]`: these characters would break it
            if not name or not password or set(_SCRAM_FORBIDDEN) & set(name + str(password)):
                raise ValueError(f"SCRAM user {name!r}: name and password must be non-empty "
                                 f"and free of {_SCRAM_FORBIDDEN}")


@dataclass
class LocalKafka:
    """One single-node KRaft broker+controller on loopback ports, with data under ``work_dir``.

    Ports left at 0 are picked free on :meth:`start`. A ``work_dir`` that already holds a
    formatted data directory is started as the same cluster (its ``meta.properties`` cluster id
    is kept), so :meth:`start` after a crash resumes with every acknowledged record.
    """

    work_dir: Path
    cache_dir: Path
    heap: str = "768m"
    port: int = 0
    controller_port: int = 0
    # the port clients are told to connect to (metadata); 0: ``port``. A test sets it to a
    # loopback proxy's port so that every connection of every client goes through the proxy.
    advertised_port: int = 0
    sasl_ssl: SaslSslListener | None = None
    cluster_id: str | None = None  # set by start(): the data directory's cluster id
    proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        if self.sasl_ssl is None:
            raise ValueError("this LocalKafka has no SASL_SSL listener (pass sasl_ssl=...)")
        return f"127.0.0.1:{self.sasl_ssl.port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "kafka.log"

    @property
    def data_dir(self) -> Path:
        return self.work_dir / "data"

    @property
    def props_path(self) -> Path:
        return self.work_dir / "server.properties"

    def _write_config(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}",
                     f"CONTROLLER://127.0.0.1:{self.controller_port}"]
        advertised = [f"PLAINTEXT://127.0.0.1:{self.advertised_port or self.port}"]
        protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
        security: list[str] = []
        if self.sasl_ssl is not None:
            s = self.sasl_ssl
            # Kafka's PEM key store: one file with the private key and the certificate chain
            keystore = self.work_dir / "sasl-ssl-keystore.pem"
            fd = os.open(keystore, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(Path(s.key_file).read_text() + Path(s.cert_file).read_text())
            listeners.append(f"SASL_SSL://127.0.0.1:{s.port}")
            advertised.append(f"SASL_SSL://127.0.0.1:{s.port}")
            protocols.append("SASL_SSL:SASL_SSL")
            security = [
                f"listener.name.sasl_ssl.sasl.enabled.mechanisms={s.MECHANISM}",
                f"listener.name.sasl_ssl.{s.MECHANISM.lower()}.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "listener.name.sasl_ssl.ssl.keystore.type=PEM",
                f"listener.name.sasl_ssl.ssl.keystore.location={keystore}",
                "listener.name.sasl_ssl.ssl.client.auth=none",
            ]
        self.props_path.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners={','.join(listeners)}",
            f"advertised.listeners={','.join(advertised)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={','.join(protocols)}",
            *security,
            f"log.dirs={self.data_dir}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "message.max.bytes=16777216",
            "replica.fetch.max.bytes=16777216",
            "log.retention.hours=24",
            "",
        ]))
        (self.work_dir / "log4j.properties").write_text(_LOG4J)
        return self.props_path

    def _java(self, libs: Path, *args: str) -> list[str]:
        java, _ = require_tools()
        return [java, f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC",
                f"-Dlog4j.configuration=file:{self.work_dir / 'log4j.properties'}",
                "-cp", f"{libs}/*", *args]

    def _format(self, libs: Path, props: Path) -> str:
        """Format the storage unless it is formatted already; return the cluster id."""
        existing = read_cluster_id(self.data_dir)
        if existing:
            return existing
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # "--cluster-id=": a random id may start with "-", which would parse as an option
        args = ["kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(props)]
        secrets: list[str] = []
        if self.sasl_ssl is not None:
            for name, password in self.sasl_ssl.users.items():
                pw = password.get_secret_value() if hasattr(password, "get_secret_value") else password
                secrets.append(str(pw))
                args += ["--add-scram", f"{self.sasl_ssl.MECHANISM}=[name={name},password={pw}]"]
        fmt = subprocess.run(self._java(libs, *args), capture_output=True, text=True)
        if fmt.returncode != 0:
            out = fmt.stdout + fmt.stderr
            for s in secrets:  # never echo a password into an error message
                out = out.replace(s, "**********")
            raise KafkaStartError(f"formatting KRaft storage failed:\n{out}")
        return cluster_id

    def start(self, timeout_s: float = 90.0, detached: bool = False) -> "LocalKafka":
        """Start the broker and return when it is ready (a group coordinator answers).

        A formatted ``work_dir`` is resumed as the same cluster; otherwise it is formatted
        with a new cluster id (and the SCRAM users of ``sasl_ssl``).
        """
        libs = ensure_jars(self.cache_dir)
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        if self.sasl_ssl is not None:
            self.sasl_ssl.port = self.sasl_ssl.port or free_port()
        props = self._write_config()
        self.cluster_id = self._format(libs, props)
        log = open(self.log_path, "ab")
        log_start = log.tell()  # the ready line of an earlier run in this log does not count
        # detached (`agentflux up`): a session of its own, it outlives this process; otherwise
        # a child this process stops (see child_process_kwargs)
        spawn = {"start_new_session": True} if detached else child_process_kwargs()
        self.proc = subprocess.Popen(self._java(libs, "kafka.Kafka", str(props)),
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, **spawn)
        log.close()
        try:
            deadline = time.monotonic() + timeout_s
            while READY_LINE not in self._log_since(log_start):
                if self.proc.poll() is not None:
                    raise KafkaStartError(f"Kafka exited with {self.proc.returncode}; see "
                                          f"{self.log_path}:\n" + self._log_since(log_start)[-3000:])
                if time.monotonic() > deadline:
                    raise KafkaStartError(f"Kafka did not log {READY_LINE!r} within {timeout_s}s; "
                                          f"see {self.log_path}")
                time.sleep(0.1)  # polling a log file for a condition, bounded by the deadline
            asyncio.run(wait_for_group_coordinator(self.bootstrap,
                                                   max(5.0, deadline - time.monotonic())))
        except BaseException:  # not ready, or interrupted (Ctrl-C): nothing left running
            self.stop(timeout_s=5.0)
            raise
        return self

    def _log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def read_cluster_id(data_dir: Path) -> str | None:
    """The cluster id a formatted KRaft data directory belongs to (``meta.properties``)."""
    meta = Path(data_dir) / "meta.properties"
    if not meta.exists():
        return None
    for line in meta.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "cluster.id":
            return value.strip()
    return None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something listens on ``host:port`` (connections in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


# --- `agentflux up` / `agentflux down`: a detached broker recorded in a state file -------------
#
# The state file records the broker's pid, ports, work directory and cluster id. `down` stops
# the broker and keeps its data and the record; `up` then (or after a crash) restarts it on the
# same data directory and the same ports, so clients that keep retrying the old address
# reconnect to the same cluster and nothing acknowledged is lost. Only `up --reset` deletes the
# data and starts a fresh cluster on new ports.

def state_file(state_dir: Path) -> Path:
    return state_dir / "local-kafka.json"


def read_state(state_dir: Path) -> dict | None:
    """The recorded local broker (running or not), or None."""
    try:
        state = json.loads(state_file(state_dir).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _write_state(state_dir: Path, state: dict) -> None:
    path = state_file(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def _broker_alive(state: dict) -> bool:
    """Is the recorded pid still that broker (not a zombie, not a reused pid)?"""
    import psutil

    pid = state.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = proc.cmdline()
        if not cmdline:  # exiting (its memory is gone, its sockets may not be yet): wait
            _wait_gone(proc, 10.0)
            return False
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    props = str(Path(state.get("work_dir", "")) / "server.properties")
    return "kafka.Kafka" in cmdline and props in cmdline


def running_broker(state_dir: Path) -> dict | None:
    """The state of the broker `agentflux up` started, if it is still running."""
    state = read_state(state_dir)
    return state if state and _broker_alive(state) else None


def _recorded_ports(state: dict) -> tuple[int, int] | None:
    port, cport = state.get("port"), state.get("controller_port")
    if not port and state.get("bootstrap"):
        port = int(state["bootstrap"].rsplit(":", 1)[1])
    if not cport:  # a state file from before ports were recorded: read the broker's config
        props = Path(state.get("work_dir", "")) / "server.properties"
        if props.exists():
            for line in props.read_text().splitlines():
                if line.startswith("controller.quorum.voters="):
                    cport = int(line.rsplit(":", 1)[1])
    return (int(port), int(cport)) if port and cport else None


def _wait_gone(proc, timeout_s: float) -> bool:
    """Wait until ``proc`` (a psutil.Process) exited; reaps it if it is our child. A zombie
    that another parent has not reaped yet counts as gone."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            proc.wait(0.1)  # a condition with a bounded wait, not a sleep
            return True
        except psutil.TimeoutExpired:
            pass
        except psutil.NoSuchProcess:
            return True
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False


def _stop_pid(pid: int, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; returns when the process is gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        proc.terminate()
    except psutil.NoSuchProcess:
        return
    if not _wait_gone(proc, timeout_s):
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            return
        _wait_gone(proc, 10.0)


def _busy_port(ports: tuple[int, ...], pid: int | None, timeout_s: float = 15.0) -> int | None:
    """A port of ``ports`` that something listens on, or None. While the crashed broker ``pid``
    still exists (its last threads exit after it is a zombie), wait for its sockets to close."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while True:
        busy = [p for p in ports if p and port_in_use(p)]
        if not busy:
            return None
        if not (isinstance(pid, int) and psutil.pid_exists(pid)) or time.monotonic() > deadline:
            return busy[0]
        time.sleep(0.05)  # waiting on a condition (the dead broker's sockets closed), bounded


def up(state_dir: Path, reset: bool = False) -> dict:
    """Start the local broker in the background, or say it runs already.

    Returns its state with ``action``: ``"already_running"``; ``"restarted"`` (a broker that was
    stopped or crashed, restarted on its data directory, cluster id and ports, so acknowledged
    records are all there and clients retrying the old address reconnect); or ``"fresh"`` (a
    new cluster on new free ports: nothing was recorded, or ``reset=True``, which stops a
    running broker and deletes its data first).

    Raises ConfigError (one line) when a recorded port is now taken by another process.
    """
    live = running_broker(state_dir)
    if live and not reset:
        return {**live, "action": "already_running"}
    state = read_state(state_dir) or {}
    if live:
        _stop_pid(live["pid"], 20.0)
    default_work = state_dir / "local-kafka"
    work = Path(state.get("work_dir") or default_work)
    port = cport = 0
    resume = False
    if reset:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(default_work, ignore_errors=True)
        state_file(state_dir).unlink(missing_ok=True)
        work = default_work
    elif read_cluster_id(work / "data"):
        resume = True
        port, cport = _recorded_ports({**state, "work_dir": str(work)}) or (0, 0)
        busy = _busy_port((port, cport), state.get("pid") or state.get("stopped_pid"))
        if busy:
            raise ConfigError(
                f"cannot restart the local Kafka: its port 127.0.0.1:{busy} is taken by another "
                f"process; stop that process, or run `agentflux up --reset --force` for a fresh cluster "
                f"on new ports (deletes the data in {work})")
    kafka = LocalKafka(work_dir=work, cache_dir=state_dir, port=port, controller_port=cport)
    try:
        kafka.start(detached=True)
    except KafkaStartError as exc:
        if not resume:
            raise
        raise KafkaStartError(f"restarting the local Kafka on its data in {work} failed "
                              f"(`agentflux up --reset --force` deletes it and starts a fresh cluster): "
                              f"{exc}") from None
    pid = kafka.proc.pid if kafka.proc is not None else -1
    new_state = {"pid": pid, "bootstrap": kafka.bootstrap, "port": kafka.port,
                 "controller_port": kafka.controller_port, "cluster_id": kafka.cluster_id,
                 "work_dir": str(work), "log": str(kafka.log_path), "version": KAFKA_VERSION}
    _write_state(state_dir, new_state)
    return {**new_state, "action": "restarted" if resume else "fresh"}


def down(state_dir: Path, timeout_s: float = 20.0) -> dict | None:
    """Stop the broker `agentflux up` started; returns its state, or None if none was running.

    Its data directory and ports stay recorded, so the next `agentflux up` resumes the same
    cluster; `agentflux up --reset` deletes the data.
    """
    state = running_broker(state_dir)
    if state:
        _stop_pid(state["pid"], timeout_s)
        _write_state(state_dir, {**state, "pid": None, "stopped_pid": state["pid"]})
    return state
