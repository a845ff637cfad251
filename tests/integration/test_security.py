"""Security on the real broker: a SASL_SSL listener (SCRAM-SHA-512, a CA and a certificate made
here), the emitter and a worker over it; a wrong password or an untrusted certificate is one
clear line within seconds; HTTP endpoints on loopback by default; the password never shows."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid

import psutil
import pytest

from agentflux.certs import make_ca, make_test_pki
from agentflux.config import ConfigError, SecretStr, Settings, Topics
from agentflux.harness import WorkerProcess, settings_env, wait_until
from agentflux.localkafka import LocalKafka, SaslSslListener, free_port
from agentflux.runtime.emitter import Emitter
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime

from .kafka_helpers import start_or_fail

USER = "alice"
PASSWORD = f"pw-{uuid.uuid4().hex}!%"  # known, unique: grep-able in every output
WRONG = f"wrong-{uuid.uuid4().hex}"
EVENTS_ROWS = 'agentflux_history_rows{table="events"}'


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory, pki):
    work = tmp_path_factory.mktemp("kafka-sasl-ssl")
    kafka = LocalKafka(work_dir=work, cache_dir=Settings.from_env().state_dir, heap="512m",
                       sasl_ssl=SaslSslListener(pki.server_cert, pki.server_key,
                                                {USER: PASSWORD}))
    start_or_fail(kafka)
    yield kafka
    kafka.stop()


@pytest.fixture
def secure(secure_kafka, pki, tmp_path) -> Settings:
    """Settings for the SASL_SSL listener, with topics of this test's own."""
    from agentflux.streams.topics import ensure_topics
    run = uuid.uuid4().hex[:10]
    s = Settings.from_env(
        env={}, bootstrap_servers=secure_kafka.sasl_ssl_bootstrap, security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512", sasl_username=USER, sasl_password=SecretStr(PASSWORD),
        ssl_cafile=str(pki.ca_cert), app_id=f"sec-{run}", topics=Topics.with_prefix(f"sec-{run}"),
        history_path=str(tmp_path / "history"), window_s=1.0, grace_s=1.0,
        metrics_port=free_port(), web_port=free_port(), state_dir=tmp_path / "state")
    asyncio.run(ensure_topics(s))
    return s


def cli(args: list[str], settings: Settings) -> subprocess.CompletedProcess:
    """An `agentflux` command with ``settings`` in its environment; minutes would be a hang."""
    env = {**os.environ, **settings_env(settings)}
    return subprocess.run([sys.executable, "-m", "agentflux.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def assert_one_clear_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("agentflux: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and WRONG not in text


def listening(pid: int) -> set[tuple[str, int]]:
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN}


def test_the_emitter_and_a_worker_work_over_sasl_ssl_and_the_password_never_shows(
        secure, secure_kafka, tmp_path, caplog):
    n = 3000
    caplog.set_level(logging.DEBUG)  # everything aiokafka and the emitter log in this process
    evs = list(SyntheticRuntime(SimConfig(events=n, agents=6, seed=5)).events())
    worker = WorkerProcess(secure, log_path=tmp_path / "worker.log").start()
    try:
        with Emitter(secure) as em:
            for e in evs:
                assert em.emit(e)
            assert em.flush(60)
            assert em.stats().acked == n
        worker.wait_for(lambda m: m.get(EVENTS_ROWS, 0) >= n, 120, f"{n} events to land")
        assert worker.metrics()[EVENTS_ROWS] == n
    finally:
        assert worker.stop() == 0
    assert_no_secret(caplog.text, (tmp_path / "worker.log").read_text(errors="replace"),
                     secure_kafka.log_path.read_text(errors="replace"), repr(secure))


def test_a_wrong_password_fails_fast_with_one_clear_line(secure):
    bad = secure.replace(sasl_password=SecretStr(WRONG))
    with pytest.raises(ConfigError) as err:
        Emitter(bad).start(timeout_s=20)
    message = str(err.value)
    assert "\n" not in message and f"authentication failed for user '{USER}'" in message
    assert "KAFKA_SASL_PASSWORD" in message

    worker = cli(["worker"], bad)
    line = assert_one_clear_line(worker, f"authentication failed for user '{USER}'",
                                 secure.bootstrap_servers)
    simulate = cli(["simulate", "--synthetic", "--events", "10"], bad)
    assert_one_clear_line(simulate, f"authentication failed for user '{USER}'")
    assert_no_secret(message, line, worker.stdout, worker.stderr, simulate.stdout, simulate.stderr)


def test_an_untrusted_certificate_fails_fast_with_one_clear_line(secure, tmp_path):
    other_ca, _ = make_ca(tmp_path / "other-ca", name="someone else's CA")
    for cafile in (str(other_ca), None):  # a wrong CA, and the system's CAs
        bad = secure.replace(ssl_cafile=cafile)
        with pytest.raises(ConfigError) as err:
            Emitter(bad).start(timeout_s=20)
        message = str(err.value)
        assert "\n" not in message and "not trusted" in message and "KAFKA_SSL_CAFILE" in message
        worker = cli(["worker"], bad)
        assert_one_clear_line(worker, "not trusted", "set KAFKA_SSL_CAFILE",
                              secure.bootstrap_servers)
        assert_no_secret(message, worker.stdout, worker.stderr)


def test_plaintext_against_the_tls_listener_names_the_security_protocol(secure, tmp_path):
    bad = Settings.from_env(env={}, bootstrap_servers=secure.bootstrap_servers,
                            topics=secure.topics, state_dir=secure.state_dir,
                            history_path=str(tmp_path / "history"))  # not ./agentflux-history
    assert_one_clear_line(cli(["worker"], bad), "KAFKA_SECURITY_PROTOCOL")


def endpoints_of(settings: Settings, tmp_path, name: str) -> set[tuple[str, int]]:
    """The addresses a worker configured by ``settings`` listens on, once /metrics and the
    Faust web server are both up."""
    worker = WorkerProcess(settings, log_path=tmp_path / f"{name}.log").start()
    ports = {settings.metrics_port, settings.web_port}
    try:
        wait_until(lambda: ports <= {port for _, port in listening(worker.pid)}, 60,
                   "the worker's /metrics and Faust web endpoints")
        return listening(worker.pid)
    finally:
        worker.kill()  # sockets are the point here; graceful stops are tested elsewhere


def test_http_endpoints_bind_to_loopback_unless_configured(settings, tmp_path):
    socks = endpoints_of(settings, tmp_path, "default")
    assert ("127.0.0.1", settings.metrics_port) in socks  # /metrics
    assert ("127.0.0.1", settings.web_port) in socks  # Faust web
    assert all(ip == "127.0.0.1" for ip, _ in socks), socks  # nothing else, anywhere else

    configured = settings.replace(metrics_host="0.0.0.0", web_host="0.0.0.0",
                                  metrics_port=free_port(), web_port=free_port())
    socks = endpoints_of(configured, tmp_path, "configured")
    assert {("0.0.0.0", configured.metrics_port), ("0.0.0.0", configured.web_port)} <= socks
