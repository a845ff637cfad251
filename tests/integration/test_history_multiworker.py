"""Many workers, one history, exactly once: the real broker, worker processes in one consumer
group on 4 partitions, a kill -9 and a restart, a third worker joining and leaving, the compactor
running throughout, and an analyst querying the history the whole time."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import orjson

from agentflux.harness import WorkerProcess, wait_until
from agentflux.runtime.emitter import Emitter
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.sinks.catalog import connect
from agentflux.sinks.history import History

from tests.kpi_oracle import compare, merged_from_history, oracle

from .kafka_helpers import produce_raw

N = 100_000
BAD = 200  # events with an unknown type among them: dead-lettered


class Analyst(threading.Thread):
    """Queries the history through its catalog in a loop; records every failure, every
    duplicate and every count that went down."""

    def __init__(self, root: str):
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()
        self.queries = 0
        self.last = (0, 0)
        self.problems: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                con = connect(self.root)
                try:
                    rows, ids = con.execute(
                        "SELECT count(*), count(DISTINCT id) FROM events").fetchone()
                    dead = con.execute("SELECT count(*) FROM deadletters").fetchone()[0]
                finally:
                    con.close()
            except Exception as exc:  # the point: a query must never fail
                self.problems.append(f"query failed: {exc!r}")
                continue
            self.queries += 1
            if rows != ids:
                self.problems.append(f"{rows - ids} duplicate rows seen ({rows} rows)")
            if rows < self.last[0] or dead < self.last[1]:
                self.problems.append(f"counts went down: {self.last} -> {(rows, dead)}")
            self.last = (rows, dead)

    def seen(self) -> tuple[int, int]:
        return self.last


def test_workers_joining_leaving_and_killed_land_every_event_exactly_once(settings, tmp_path):
    settings = settings.replace(compact_interval_s=2.0, compact_min_files=4, compact_grace_s=30.0,
                                segment_age_s=0.5)
    # event time in the past (the run spans ~15 min of it): windowing clamps event time more
    # than max_future_skew_s ahead of the wall clock, which the oracle below does not model
    evs = list(SyntheticRuntime(SimConfig(events=N, agents=16, seed=808,
                                          start_ns=time.time_ns() - 3600 * 10**9)).events())
    bad = [{**e, "type": "telepathy.call"} for e in evs[:BAD]]
    bad = [{**e, "id": e["id"][:-6] + f"{i:06d}"} for i, e in enumerate(bad)]
    workers = [WorkerProcess.with_free_ports(settings, log_path=tmp_path / f"w{i}.log")
               for i in range(3)]
    analyst = Analyst(settings.history_path)
    try:
        workers[0].start()
        workers[1].start()
        analyst.start()

        def produce() -> None:
            with Emitter(settings, batch_events=250) as em:
                for i in range(0, N, 500):  # ~2,500 events/s for ~40 s: the third worker
                    for e in evs[i:i + 500]:  # joins while events still flow
                        em.emit(e)
                    time.sleep(0.2)  # pacing the producer, not synchronising the test
                assert em.flush(120)
                assert em.stats().acked == N

        producer = threading.Thread(target=produce)
        producer.start()
        asyncio.run(produce_raw(settings, [orjson.dumps(bad[i:i + 20])
                                           for i in range(0, BAD, 20)]))

        wait_until(lambda: analyst.seen()[0] >= N // 4, 120, "a quarter of the events")
        workers[0].kill()  # kill -9 mid-stream: its partitions move once its session times out
        workers[2].start()  # a third worker joins, and takes partitions over
        workers[2].wait_for(lambda m: m.get("agentflux_records_total", 0) > 0, 90,
                            "the third worker to land records")
        wait_until(lambda: analyst.seen()[0] >= N // 2, 120, "half of the events")
        # the command line reads the history while the workers write it
        sql = subprocess.run([sys.executable, "-m", "agentflux.cli", "sql", "--history",
                              settings.history_path, "SELECT count(*) >= 50000 AS ok FROM events"],
                             capture_output=True, text=True, timeout=60, env={"COLUMNS": "80"})
        assert sql.returncode == 0 and "true" in sql.stdout, sql.stdout + sql.stderr
        workers[0].start()  # the killed one restarts
        wait_until(lambda: analyst.seen()[0] >= N * 2 // 3, 120, "two thirds of the events")
        assert workers[2].stop() == 0  # the third leaves: its partitions move to the others
        producer.join(180)
        assert not producer.is_alive()
        wait_until(lambda: analyst.seen() == (N, BAD), 180,
                   f"{N} events and {BAD} dead letters in the history")
        # the compactor bounds the files per partition and day, without a reader noticing
        h = History(settings.history_path)

        def most_files() -> int:  # segments a reader reads, per partition and day
            per: dict = {}
            for s, _ in h.visible("events"):
                per[(s.day, s.partition)] = per.get((s.day, s.partition), 0) + 1
            return max(per.values())
        wait_until(lambda: most_files() <= settings.compact_min_files, 90,
                   "the compactor to merge each partition's segments")
        queries = analyst.queries
        wait_until(lambda: analyst.queries >= queries + 5, 30, "more queries of the final state")
        # every KPI window (all dimensions, every measure) equals the offline oracle: the killed
        # worker's open windows were restored from the state landed with its offsets, and no
        # window was counted twice across the kill, the joins and the leave
        want = oracle(evs, int(settings.window_s * 1e9))
        problems: list[str] = []

        def kpis_match() -> bool:
            con = connect(settings.history_path)
            try:
                problems[:] = compare(merged_from_history(con), want)
            finally:
                con.close()
            return not problems
        try:
            wait_until(kpis_match, 120, "the KPI windows to equal the oracle")
        except Exception:
            raise AssertionError("\n".join(problems[:20])) from None
    finally:
        analyst.stop.set()
        analyst.join(30)
        codes = [w.stop() for w in workers]
    assert codes[:2] == [0, 0]
    assert analyst.problems == []
    assert analyst.queries > 20
    con = connect(settings.history_path)
    try:
        assert con.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone() == (N, N)
        assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM deadletters "
                           "WHERE reason = 'unknown_type'").fetchone() == (BAD, BAD)
        # valid + dead-lettered = sent
        assert sorted(r[0] for r in con.execute("SELECT id FROM events").fetchall()) == sorted(
            e["id"] for e in evs)
    finally:
        con.close()
    assert History(settings.history_path).count("events") == N
