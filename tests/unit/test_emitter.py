import asyncio
import logging
import threading
import time
from dataclasses import dataclass

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.partitioner import murmur2

from agentflux.config import ConfigError, Settings
from agentflux.harness import wait_until
from agentflux.runtime.emitter import Emitter, Spool
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.runtime.testing import InMemoryProducer

SETTINGS = Settings(bootstrap_servers="in-memory:9092")


def sim(n, seed=1, agents=6):
    return list(SyntheticRuntime(SimConfig(events=n, agents=agents, seed=seed, start_ns=10**18)).events())


def wait_for(cond, timeout=10.0, what="condition"):
    wait_until(cond, timeout, what, interval_s=0.002)


@dataclass
class Rec:
    partition: int
    key: bytes
    value: bytes


class FakeBroker:
    """A broker behind a producer double: up (acknowledges), down (sends wait, as an idempotent
    producer retries until the broker is back; nothing is lost or doubled), or answering every
    send with ``error`` (``fail_times`` times, then normally)."""

    def __init__(self, partitions=4):
        self.partitions = partitions
        self.records: list[Rec] = []
        self.down = False
        self.error = None
        self.fail_times = 0
        self._held = []
        self._lock = threading.Lock()

    def factory(self):
        broker = self

        class Producer:
            def __init__(self, **kw):
                self.kw = kw

            async def start(self):
                pass

            async def stop(self):  # what it still holds never reaches the broker
                with broker._lock:
                    broker._held = [h for h in broker._held if h[3] is not self]

            async def partitions_for(self, topic):
                return set(range(broker.partitions))

            async def send(self, topic, value, key=None, partition=None):
                fut = asyncio.get_running_loop().create_future()
                rec = Rec(partition, key, value)
                with broker._lock:
                    if broker.error is not None and broker.fail_times != 0:
                        broker.fail_times -= 1
                        fut.set_exception(broker.error)
                    elif broker.down:
                        broker._held.append((asyncio.get_running_loop(), fut, rec, self))
                    else:
                        broker.records.append(rec)
                        fut.set_result(None)
                return fut
        return Producer

    def set_down(self):
        with self._lock:
            self.down = True

    def set_up(self):
        with self._lock:
            self.down = False
            held, self._held = self._held, []
            for loop, fut, rec, _ in held:
                self.records.append(rec)
                loop.call_soon_threadsafe(lambda f=fut: f.done() or f.set_result(None))

    def events(self):
        return [e for r in self.records for e in orjson.loads(r.value)]


def assert_delivered_once_in_order(got, expected):
    assert len(got) == len(expected)
    assert sorted(e["id"] for e in got) == sorted(e["id"] for e in expected)
    for sid in {e["session_id"] for e in expected}:
        assert [e["id"] for e in got if e["session_id"] == sid] == \
               [e["id"] for e in expected if e["session_id"] == sid]


def segments(path):
    return sorted(path.glob("*.spool"))


def test_events_are_batched_per_partition_of_their_session_in_order():
    records = []
    evs = sim(3000)
    with Emitter(SETTINGS, producer_factory=InMemoryProducer.factory(records, 4),
                 batch_events=100, spool_dir="") as em:
        for e in evs:
            assert em.emit(e)
        assert em.flush(10)
        st = em.stats()
    assert (st.emitted, st.acked, st.dropped, st.failed, st.pending) == (3000, 3000, 0, 0, 0)
    assert st.adds_up
    got = []
    for r in records:
        batch = orjson.loads(r.value)
        assert 1 <= len(batch) <= 100
        for e in batch:  # every session in a record hashes to the record's partition
            assert (murmur2(e["session_id"].encode()) & 0x7FFFFFFF) % 4 == r.partition
        got += batch
    assert_delivered_once_in_order(got, evs)


def test_a_full_buffer_drops_and_counts_instead_of_blocking():
    em = Emitter(SETTINGS, producer_factory=InMemoryProducer.factory([]), batch_events=10,
                 buffer_events=10, spool_dir="")  # not started: nothing drains the buffer
    results = [em.emit(e) for e in sim(25)]
    assert results.count(True) == 10 and results.count(False) == 15
    st = em.stats()
    assert (st.emitted, st.dropped, st.buffered, st.pending) == (25, 15, 10, 10) and st.adds_up


