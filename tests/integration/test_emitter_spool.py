"""The Emitter through real broker outages: this module stops and restarts a Kafka of its own
(not the session's), on the same ports and data, and reads back what the topic holds."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from agentflux.config import Settings, Topics
from agentflux.harness import wait_until
from agentflux.runtime.emitter import Emitter
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime

from .kafka_helpers import start_or_fail

PARTITIONS = 4


def wait_for(cond, timeout_s, what):
    wait_until(cond, timeout_s, what, interval_s=0.005)


@pytest.fixture(scope="module")
def own_kafka(tmp_path_factory):
    from agentflux.localkafka import LocalKafka
    work = tmp_path_factory.mktemp("own-kafka")
    kafka = LocalKafka(work_dir=work, cache_dir=Settings.from_env().state_dir)
    start_or_fail(kafka)
    yield kafka
    kafka.stop()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def broker(own_kafka):
    """The module's broker, running at the start of a test and again at its end."""
    if own_kafka.proc is None:
        own_kafka.start()
    yield own_kafka
    if own_kafka.proc is None:
        own_kafka.start()


def topic_settings(bootstrap: str, tmp_path: Path) -> Settings:
    from agentflux.streams.topics import ensure_topics
    run = uuid.uuid4().hex[:10]
    s = Settings.from_env(env={}, bootstrap_servers=bootstrap, app_id=f"spool-{run}",
                          topics=Topics.with_prefix(f"spool-{run}", events_partitions=PARTITIONS),
                          state_dir=tmp_path / "state")
    asyncio.run(ensure_topics(s))
    return s


@pytest.fixture
def own_settings(broker, tmp_path) -> Settings:
    return topic_settings(broker.bootstrap, tmp_path)


def read_topic(settings: Settings, deadline_s: float = 60.0) -> list[dict]:
    """Every event the events topic holds, per partition in offset order."""
    async def run():
        consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    fetch_max_bytes=64 * 1024 * 1024)
        await consumer.start()
        try:
            tps = [TopicPartition(settings.topics.events, p)
                   for p in range(settings.topics.events_partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            records = []
            deadline = time.monotonic() + deadline_s
            while True:
                positions = {tp: await consumer.position(tp) for tp in tps}
                if all(positions[tp] >= end[tp] for tp in tps):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"read up to {positions} of {end}")
                for recs in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(recs)
        finally:
            await consumer.stop()
        records.sort(key=lambda r: (r.partition, r.offset))
        return [e for r in records for e in orjson.loads(r.value)]
    return asyncio.run(run())


def assert_once_and_in_order(got: list[dict], expected: list[dict]) -> None:
    ids = [e["id"] for e in got]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} events arrived twice"
    assert sorted(ids) == sorted(e["id"] for e in expected)
    by_session: dict[str, list] = {}
    for e in got:
        by_session.setdefault(e["session_id"], []).append(e["id"])
    for sid, got_ids in by_session.items():
        assert got_ids == [e["id"] for e in expected if e["session_id"] == sid], sid


class Observer:
    """Samples stats() on a thread: every snapshot must add up."""

    def __init__(self, em: Emitter):
        self.em, self.seen, self._stop = em, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.seen.append(self.em.stats())
            self._stop.wait(0.002)  # sampling cadence, not synchronisation

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.seen.append(self.em.stats())
        bad = [s for s in self.seen if not s.adds_up]
        assert not bad, f"{len(bad)} of {len(self.seen)} snapshots do not add up, e.g. {bad[0]}"
        return self.seen


def emit_paced(em: Emitter, events: list[dict], chunk: int = 100) -> None:
    """Emit the way a runtime does, at a rate the emitter sustains: a chunk whenever the
    emitter holds less than half its buffer in memory (a runtime faster than its disk has to
    drop, counted; that is tested elsewhere). Tests size ``buffer_events`` to be well above
    what the emitter keeps in memory for sending (2 x batch_events per partition)."""
    room = em.buffer_events // 2
    for i in range(0, len(events), chunk):
        wait_for(lambda: em.stats().buffered <= room, 120, "room in the emitter's buffer")
        for e in events[i:i + chunk]:
            assert em.emit(e)


