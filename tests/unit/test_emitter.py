import threading

import orjson
import pytest
from aiokafka.partitioner import murmur2

from agentflux.config import Settings
from agentflux.runtime.emitter import Emitter
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.runtime.testing import InMemoryProducer

SETTINGS = Settings(bootstrap_servers="in-memory:9092")


def sim(n, seed=1):
    return list(SyntheticRuntime(SimConfig(events=n, agents=6, seed=seed, start_ns=10**18)).events())


def test_events_are_batched_per_partition_of_their_session_in_order():
    records = []
    evs = sim(3000)
    with Emitter(SETTINGS, producer_factory=InMemoryProducer.factory(records, 4),
                 batch_events=100) as em:
        for e in evs:
            assert em.emit(e)
        assert em.flush(10)
        st = em.stats()
    assert (st.emitted, st.acked, st.dropped, st.failed) == (3000, 3000, 0, 0)
    got = []
    for r in records:
        batch = orjson.loads(r.value)
        assert 1 <= len(batch) <= 100
        for e in batch:  # every session in a record hashes to the record's partition
            assert (murmur2(e["session_id"].encode()) & 0x7FFFFFFF) % 4 == r.partition
        got += batch
    assert sorted(e["id"] for e in got) == sorted(e["id"] for e in evs)
    for sid in {e["session_id"] for e in evs}:  # per-session order is kept
        assert [e["id"] for e in got if e["session_id"] == sid] == \
               [e["id"] for e in evs if e["session_id"] == sid]


def test_a_full_buffer_drops_and_counts_instead_of_blocking():
    em = Emitter(SETTINGS, producer_factory=InMemoryProducer.factory([]), batch_events=10,
                 buffer_events=10)  # not started: nothing drains the buffer
    results = [em.emit(e) for e in sim(25)]
    assert results.count(True) == 10 and results.count(False) == 15
    assert em.stats().dropped == 15 and em.stats().buffered == 10


def test_failed_sends_are_counted_not_lost_silently():
    with Emitter(SETTINGS, producer_factory=InMemoryProducer.factory([], fail=True)) as em:
        for e in sim(50):
            em.emit(e)
        assert em.flush(10)
        st = em.stats()
    assert st.failed == 50 and st.acked == 0


def test_emit_is_exact_under_many_threads():
    records = []
    evs = sim(8000)
    with Emitter(SETTINGS, producer_factory=InMemoryProducer.factory(records)) as em:
        threads = [threading.Thread(target=lambda part=evs[i::8]: [em.emit(e) for e in part])
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert em.flush(10)
        st = em.stats()
    assert st.emitted == st.acked == 8000
    assert sum(len(orjson.loads(r.value)) for r in records) == 8000


def test_event_builder_fills_the_envelope_and_rejects_unknown_types():
    em = Emitter(SETTINGS)
    ev = em.event("tool.call", {"tool": "grep", "duration_ms": 1.0, "status": "ok"},
                  agent_id="a", session_id="s", philosophy="react")
    assert ev["v"] == 1 and len(ev["id"]) == 36 and ev["source"]["pid"] > 0
    with pytest.raises(ValueError, match="unknown event type"):
        em.event("nope", {}, agent_id="a", session_id="s", philosophy="react")


def test_emit_after_close_is_dropped_and_counted():
    em = Emitter(SETTINGS, producer_factory=InMemoryProducer.factory([])).start()
    em.close()
    assert em.emit(sim(1)[0]) is False
    assert em.stats().dropped == 1


def test_an_event_that_cannot_be_serialised_is_counted_as_failed():
    records = []
    good = sim(2)
    with Emitter(SETTINGS, producer_factory=InMemoryProducer.factory(records)) as em:
        em.emit(good[0])
        em.emit({**good[1], "attrs": {"not_json": {1, 2}}})  # a set: orjson cannot write it
        em.emit({"type": "tool.call"})  # no session id
        assert em.flush(10)
        st = em.stats()
    assert (st.emitted, st.acked, st.failed) == (3, 1, 2)
    assert [e["id"] for r in records for e in orjson.loads(r.value)] == [good[0]["id"]]