def test_events_that_can_never_be_delivered_are_counted_as_failed():
    broker = FakeBroker()
    broker.error, broker.fail_times = MessageSizeTooLargeError(), -1  # every send
    with Emitter(SETTINGS, producer_factory=broker.factory(), spool_dir="") as em:
        for e in sim(50):
            em.emit(e)
        assert em.flush(10)
        st = em.stats()
    assert (st.failed, st.acked, st.pending) == (50, 0, 0) and st.adds_up


def test_retriable_send_failures_are_sent_again_not_counted_as_failed():
    broker = FakeBroker()
    broker.error, broker.fail_times = KafkaTimeoutError(), 3
    evs = sim(500)
    with Emitter(SETTINGS, producer_factory=broker.factory(), batch_events=50, spool_dir="") as em:
        for e in evs:
            em.emit(e)
        assert em.flush(20)
        st = em.stats()
    assert (st.acked, st.failed, st.dropped, st.pending) == (500, 0, 0, 0) and st.adds_up
    assert_delivered_once_in_order(broker.events(), evs)


def test_an_unusable_producer_is_replaced_and_its_records_sent_again():
    from aiokafka.errors import OutOfOrderSequenceNumber
    broker = FakeBroker()
    made = []
    factory = broker.factory()
    broker.error, broker.fail_times = OutOfOrderSequenceNumber(), 1
    evs = sim(400)
    with Emitter(SETTINGS, producer_factory=lambda **kw: made.append(1) or factory(**kw),
                 batch_events=50, spool_dir="") as em:
        for e in evs:
            em.emit(e)
        assert em.flush(20)
        st = em.stats()
    assert len(made) >= 2  # a new producer
    assert (st.acked, st.failed, st.pending) == (400, 0, 0) and st.adds_up
    assert_delivered_once_in_order(broker.events(), evs)


def test_emit_is_exact_under_many_threads():
    records = []
    evs = sim(8000)
    with Emitter(SETTINGS, producer_factory=InMemoryProducer.factory(records), spool_dir="") as em:
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
    em = Emitter(SETTINGS, producer_factory=InMemoryProducer.factory([]), spool_dir="").start()
    em.close()
    assert em.emit(sim(1)[0]) is False
    st = em.stats()
    assert (st.emitted, st.dropped) == (1, 1) and st.adds_up


def test_an_event_that_cannot_be_serialised_is_counted_as_failed():
    records = []
    good = sim(2)
    with Emitter(SETTINGS, producer_factory=InMemoryProducer.factory(records), spool_dir="") as em:
        em.emit(good[0])
        em.emit({**good[1], "attrs": {"not_json": {1, 2}}})  # a set: orjson cannot write it
        em.emit({"type": "tool.call"})  # no session id
        em.emit({**good[1], "session_id": 7})  # not a string
        assert em.flush(10)
        st = em.stats()
    assert (st.emitted, st.acked, st.failed) == (4, 1, 3) and st.adds_up
    assert [e["id"] for r in records for e in orjson.loads(r.value)] == [good[0]["id"]]


def test_an_unreachable_broker_spills_to_the_spool_and_everything_arrives_in_order(tmp_path):
    broker = FakeBroker()
    evs = sim(6000, agents=9)
    seen = []
    em = Emitter(SETTINGS, producer_factory=broker.factory(), batch_events=50, buffer_events=400,
                 spool_dir=tmp_path, spill_after_ms=50).start()
    try:
        for i in range(0, 1000, 100):
            wait_for(lambda: em.stats().buffered <= 200, what="the buffer to drain")
            for e in evs[i:i + 100]:
                assert em.emit(e)
        assert em.flush(10)
        broker.set_down()
        for i in range(1000, 6000, 100):  # a runtime emitting at a rate the spool sustains
            wait_for(lambda: em.stats().buffered <= 200, what="the buffer to drain")
            for e in evs[i:i + 100]:
                assert em.emit(e)
            seen.append(em.stats())
        wait_for(lambda: em.stats().spooled >= 4000, what="events to be spooled")
        # during the outage nothing stays only in memory but the records in flight
        wait_for(lambda: em.stats().buffered == 0, what="the memory to be spilled")
        seen.append(em.stats())
        assert segments(tmp_path)
        broker.set_up()
        assert em.flush(20)
        st = em.stats()
    finally:
        em.close(5)
    assert all(s.adds_up for s in seen) and max(s.spooled for s in seen) >= 4000
    assert max(s.buffered for s in seen) <= 400 + 3 * 4 * 50
    assert (st.acked, st.failed, st.dropped, st.pending) == (6000, 0, 0, 0) and st.adds_up
    assert_delivered_once_in_order(broker.events(), evs)
    assert segments(tmp_path) == []  # deleted once acknowledged