def events(n: int, seed: int, agents: int = 12) -> list[dict]:
    return list(SyntheticRuntime(SimConfig(events=n, agents=agents, seed=seed)).events())


def spool_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.spool"))


def test_a_broker_outage_mid_stream_spills_to_the_spool_and_everything_arrives_once_in_order(
        broker, own_settings, tmp_path):
    evs = events(30_000, seed=11)
    spool = tmp_path / "spool"
    # send_timeout_s long: the producer keeps retrying what it sent before the outage with the
    # same sequence numbers (so nothing is written twice) until the broker is back
    em = Emitter(own_settings, spool_dir=spool, buffer_events=4000, batch_events=100,
                 spill_after_ms=300, send_timeout_s=300).start()
    obs = Observer(em)
    try:
        emit_paced(em, evs[:10_000])
        wait_for(lambda: em.stats().acked >= 5000, 60, "the first events to be acknowledged")
        during = threading.Thread(target=emit_paced, args=(em, evs[10_000:20_000]))
        during.start()  # the broker goes down while the runtime keeps emitting
        broker.stop()
        during.join()
        emit_paced(em, evs[20_000:])  # the broker is down for all of these
        wait_for(lambda: em.stats().spooled >= 8000, 60, "events to be spilled to the spool")
        # nothing stays only in memory (lost if the runtime died now) but records in flight
        wait_for(lambda: em.stats().buffered == 0, 60, "the memory to be spilled")
        assert spool_files(spool)
        acked_while_down = em.stats().acked
        broker.start()
        assert em.flush(120), em.stats()
        st = em.stats()
    finally:
        em.close(30)
        seen = obs.stop()
    assert (st.emitted, st.acked, st.failed, st.dropped, st.pending) == (30_000, 30_000, 0, 0, 0)
    assert acked_while_down < 30_000 - 10_000
    assert max(s.spooled for s in seen) >= 8000
    assert max(s.buffered for s in seen) <= 4000 + 3 * PARTITIONS * 100  # memory stays bounded
    assert spool_files(spool) == []  # segments go once their events are acknowledged
    assert_once_and_in_order(read_topic(own_settings), evs)


def test_beyond_the_spool_bound_events_are_dropped_and_counted(broker, own_settings, tmp_path):
    evs = events(10_000, seed=12)
    bound = 1024 * 1024  # ~2000 events of ~500 bytes
    em = Emitter(own_settings, spool_dir=tmp_path / "spool", spool_max_bytes=bound,
                 buffer_events=4000, batch_events=100, spill_after_ms=300,
                 send_timeout_s=300).start()
    obs = Observer(em)
    try:
        emit_paced(em, evs[:200])  # well within the bound
        assert em.flush(30)
        broker.stop()
        emit_paced(em, evs[200:])
        wait_for(lambda: em.stats().buffered == 0, 60, "the memory to be spilled")
        st_down = em.stats()
        broker.start()
        assert em.flush(120), em.stats()
        st = em.stats()
    finally:
        em.close(30)
        seen = obs.stop()
    # the spool was used up to its bound, not beyond; what did not fit is dropped and counted
    assert 0.9 * bound <= st_down.spool_bytes <= bound
    assert st_down.dropped > 6000 and st_down.pending >= 1500 and st_down.adds_up
    assert max(s.spool_bytes for s in seen) <= bound
    assert st.acked + st.dropped == 10_000 and (st.failed, st.pending) == (0, 0) and st.adds_up
    got = read_topic(own_settings)
    assert len(got) == st.acked and len({e["id"] for e in got}) == len(got)
    position = {e["id"]: i for i, e in enumerate(evs)}
    assert {e["id"] for e in evs[:200]} <= {e["id"] for e in got}  # acked before the outage
    for sid in {e["session_id"] for e in got}:  # what arrived is in order; the gaps are drops
        idx = [position[e["id"]] for e in got if e["session_id"] == sid]
        assert idx == sorted(idx)


