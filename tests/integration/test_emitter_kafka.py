"""The Emitter against the real broker: what it sends is what a consumer reads."""

import socket
import time

import orjson
import pytest
from aiokafka.partitioner import murmur2

from agentflux.runtime.emitter import Emitter
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime

from .kafka_helpers import consume_sync


def test_events_arrive_complete_keyed_and_ordered_per_session(settings):
    evs = list(SyntheticRuntime(SimConfig(events=5000, agents=7, seed=3)).events())
    with Emitter(settings, batch_events=250) as em:
        for e in evs:
            em.emit(e)
        assert em.flush(30)
        st = em.stats()
    assert (st.emitted, st.acked, st.failed, st.dropped, st.pending) == (5000, 5000, 0, 0, 0)
    assert st.adds_up
    assert st.ack_p99_ms is not None and st.ack_p99_ms > 0
    parts = settings.topics.events_partitions
    records = consume_sync(settings, settings.topics.events, st.records)
    got = []
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        batch = orjson.loads(r.value)
        assert len(batch) <= 250
        assert r.key.decode() in {e["session_id"] for e in batch}
        for e in batch:
            assert (murmur2(e["session_id"].encode()) & 0x7FFFFFFF) % parts == r.partition
        got += batch
    assert sorted(e["id"] for e in got) == sorted(e["id"] for e in evs)
    for sid in {e["session_id"] for e in evs}:
        assert [e["id"] for e in got if e["session_id"] == sid] == \
               [e["id"] for e in evs if e["session_id"] == sid]


async def test_async_runtimes_use_the_same_emitter_without_blocking(settings):
    ev = SyntheticRuntime(SimConfig(events=1, seed=4)).events()
    async with Emitter(settings) as em:
        assert em.emit(next(ev))
        assert await em.aflush(30)
        assert em.stats().acked == 1


def test_an_unreachable_broker_is_a_clear_error_naming_the_setting(settings):
    from agentflux.config import ConfigError
    from agentflux.localkafka import free_port
    bad = settings.replace(bootstrap_servers=f"127.0.0.1:{free_port()}")  # nothing listens
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        Emitter(bad, spool_dir="").start(timeout_s=5)
    assert time.monotonic() - t0 < 6


def test_a_broker_that_never_answers_fails_start_within_its_timeout(settings):
    """A black hole (connections accepted, nothing answered) must not hang start() for the
    producer's request timeout: start() fails within its own, naming the setting."""
    from agentflux.config import ConfigError
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        bad = settings.replace(bootstrap_servers=f"127.0.0.1:{silent.getsockname()[1]}")
        t0 = time.monotonic()
        with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
            Emitter(bad, spool_dir="").start(timeout_s=3)
        assert time.monotonic() - t0 < 4
    finally:
        silent.close()