def test_with_a_spool_a_burst_beyond_the_buffer_is_spilled_not_dropped(tmp_path):
    broker = FakeBroker()
    broker.set_down()
    evs = sim(5000)
    em = Emitter(SETTINGS, producer_factory=broker.factory(), batch_events=50, buffer_events=200,
                 spool_dir=tmp_path, max_block_ms=2000).start()
    try:
        assert all(em.emit(e) for e in evs)  # 25 x the buffer at once: emit() waits for the spill
        st = em.stats()
        assert (st.emitted, st.dropped) == (5000, 0) and st.adds_up
        broker.set_up()
        assert em.flush(20)
    finally:
        em.close(5)
    assert_delivered_once_in_order(broker.events(), evs)


def test_emit_waits_for_room_at_most_max_block_ms_then_drops_at_once(tmp_path, monkeypatch):
    hold = threading.Event()
    real_tick = Emitter._tick

    def stuck_tick(self, now):  # the background thread cannot make room (a hung disk, say)
        hold.wait(10)
        return real_tick(self, now)
    monkeypatch.setattr(Emitter, "_tick", stuck_tick)
    em = Emitter(SETTINGS, producer_factory=FakeBroker().factory(), batch_events=10,
                 buffer_events=10, spool_dir=tmp_path, max_block_ms=200).start()
    try:
        for e in sim(10):
            assert em.emit(e)
        t0 = time.monotonic()
        assert em.emit(sim(11)[10]) is False
        waited = time.monotonic() - t0
        t0 = time.monotonic()
        assert em.emit(sim(12)[11]) is False  # no second wait while no room was made
        again = time.monotonic() - t0
        st = em.stats()
        assert (st.emitted, st.dropped) == (12, 2) and st.adds_up
        assert 0.15 <= waited < 2.0 and again < 0.1
    finally:
        hold.set()
        em.close(5)


def test_close_with_the_broker_down_spools_what_is_left_and_a_new_emitter_delivers_it(tmp_path):
    broker = FakeBroker()
    evs = sim(3000, agents=5)
    em = Emitter(SETTINGS, producer_factory=broker.factory(), batch_events=50,
                 spool_dir=tmp_path, spill_after_ms=100).start()
    for e in evs[:500]:
        em.emit(e)
    assert em.flush(10)
    broker.set_down()
    for e in evs[500:2000]:
        em.emit(e)
    t0 = time.monotonic()
    assert em.close(3) is False  # something was left behind: spooled
    assert time.monotonic() - t0 < 3.5
    st = em.stats()
    assert (st.acked, st.dropped, st.failed) == (500, 0, 0)
    assert st.pending == st.spooled == 1500 and st.adds_up
    broker.set_up()
    em2 = Emitter(SETTINGS, producer_factory=broker.factory(), batch_events=50, spool_dir=tmp_path)
    with em2:
        assert em2.stats().recovered == 1500 and em2.stats().adds_up
        for e in evs[2000:]:
            em2.emit(e)
        assert em2.flush(10)
        st2 = em2.stats()
    assert (st2.emitted, st2.recovered, st2.acked, st2.pending) == (1000, 1500, 2500, 0)
    assert_delivered_once_in_order(broker.events(), evs)
    assert segments(tmp_path) == []


def test_close_without_a_spool_counts_what_it_leaves_as_dropped_and_says_so(caplog):
    broker = FakeBroker()
    broker.set_down()
    em = Emitter(SETTINGS, producer_factory=broker.factory(), spool_dir="").start()
    for e in sim(300):
        em.emit(e)
    with caplog.at_level(logging.ERROR, logger="agentflux.runtime.emitter"):
        t0 = time.monotonic()
        assert em.close(1.0) is False
        assert time.monotonic() - t0 < 1.5
    st = em.stats()
    assert (st.emitted, st.dropped, st.pending, st.acked) == (300, 300, 0, 0) and st.adds_up
    assert "300 events could not be delivered" in caplog.text and "AGENTFLUX_SPOOL_DIR" in caplog.text


