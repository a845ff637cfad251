"""`agentflux replay` rebuilds a history from Kafka into a new root, from the beginning or from
a time, without publishing anything again."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time

import orjson

from agentflux.harness import WorkerProcess, settings_env, wait_until
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.sinks.catalog import connect

from .kafka_helpers import produce_raw

EVENTS_ROWS = 'agentflux_history_rows{table="events"}'


def count(root, sql):
    con = connect(root)
    try:
        return con.execute(sql).fetchone()
    finally:
        con.close()


def test_replay_rebuilds_a_history_from_the_beginning_or_from_a_time(settings, tmp_path):
    past = time.time_ns() - 3600 * 10**9  # closed windows: KPI rows are published at once
    evs = list(SyntheticRuntime(SimConfig(events=3000, seed=5, start_ns=past)).events())
    first, second = evs[:2000], evs[2000:]
    bad = [{**evs[0], "id": evs[0]["id"][:-4] + "dead", "type": "telepathy.call"}]
    asyncio.run(produce_raw(settings, [orjson.dumps(first[i:i + 100])
                                       for i in range(0, 2000, 100)] + [orjson.dumps(bad)]))
    # the cut: a millisecond after every record of the first half and before any of the second.
    # Record times are wall-clock milliseconds and a replay takes the cut's whole millisecond,
    # so a cut read from the clock at once could share the millisecond of the last records
    # (seen: they were replayed too)
    sent_ms = time.time_ns() // 10**6  # every record of the first half is stamped at or before
    cut = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=sent_ms + 2)
    wait_until(lambda: time.time_ns() // 10**6 > sent_ms + 7, 5, "the clock to pass the cut")
    asyncio.run(produce_raw(settings, [orjson.dumps(second[i:i + 100])
                                       for i in range(0, 1000, 100)]))
    live = WorkerProcess(settings, log_path=tmp_path / "live.log").start()
    try:
        live.wait_for(lambda m: m.get(EVENTS_ROWS, 0) == 3000
                      and m.get("agentflux_open_windows", 1) == 0
                      and m.get('agentflux_history_rows{table="kpis"}', -1)
                      == m.get("agentflux_kpi_windows_total", -2), 90, "the live history")
    finally:
        assert live.stop() == 0
    kpi_rows = count(settings.history_path, "SELECT count(*) FROM kpis")[0]
    assert kpi_rows > 0

    env = {**os.environ, **settings_env(settings)}
    full = tmp_path / "rebuilt"
    run = subprocess.run([sys.executable, "-m", "agentflux.cli", "replay", "--from-beginning",
                          "--history", str(full)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert count(full, "SELECT count(*), count(DISTINCT id) FROM events") == (3000, 3000)
    assert count(full, "SELECT count(*) FROM deadletters") == (1,)
    # the KPI topic's rows are replayed, and the replay published no new ones
    assert count(full, "SELECT count(*) FROM kpis") == (kpi_rows,)
    assert count(full, "SELECT sum(count) FROM kpi_timing") == \
        count(settings.history_path, "SELECT sum(count) FROM kpi_timing")

    partial = tmp_path / "since"
    run = subprocess.run([sys.executable, "-m", "agentflux.cli", "replay", "--from-time",
                          cut.isoformat(), "--history", str(partial)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert (f"from {cut.isoformat(timespec='milliseconds')}: 10 of 31 records of "
            f"{settings.topics.events}") in " ".join(run.stdout.split()), run.stdout
    got = {r[0] for r in connect(partial).execute("SELECT id FROM events").fetchall()}
    assert got == {e["id"] for e in second}
    # the bad record was sent before the cut: its dead letter is not replayed
    assert count(partial, "SELECT count(*) FROM deadletters") == (0,)

    again = subprocess.run([sys.executable, "-m", "agentflux.cli", "replay", "--from-beginning",
                            "--history", str(full)], env=env, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 2 and "not empty" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
