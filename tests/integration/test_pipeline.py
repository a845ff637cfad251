"""The whole pipeline on the real broker: emitter -> Kafka -> Faust worker -> DuckDB + Prometheus."""

from __future__ import annotations

import asyncio
import threading
import time

from agentflux.sinks.catalog import connect
import orjson
import pytest

from agentflux.harness import WorkerProcess
from agentflux.runtime.emitter import Emitter
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from tests.kpi_oracle import compare, merged_from_history, oracle

from .kafka_helpers import commit_group_offsets, consume_sync, end_offsets, produce_raw

N = 20_000
EVENTS_ROWS = 'agentflux_history_rows{table="events"}'
DL_ROWS = 'agentflux_history_rows{table="deadletters"}'


def landed(m):
    return m.get(EVENTS_ROWS, 0) + m.get(DL_ROWS, 0)


def all_windows_landed(m):
    return (m.get("agentflux_open_windows", 1) == 0 and m.get("agentflux_kpi_windows_total", 0) > 0
            and m.get('agentflux_history_rows{table="kpis"}', -1) == m["agentflux_kpi_windows_total"])


@pytest.fixture
def worker(settings, tmp_path):
    w = WorkerProcess(settings, log_path=tmp_path / "worker.log")
    yield w
    w.stop()


def test_every_event_lands_once_and_kpis_match_an_offline_oracle(settings, worker):
    settings = settings.replace(window_s=60.0, grace_s=1.0)
    worker.settings = settings
    start = time.time_ns() - 3 * 3600 * 10**9  # past event time: windows close promptly
    evs = list(SyntheticRuntime(SimConfig(events=N, agents=12, seed=2024, start_ns=start)).events())
    worker.start()
    with Emitter(settings) as em:
        for e in evs:
            assert em.emit(e)
        assert em.flush(60)
        assert em.stats().acked == N
    worker.wait_for(lambda m: m.get(EVENTS_ROWS, 0) >= N, 120, f"{N} events to land")
    worker.wait_for(all_windows_landed, 60, "all KPI windows to land")
    worker.wait_for(lambda m: sum(1 for k in m if k.startswith("agentflux_consumer_lag{")) == 4
                    and all(v == 0 for k, v in m.items() if k.startswith("agentflux_consumer_lag{")),
                    30, "consumer lag 0 on every partition")
    metrics = worker.metrics()
    assert worker.stop() == 0

    con = connect(settings.history_path)
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone() == (N, N)
    assert con.execute("SELECT count(*) FROM deadletters").fetchone()[0] == 0
    # events_total by type equals what landed
    for etype, n in con.execute("SELECT type, count(*) FROM events GROUP BY type").fetchall():
        assert metrics[f'agentflux_events_total{{type="{etype}"}}'] == n
    got = merged_from_history(con)
    con.close()
    # the oracle: the same windows computed offline from the emitted events, one at a time
    want = oracle(evs, int(60 * 1e9))
    assert not compare(got, want), compare(got, want)[:20]
    assert sum(1 for w in want.values() if w["durations"]) > 100
    assert {k[1] for k in want} == {"name", "agent", "session", "tool", "cold", "resource"}


def test_bad_records_go_to_the_dead_letter_topic_and_the_batch_still_lands(settings, worker):
    good = list(SyntheticRuntime(SimConfig(events=4, seed=9, start_ns=time.time_ns())).events())
    unknown = {**good[1], "type": "telepathy.call"}
    wrong = {**good[2], "attrs": {**good[2]["attrs"], "duration_ms": "fast"}} \
        if "duration_ms" in good[2]["attrs"] else {**good[2], "ts": "noon"}
    records = [orjson.dumps([good[0], unknown, wrong, good[3]]), b'[{"id": "broken',
               b'{"id": "\xff"}']
    worker.start()
    asyncio.run(produce_raw(settings, records))
    worker.wait_for(lambda m: landed(m) >= 6, 60, "2 valid events + 4 dead letters")
    m = worker.metrics()
    assert m[EVENTS_ROWS] == 2 and m[DL_ROWS] == 4
    dead = consume_sync(settings, settings.topics.deadletter, 4)
    by_reason = {dict(r.headers)["agentflux.reason"].decode(): r for r in dead}
    assert set(by_reason) == {"unknown_type", "invalid_field", "invalid_json", "not_utf8"}
    assert orjson.loads(by_reason["unknown_type"].value) == unknown
    h = dict(by_reason["invalid_field"].headers)
    assert h["agentflux.source.index"] == b"2" and h["agentflux.event_id"] == wrong["id"].encode()
    assert b"must be" in h["agentflux.detail"]
    assert by_reason["invalid_json"].value == b'[{"id": "broken'
    assert h["agentflux.source.topic"] == settings.topics.events.encode()
    for reason in by_reason:
        assert m[f'agentflux_deadletter_total{{reason="{reason}"}}'] == 1
    # the worker keeps running and keeps landing
    asyncio.run(produce_raw(settings, [orjson.dumps(good[0] | {"id": good[0]["id"][:-4] + "beef"})]))
    worker.wait_for(lambda m: m[EVENTS_ROWS] == 3, 30, "the next valid event")