def test_closing_an_emitter_that_never_started_spools_its_buffer(tmp_path):
    evs = sim(40)
    em = Emitter(SETTINGS, spool_dir=tmp_path)
    for e in evs:
        em.emit(e)
    assert em.close() is False
    st = em.stats()
    assert (st.spooled, st.pending, st.dropped) == (40, 40, 0) and st.adds_up
    broker = FakeBroker()
    with Emitter(SETTINGS, producer_factory=broker.factory(), spool_dir=tmp_path) as em2:
        assert em2.flush(10)
        assert em2.stats().acked == 40
    assert_delivered_once_in_order(broker.events(), evs)


def test_a_full_spool_drops_and_counts(tmp_path):
    broker = FakeBroker()
    evs = sim(4000)
    em = Emitter(SETTINGS, producer_factory=broker.factory(), batch_events=50, buffer_events=400,
                 spool_dir=tmp_path, spool_max_bytes=64 * 1024, spill_after_ms=50).start()
    broker.set_down()
    seen = []
    for i in range(0, 4000, 100):
        wait_for(lambda: em.stats().buffered <= 200, what="the buffer to drain")
        for e in evs[i:i + 100]:
            em.emit(e)
        seen.append(em.stats())
    wait_for(lambda: em.stats().buffered == 0, what="the buffer to spill")
    st = em.stats()
    assert st.dropped > 2000 and st.spool_bytes <= 64 * 1024 and st.adds_up
    assert all(s.adds_up for s in seen)
    broker.set_up()
    assert em.flush(10)
    em.close(5)
    st = em.stats()
    assert st.acked + st.dropped == 4000 and st.pending == 0 and st.adds_up
    got = broker.events()
    assert len(got) == st.acked == len({e["id"] for e in got})
    order = {e["id"]: i for i, e in enumerate(evs)}
    for sid in {e["session_id"] for e in got}:  # what arrived is in order, gaps are the drops
        idx = [order[e["id"]] for e in got if e["session_id"] == sid]
        assert idx == sorted(idx)


def _spool_with(tmp_path, evs):
    spool = Spool(tmp_path, segment_bytes=1 << 20)
    assert spool.open() == 0
    assert spool.append([(e["session_id"].encode(), orjson.dumps(e)) for e in evs]) == len(evs)
    spool.close()
    (seg,) = segments(tmp_path)
    return seg


def test_a_torn_spool_tail_is_cut_off_and_counted_and_the_rest_delivered(tmp_path, caplog):
    evs = sim(30)
    seg = _spool_with(tmp_path, evs)
    data = seg.read_bytes()
    seg.write_bytes(data[:-7])  # the process died in the middle of writing the last record
    broker = FakeBroker()
    with caplog.at_level(logging.WARNING, logger="agentflux.runtime.emitter"):
        with Emitter(SETTINGS, producer_factory=broker.factory(), spool_dir=tmp_path) as em:
            st = em.stats()
            assert (st.recovered, st.spool_torn) == (29, 1) and st.adds_up
            assert em.flush(10)
    assert "torn or corrupt record" in caplog.text
    assert_delivered_once_in_order(broker.events(), evs[:29])


def test_a_corrupt_record_ends_its_segment(tmp_path):
    evs = sim(10)
    seg = _spool_with(tmp_path, evs)
    data = bytearray(seg.read_bytes())
    data[-30] ^= 0xFF  # flip a byte inside the last record: its CRC no longer matches
    seg.write_bytes(bytes(data))
    spool = Spool(tmp_path)
    assert spool.open() == 9 and spool.torn == 1
    out, lost = spool.read(100)
    assert [orjson.loads(d)["id"] for _, d, _ in out] == [e["id"] for e in evs[:9]] and lost == 0
    spool.close()


def test_a_spool_directory_belongs_to_one_emitter_at_a_time(tmp_path):
    first = Spool(tmp_path)
    first.open()
    try:
        with pytest.raises(ConfigError, match="in use by another emitter"):
            Emitter(SETTINGS, producer_factory=FakeBroker().factory(), spool_dir=tmp_path).start()
    finally:
        first.close()


def test_spool_bound_setting_is_validated_and_named():
    with pytest.raises(ConfigError, match="AGENTFLUX_SPOOL_MAX_BYTES"):
        Emitter(SETTINGS, spool_max_bytes=10)