def test_a_new_emitter_on_the_spool_delivers_what_a_closed_one_left_while_the_broker_was_down(
        broker, own_settings, tmp_path):
    evs = events(6000, seed=13, agents=8)
    spool = tmp_path / "spool"
    # a small buffer and a runtime emitting as fast as it can: when the buffer is full, emit()
    # waits (bounded by max_block_ms) for the spill to disk instead of dropping
    em = Emitter(own_settings, spool_dir=spool, buffer_events=1000, batch_events=100,
                 max_block_ms=2000).start()
    emit_paced(em, evs[:1000])
    assert em.flush(30)
    broker.stop()
    assert all(em.emit(e) for e in evs[1000:4000])  # 3 x the buffer, no pause
    t0 = time.monotonic()
    assert em.close(5) is False  # not everything was delivered ...
    assert time.monotonic() - t0 < 6.5  # ... and close() kept to its timeout
    st = em.stats()
    assert (st.acked, st.failed, st.dropped) == (1000, 0, 0)
    assert st.pending == st.spooled == 3000 and st.adds_up  # ... all of it is in the spool
    assert spool_files(spool)
    broker.start()
    with Emitter(own_settings, spool_dir=spool, buffer_events=4000, batch_events=100) as em2:
        st2 = em2.stats()
        assert st2.recovered == 3000 and st2.adds_up  # (already being delivered)
        emit_paced(em2, evs[4000:])
        assert em2.flush(60)
        st2 = em2.stats()
    assert (st2.emitted, st2.recovered, st2.acked, st2.pending) == (2000, 3000, 5000, 0)
    assert spool_files(spool) == []
    assert_once_and_in_order(read_topic(own_settings), evs)


def test_a_torn_spool_tail_is_cut_off_counted_and_the_rest_delivered(settings, tmp_path):
    evs = events(200, seed=14)
    spool = tmp_path / "spool"
    em = Emitter(settings, spool_dir=spool)  # never started: close() spools its buffer
    for e in evs:
        em.emit(e)
    em.close()
    assert em.stats().spooled == 200
    last = spool_files(spool)[-1]
    with open(last, "r+b") as f:  # the runtime died in the middle of writing the last record
        f.truncate(last.stat().st_size - 5)
    with Emitter(settings, spool_dir=spool) as em2:
        st = em2.stats()
        assert (st.recovered, st.spool_torn) == (199, 1) and st.adds_up
        assert em2.flush(30)
    assert em2.stats().acked == 199
    assert_once_and_in_order(read_topic(settings), evs[:199])


def test_simulate_on_sigterm_delivers_or_spools_and_prints_counters_that_add_up(
        settings, tmp_path):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "AGENTFLUX_TOPIC_PREFIX": settings.topics.events.rsplit(".", 1)[0],
           "AGENTFLUX_EVENTS_PARTITIONS": str(settings.topics.events_partitions),
           "AGENTFLUX_SPOOL_DIR": str(tmp_path / "spool"), "AGENTFLUX_HOME": str(tmp_path)}
    exe = Path(sys.executable).with_name("agentflux")
    proc = subprocess.Popen([str(exe), "simulate", "--synthetic", "--events", "5000000"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: proc.poll() is not None or _topic_has_records(settings), 120,
                 "the simulator's first records")
        assert proc.poll() is None, proc.communicate()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert elapsed < 35
    line = next(l for l in out.splitlines() if l.startswith("emitted "))
    n = {k: int(v) for k, v in re.findall(r"(emitted|acked|failed|dropped|pending|spooled) (\d+)",
                                            line)}
    assert n["emitted"] < 5_000_000  # it stopped early
    assert n["emitted"] == n["acked"] + n["failed"] + n["dropped"] + n["pending"]
    assert n["acked"] == n["emitted"] and n["pending"] == 0  # the broker was up: all delivered
    assert len(read_topic(settings)) == n["acked"]


def _topic_has_records(settings: Settings) -> bool:
    async def run():
        consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), group_id=None)
        await consumer.start()
        try:
            tps = [TopicPartition(settings.topics.events, p)
                   for p in range(settings.topics.events_partitions)]
            return sum((await consumer.end_offsets(tps)).values()) > 0
        finally:
            await consumer.stop()
    return asyncio.run(run())