def test_kill_9_mid_stream_and_restart_lands_exactly_n(settings, worker):
    evs = list(SyntheticRuntime(SimConfig(events=N, agents=10, seed=77, start_ns=time.time_ns())).events())
    worker.start()
    rows_at_kill = []

    def produce():
        with Emitter(settings, batch_events=200) as em:
            for i in range(0, N, 500):  # ~5 s of steady traffic
                for e in evs[i:i + 500]:
                    em.emit(e)
                time.sleep(0.12)  # pacing the producer, not synchronising the test
            em.flush(60)

    t = threading.Thread(target=produce)
    t.start()
    worker.wait_for(lambda m: m.get(EVENTS_ROWS, 0) >= N // 5, 60, "a fifth of the events")
    rows_at_kill.append(worker.metrics()[EVENTS_ROWS])
    worker.kill()
    worker.start()
    t.join(120)
    worker.wait_for(lambda m: m.get(EVENTS_ROWS, 0) >= N, 120, f"{N} events after the restart")
    assert worker.stop() == 0
    con = connect(settings.history_path)
    total, distinct = con.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone()
    con.close()
    assert (total, distinct) == (N, N)
    assert rows_at_kill[0] < N  # the kill really was mid-stream


def test_a_graceful_stop_publishes_the_open_windows(settings, worker, tmp_path):
    settings = settings.replace(window_s=3600.0, grace_s=60.0)
    worker.settings = settings
    evs = list(SyntheticRuntime(SimConfig(events=500, seed=12)).events())  # live timestamps
    worker.start()
    with Emitter(settings) as em:
        for e in evs:
            em.emit(e)
        assert em.flush(30)
    worker.wait_for(lambda m: m.get(EVENTS_ROWS, 0) == 500 and m.get("agentflux_open_windows", 0) > 0,
                    60, "the events to land in open windows")
    open_windows = worker.metrics()["agentflux_open_windows"]
    assert worker.stop() == 0
    again = WorkerProcess(settings, log_path=tmp_path / "worker2.log").start()
    try:
        again.wait_for(lambda m: m.get('agentflux_history_rows{table="kpis"}', 0) == open_windows,
                       60, f"the {open_windows} flushed windows to land")
    finally:
        assert again.stop() == 0
    con = connect(settings.history_path)
    assert con.execute("SELECT sum(count) FROM kpi_rows WHERE dim = 'name'").fetchone()[0] == 500
    con.close()


@pytest.mark.parametrize("committed", ["at_the_end", "in_the_middle"])
def test_a_committed_offset_past_the_history_is_read_again_from_the_history(settings, worker,
                                                                          committed):
    """The history's offsets decide where a partition resumes: if the group's committed offset
    skipped records that never landed (Faust commits past an offset it never saw acked when
    later ones are), the worker reads them from its last landed offset. ``at_the_end``: nothing
    comes after the committed offset (the worker must notice without a record to trigger it);
    ``in_the_middle``: the consumer delivers the records after it while the skipped ones are
    read. Either way every event is taken in exactly once: none lands twice or as a duplicate
    of itself, and none is counted twice."""
    evs = list(SyntheticRuntime(SimConfig(events=3000, seed=31,
                                          start_ns=time.time_ns() - 3600 * 10**9)).events())
    worker.start()
    asyncio.run(produce_raw(settings, [orjson.dumps(evs[i:i + 100]) for i in range(0, 1000, 100)]))
    worker.wait_for(lambda m: m.get(EVENTS_ROWS, 0) == 1000, 60, "the first 1,000 events")
    assert worker.stop() == 0
    # while the worker is down: more records, and a committed offset past some or all of them
    before = asyncio.run(end_offsets(settings, settings.topics.events))
    asyncio.run(produce_raw(settings, [orjson.dumps(evs[i:i + 10])
                                       for i in range(1000, 3000, 10)]))
    ends = asyncio.run(end_offsets(settings, settings.topics.events))
    skip = ends if committed == "at_the_end" else {
        p: before[p] + (ends[p] - before[p]) // 2 for p in ends}
    assert any(skip[p] > before[p] for p in ends)
    asyncio.run(commit_group_offsets(settings, settings.app_id, settings.topics.events, skip))
    worker.start()
    worker.wait_for(lambda m: m.get(EVENTS_ROWS, 0) == 3000, 60,  # (rows of the whole history)
                    "the 2,000 events the committed offset skipped")
    taken_in = sum(v for k, v in worker.metrics().items() if k.startswith("agentflux_events_total{"))
    assert worker.stop() == 0
    assert taken_in == 2000  # (this worker's count: the events after the first 1,000)
    con = connect(settings.history_path)
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone() == (3000,
                                                                                         3000)
    assert con.execute("SELECT count(*) FROM duplicates").fetchone()[0] == 0
    con.close()


def test_kpi_records_one_row_or_an_array_and_bad_ones_go_to_the_dead_letter_topic(settings, worker):
    """A KPI record holds one row or a JSON array of rows (the worker publishes arrays; a client
    in another language may publish single rows): every row lands, and what is not a row goes
    to the dead-letter topic with its reason and its index in the array."""
    from agentflux.streams.windows import TumblingWindows, WindowBatch

    minute = time.time_ns() // 60_000_000_000 * 60_000_000_000  # all 200 in one window
    evs = list(SyntheticRuntime(SimConfig(events=200, seed=5, start_ns=minute)).events())
    windows = TumblingWindows(60.0)
    windows.add(evs)
    closed = windows.close_due(flush_all=True)
    rows = [r.to_dict("elsewhere") for r in closed if not isinstance(r, WindowBatch)][:3]
    (batch,) = [r for r in closed if isinstance(r, WindowBatch)]  # the sessions' rows
    (batch_doc,) = batch.docs("elsewhere", 1).values()
    # a batch whose arrays do not line up: not a single row of it lands
    bad_batch = {**batch_doc, "count": batch_doc["count"][1:]}
    assert len(rows) == 3 and batch.rows > 1
    # integers JSON allows and the history's columns do not hold (they crashed the lander)
    huge_row = {**rows[0], "row_id": "huge", "count": 2**63}
    huge_batch = {**batch_doc, "row_id": "huge-batch",
                  "errors": [0] * (batch.rows - 1) + [2**64 - 1]}
    records = [orjson.dumps(rows[0]), orjson.dumps([rows[1], 42, rows[2]]), b"{not json",
               orjson.dumps([bad_batch, batch_doc]), orjson.dumps([huge_row, huge_batch])]
    worker.start()
    asyncio.run(produce_raw(settings, records, topic=settings.topics.kpis))
    kpi_rows = 'agentflux_history_rows{table="kpis"}'
    worker.wait_for(lambda m: m.get(kpi_rows, 0) >= 3 + batch.rows
                    and m.get('agentflux_deadletter_total{reason="invalid_kpi"}', 0) >= 5,
                    60, f"{3 + batch.rows} KPI rows and 5 dead letters")
    dead = consume_sync(settings, settings.topics.deadletter, 5)
    huge = {orjson.loads(r.value)["row_id"]: dict(r.headers)["agentflux.detail"] for r in dead
            if r.value.startswith(b"{") and b'"huge' in r.value}
    assert huge == {"huge": b"ValueError('count does not fit a 64-bit integer')",
                    "huge-batch": b"ValueError('errors does not fit a 64-bit integer')"}
    dead = [r for r in dead if b'"huge' not in r.value]
    by_index = {dict(r.headers).get("agentflux.source.index"): r for r in dead}
    assert set(by_index) == {b"0", b"1", None}
    assert by_index[b"1"].value == b"42"
    assert by_index[None].value == b"{not json"
    assert orjson.loads(by_index[b"0"].value) == bad_batch
    assert b"count must be an array" in dict(by_index[b"0"].headers)["agentflux.detail"]
    for r in dead:
        h = dict(r.headers)
        assert h["agentflux.reason"] == b"invalid_kpi"
        assert h["agentflux.source.topic"] == settings.topics.kpis.encode()
    assert worker.stop() == 0
    con = connect(settings.history_path)
    got = {r[0] for r in con.execute("SELECT row_id FROM kpis WHERE worker = 'elsewhere'").fetchall()}
    sessions = dict(con.execute("SELECT name, count FROM kpis WHERE dim = 'session'").fetchall())
    con.close()
    assert got == {r["row_id"] for r in rows} | {r.row_id for r in batch.explode()}
    assert sessions == {r.name: r.count for r in batch.explode()}
