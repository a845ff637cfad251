"""Shared fixtures. The broker is real: Apache Kafka from Maven Central jars, one per session
(or the cluster in KAFKA_BOOTSTRAP_SERVERS). A missing Java or Maven fails, it never skips."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import pytest

from agentflux.config import Settings, Topics


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> str:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    from agentflux.localkafka import LocalKafka
    from tests.integration.kafka_helpers import start_or_fail
    work = tmp_path_factory.mktemp("kafka")
    kafka = start_or_fail(LocalKafka(work_dir=work, cache_dir=Settings.from_env().state_dir))
    yield kafka.bootstrap
    kafka.stop()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings with topics and a consumer group of this test's own, already created."""
    from agentflux.localkafka import free_port
    from agentflux.streams.topics import ensure_topics
    run = uuid.uuid4().hex[:10]
    s = Settings.from_env(
        env={}, bootstrap_servers=kafka_bootstrap, app_id=f"test-{run}",
        topics=Topics.with_prefix(f"test-{run}"), history_path=str(tmp_path / "history"),
        window_s=1.0, grace_s=1.0, metrics_port=free_port(), web_port=free_port(),
        state_dir=tmp_path / "state")
    asyncio.run(ensure_topics(s))
    return s


@pytest.fixture(scope="session")
def jaeger(tmp_path_factory: pytest.TempPathFactory):
    """A real Jaeger v2 (OTLP gRPC/HTTP in, query API out, in-memory storage) on free loopback
    ports, in a container through testcontainers and podman's Docker API (a plain process only
    where no Docker API exists, with the reason printed). Built once by `make`; a missing Go or
    a failed build fails, it never skips."""
    from agentflux.config import ConfigError
    from agentflux.localjaeger import LocalJaeger
    work = tmp_path_factory.mktemp("jaeger")
    try:
        j = LocalJaeger(Settings.from_env().state_dir, work).start()
    except ConfigError as exc:
        pytest.fail(f"Jaeger is required for the OTLP tests: {exc}", pytrace=False)
    yield j
    j.close()


@pytest.fixture(scope="session")
def docker_api(tmp_path_factory: pytest.TempPathFactory):
    """``(client, image, base_url)``: the Docker Engine API served by podman on a unix socket
    of its own, with the busybox image the pool tests run. A missing podman fails, it never
    skips."""
    from agentflux.config import ConfigError
    from agentflux.localdocker import PodmanService
    try:
        svc = PodmanService(tmp_path_factory.mktemp("podman")).start()
        image = svc.ensure_image()
    except ConfigError as exc:
        pytest.fail(f"the Docker API (podman) is required for this test: {exc}", pytrace=False)
    yield svc.client(), image, svc.base_url
    svc.stop()
