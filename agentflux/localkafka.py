"""A local Apache Kafka (KRaft, combined broker + controller) from Maven Central jars.

``deploy/kafka/pom.xml`` lists the jars; Maven resolves them once into a cache directory. The
broker listens on free loopback ports. ``agentflux up`` starts one detached and records it in a
small state file; ``agentflux down`` stops it. The test suite uses :class:`LocalKafka` directly.

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
import time
import uuid
from dataclasses import dataclass
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


@dataclass
class LocalKafka:
    """One single-node KRaft broker+controller on free loopback ports, with data under ``work_dir``."""

    work_dir: Path
    cache_dir: Path
    heap: str = "768m"
    port: int = 0
    controller_port: int = 0
    # the port clients are told to connect to (metadata); 0: ``port``. A test sets it to a
    # loopback proxy's port so that every connection of every client goes through the proxy.
    advertised_port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "kafka.log"

    def _write_config(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        data = self.work_dir / "data"
        props = self.work_dir / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.advertised_port or self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data}",
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
        return props

    def _java(self, libs: Path, *args: str) -> list[str]:
        java, _ = require_tools()
        return [java, f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC",
                f"-Dlog4j.configuration=file:{self.work_dir / 'log4j.properties'}",
                "-cp", f"{libs}/*", *args]

    def start(self, timeout_s: float = 90.0, detached: bool = False) -> "LocalKafka":
        libs = ensure_jars(self.cache_dir)
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        props = self._write_config()
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # "--cluster-id=": a random id may start with "-", which would parse as an option
        fmt = subprocess.run(self._java(libs, "kafka.tools.StorageTool", "format",
                                        f"--cluster-id={cluster_id}", "-c", str(props),
                                        "--ignore-formatted"),
                             capture_output=True, text=True)
        if fmt.returncode != 0:
            raise KafkaStartError(f"formatting KRaft storage failed:\n{fmt.stdout}{fmt.stderr}")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self._java(libs, "kafka.Kafka", str(props)),
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=detached)
        log.close()
        deadline = time.monotonic() + timeout_s
        while READY_LINE not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise KafkaStartError(f"Kafka exited with {self.proc.returncode}; see {self.log_path}:\n"
                                      + self.log_path.read_text(errors="replace")[-3000:])
            if time.monotonic() > deadline:
                self.stop()
                raise KafkaStartError(f"Kafka did not log {READY_LINE!r} within {timeout_s}s; "
                                      f"see {self.log_path}")
            time.sleep(0.1)  # polling a log file for a condition, bounded by the deadline
        asyncio.run(wait_for_group_coordinator(self.bootstrap, max(5.0, deadline - time.monotonic())))
        return self

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


# --- `agentflux up` / `agentflux down`: a detached broker recorded in a state file -------------

def state_file(state_dir: Path) -> Path:
    return state_dir / "local-kafka.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_broker(state_dir: Path) -> dict | None:
    """The state of the broker `agentflux up` started, if it is still running."""
    path = state_file(state_dir)
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except ValueError:
        return None
    return state if _alive(state.get("pid", -1)) else None


def up(state_dir: Path) -> dict:
    state = running_broker(state_dir)
    if state:
        return {**state, "already_running": True}
    work = state_dir / "local-kafka"
    shutil.rmtree(work, ignore_errors=True)
    kafka = LocalKafka(work_dir=work, cache_dir=state_dir).start(detached=True)
    pid = kafka.proc.pid if kafka.proc is not None else -1
    state = {"pid": pid, "bootstrap": kafka.bootstrap, "work_dir": str(work),
             "log": str(kafka.log_path), "version": KAFKA_VERSION}
    state_file(state_dir).write_text(json.dumps(state))
    return state


def down(state_dir: Path, timeout_s: float = 20.0) -> dict | None:
    state = running_broker(state_dir)
    path = state_file(state_dir)
    if state:
        pid = state["pid"]
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)  # waiting on a condition (the process ended), bounded
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(state["work_dir"], ignore_errors=True)
    path.unlink(missing_ok=True)
    return state
