"""The Emitter against the real broker: what it sends is what a consumer reads."""

import orjson
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
    assert (st.acked, st.failed, st.dropped) == (5000, 0, 0)
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


def test_an_unreachable_broker_is_a_clear_error(settings):
    import pytest

    from agentflux.config import ConfigError
    from agentflux.localkafka import free_port
    bad = settings.replace(bootstrap_servers=f"127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError, match="could not"):
        Emitter(bad).start(timeout_s=5)
