"""The Parquet history without a broker: layout, visibility, compaction, retention, catalog."""

from __future__ import annotations

import os
import random
import time

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agentflux.sinks.catalog import CATALOG_FILE, connect, write_catalog
from agentflux.sinks.history import History, log_id, with_floors
from agentflux.sinks.sink import ParquetSink
from agentflux.sinks.tables import DEADLETTERS, EVENTS, KPIS

LOG = log_id("cluster-a", "topic-1")


def rows(offsets, partition=0, tag="x"):
    """Event rows, one per offset, with an id that names the offset (and who wrote it)."""
    offsets = list(offsets)
    n = len(offsets)
    return pa.table({
        "id": [f"p{partition}-o{o}" for o in offsets], "type": ["tool.call"] * n,
        "v": pa.array([1] * n, pa.int32()),
        "ts": pa.array([time.time_ns()] * n, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
        "ts_ns": pa.array([1] * n, pa.int64()), "agent_id": [tag] * n, "session_id": ["s"] * n,
        "philosophy": ["react"] * n, "source_runtime": ["r"] * n, "source_host": ["h"] * n,
        "source_pid": pa.array([1] * n, pa.int64()), "trace_id": [None] * n,
        "span_id": [None] * n, "parent_span_id": [None] * n, "name": ["grep"] * n,
        "duration_ms": [1.0] * n, "error": [False] * n, "attrs": ["{}"] * n,
        "kafka_partition": pa.array([partition] * n, pa.int32()),
        "kafka_offset": pa.array(offsets, pa.int64()),
    }, schema=EVENTS.schema)


def seg(h, first, last, partition=0, log=LOG, tag="x", day=None):
    return h.write_segment(EVENTS, rows(range(first, last + 1), partition, tag), log=log,
                           partition=partition, first=first, last=last, day=day)


def view_ids(root) -> list[str]:
    """The ids the views show, through connect() (visible segments listed per query) and through
    the catalog file as a plain DuckDB client opens it (a glob): both must agree."""
    ids = []
    path = write_catalog(History(root))
    for con in (connect(root), duckdb.connect(str(path), read_only=True)):
        try:
            ids.append(sorted(r[0] for r in con.execute("SELECT id FROM events").fetchall()))
        finally:
            con.close()
    assert ids[0] == ids[1]
    return ids[0]


def test_views_are_valid_on_an_empty_history_and_no_process_keeps_the_catalog_open(tmp_path):
    h = History(tmp_path)
    path = write_catalog(h)
    assert path == tmp_path / CATALOG_FILE
    con = connect(tmp_path)
    for view in ("events", "spans", "deadletters", "duplicates", "kpis", "kpi_timing",
                 "llm_usage", "latency", "error_rates", "cost"):
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone()[0] in (0, 1), view
    # a reader holds the catalog open; rewriting it (a worker starting) still works, and the
    # open reader keeps answering; a second reader opens it at the same time
    write_catalog(h)
    other = duckdb.connect(str(path), read_only=True)
    seg(h, 0, 9)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 10
    assert other.execute("SELECT count(*) FROM events").fetchone()[0] == 10
    con.close()
    other.close()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_segment_is_named_by_partition_and_offset_range_and_resume_is_its_last_offset(tmp_path):
    h = History(tmp_path)
    s = seg(h, 100, 199, partition=3)
    assert os.path.basename(s.path) == f"{LOG}-p00003-{100:020d}-{199:020d}.parquet"
    assert f"/events/day={time.strftime('%Y-%m-%d', time.gmtime())}/" in s.path
    meta = pq.read_schema(s.path).metadata
    assert meta[b"agentflux.first"] == b"100" and meta[b"agentflux.log"] == LOG.encode()
    assert h.landed_offsets("events", LOG).get(3, -1) == 199
    assert h.landed_offsets("events", LOG).get(2, -1) == -1
    # another log (a recreated topic, another cluster) is another offset space
    assert h.landed_offsets("events", log_id("cluster-a", "topic-2")).get(3, -1) == -1
    seg(h, 0, 9, partition=3, log=log_id("cluster-a", "topic-2"))
    assert len(view_ids(tmp_path)) == 110  # both logs' rows, neither hides the other


def test_overlapping_segments_never_show_a_row_twice_or_lose_one(tmp_path):
    """A late segment from a previous owner overlaps what the new owner landed; a compaction
    merges segments that stay until deleted: every offset shows exactly once."""
    h = History(tmp_path)
    seg(h, 0, 99, tag="a")
    seg(h, 100, 249, tag="b")  # the new owner
    seg(h, 250, 400, tag="b")
    seg(h, 100, 260, tag="a")  # the previous owner's late segment, partly over both
    ids = view_ids(tmp_path)
    assert ids == sorted(f"p0-o{o}" for o in range(401))
    assert h.read("events", ["id"]).num_rows == 401 and h.count("events") == 401


def test_the_dedup_horizon_of_a_resuming_worker_stops_at_the_offset_it_resumes_after(tmp_path):
    """A worker resuming after offset 99 warms its horizon of recent ids from rows up to 99: a
    previous owner's late segment (100..149) holds the records it is about to read again, and
    they must land again as themselves, not as duplicates of themselves (a segment with the same
    first offset and fewer rows would hide the late one's)."""
    h = History(tmp_path)
    seg(h, 0, 99)
    seg(h, 100, 149, tag="late")
    assert h.recent_ids(LOG, 0, 1000) == [f"p0-o{o}" for o in range(149, -1, -1)]
    assert h.recent_ids(LOG, 0, 1000, upto=99) == [f"p0-o{o}" for o in range(99, -1, -1)]
    assert h.recent_ids(LOG, 0, 1000, upto=120)[:2] == ["p0-o120", "p0-o119"]
    assert h.recent_ids(LOG, 0, 5, upto=99) == [f"p0-o{o}" for o in range(99, 94, -1)]
    assert h.recent_ids(LOG, 0, 1000, upto=-1) == []


def test_the_views_and_the_python_reader_apply_the_same_rule_on_random_layouts(tmp_path):
    rnd = random.Random(7)
    for trial in range(20):
        root = tmp_path / f"t{trial}"
        h = History(root)
        write_catalog(h)
        covered = set()
        for _ in range(rnd.randint(1, 8)):
            first = rnd.randint(0, 60)
            last = first + rnd.randint(0, 40)
            seg(h, first, last, partition=rnd.randint(0, 1), tag=str(rnd.random()))
            covered |= {(p, o) for p in (0, 1) for o in range(first, last + 1)}
        segs = h.segments("events")
        want = sorted({f"p{s.partition}-o{o}" for s in segs for o in range(s.first, s.last + 1)})
        assert view_ids(root) == want
        assert sorted(h.read("events", ["id"]).column("id").to_pylist()) == want
        assert h.count("events") == len(want)


def test_compaction_bounds_files_keeps_every_row_once_and_deletes_only_after_the_grace(tmp_path):
    h = History(tmp_path)
    for i in range(20):
        seg(h, i * 10, i * 10 + 9)
    seg(h, 200, 204, partition=1)
    before = view_ids(tmp_path)
    t0 = time.time()
    stats = h.compact(EVENTS, min_files=16, target_rows=1000, grace_s=60, now=t0)
    assert stats == {"written": 1, "merged": 20, "deleted": 0}
    assert view_ids(tmp_path) == before  # merged and sources side by side: no duplicate
    assert len(h.segments("events")) == 22
    # a query that listed the sources just before still finds them until the grace has passed
    assert h.compact(EVENTS, min_files=16, grace_s=60, now=t0 + 30)["deleted"] == 0
    assert h.compact(EVENTS, min_files=16, grace_s=60, now=t0 + 61)["deleted"] == 20
    assert [(s.first, s.last) for s in sorted(h.segments("events", partitions=[0]),
                                              key=lambda s: s.first)] == [(0, 199)]
    assert view_ids(tmp_path) == before
    assert h.landed_offsets("events", LOG).get(0, -1) == 199


def test_a_query_through_connect_never_opens_a_segment_that_a_merged_one_hides(tmp_path):
    """The compactor deletes what a merged segment hides, at any moment: a query that opened
    such a segment would fail (the CI once saw it). connect()'s views list the visible segments
    when each query starts, so hidden ones are never opened: here they are made unreadable."""
    h = History(tmp_path)
    for i in range(20):
        seg(h, i * 10, i * 10 + 9)
    seg(h, 200, 209)
    before = view_ids(tmp_path)
    con = connect(tmp_path)  # open across the compaction, as a notebook is
    h.compact(EVENTS, min_files=16, target_rows=1000, grace_s=3600, settle_s=float("inf"))
    hidden = [s for s, f in with_floors(h.segments("events")) if f >= s.last]
    assert len(hidden) == 21
    for s in hidden:  # as good as deleted mid-query: opening one fails
        with open(s.path, "wb") as f:
            f.write(b"not parquet any more")
    try:
        got = sorted(r[0] for r in con.execute("SELECT id FROM events").fetchall())
        assert got == before
        seg(h, 210, 219)  # and a segment landed after connect() shows at the next query
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 220
    finally:
        con.close()


def test_compaction_rewrites_each_row_a_few_times_and_keeps_the_file_count_bounded(tmp_path):
    """A day of small segments compacted as it grows (here 10-row segments, a pass every 8):
    size tiers bound both the rewrites (merging the growing newest segment with each new
    small one rewrote every row ~30 times here) and the visible files at any moment."""
    h = History(tmp_path)
    min_files, target, size, n = 4, 5_000, 10, 640
    rewritten = 0
    known = set()
    for i in range(n):
        seg(h, i * size, i * size + size - 1)
        known.add((i * size, i * size + size - 1))
        if i % 8 == 7:
            h.compact(EVENTS, min_files=min_files, target_rows=target, grace_s=0,
                      settle_s=float("inf"), now=time.time() + 3600)
            visible = [s for s, f in with_floors(h.segments("events")) if f < s.last]
            for s in visible:
                if (s.first, s.last) not in known:
                    known.add((s.first, s.last))
                    rewritten += s.last - s.first + 1
            assert len(visible) <= 3 * min_files + 8, [(s.first, s.last) for s in visible]
    amplification = rewritten / (n * size)
    # tiers of 10, 40, 160, 640 and 2,560 rows: 2.9 rewrites per row (the previous policy: 27)
    assert 2 <= amplification <= 5, amplification
    assert view_ids(tmp_path) == sorted(f"p0-o{o}" for o in range(n * size))
    # once the partition is quiet, what the tiers left is merged whole
    h.compact(EVENTS, min_files=min_files, target_rows=target, grace_s=0, settle_s=0,
              now=time.time() + 3600)
    assert len([s for s, f in with_floors(h.segments("events")) if f < s.last]) \
        <= -(-n * size // target) + 1
    assert view_ids(tmp_path) == sorted(f"p0-o{o}" for o in range(n * size))


def test_compaction_of_a_late_overlapping_segment_keeps_each_offset_once(tmp_path):
    h = History(tmp_path)
    seg(h, 0, 99, tag="b")
    seg(h, 100, 199, tag="b")
    seg(h, 50, 150, tag="a")  # late, overlapping two
    seg(h, 200, 299, tag="b")
    h.compact(EVENTS, min_files=2, target_rows=10_000, grace_s=0, now=time.time())
    h.compact(EVENTS, min_files=2, target_rows=10_000, grace_s=0, now=time.time() + 1)
    assert view_ids(tmp_path) == sorted(f"p0-o{o}" for o in range(300))
    assert len(h.segments("events")) == 1


def test_retention_deletes_whole_days_older_than_the_window(tmp_path):
    h = History(tmp_path)
    now = time.time()
    day = lambda age: time.strftime("%Y-%m-%d", time.gmtime(now - age * 86400))
    for i, age in enumerate((0, 10, 31, 400)):
        seg(h, i * 10, i * 10 + 9, day=day(age))
    h.write_segment(DEADLETTERS, DEADLETTERS.empty(), log=LOG, partition=0, first=0, last=9,
                    day=day(400))
    gone = h.apply_retention(30, now=now)
    assert sorted(os.path.basename(g) for g in gone) == sorted(
        [f"day={day(31)}", f"day={day(400)}", f"day={day(400)}"])
    assert h.count("events") == 20
    with pytest.raises(ValueError, match="AGENTFLUX_RETENTION_DAYS"):
        h.apply_retention(0)


def test_an_interrupted_write_leaves_no_visible_file(tmp_path, monkeypatch):
    h = History(tmp_path)
    write_catalog(h)

    def boom(*a, **kw):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError, match="No space left"):
        seg(h, 0, 9)
    monkeypatch.undo()
    assert h.segments("events") == []
    assert not [f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".tmp")]
    assert view_ids(tmp_path) == []


def test_the_sink_batches_per_partition_with_offset_ranges_and_commit_segments(tmp_path):
    h = History(tmp_path)
    events = ParquetSink(EVENTS, LOG, h, empty_segments=True)
    dead = ParquetSink(DEADLETTERS, LOG, h)
    events.add(0, 10, 19, rows(range(10, 15)))
    events.add(0, 20, 29, rows(range(20, 25)))
    events.add(1, 5, 5)  # a record with no valid event: the range still lands (empty)
    dead.add(1, 5, 5)  # nothing to write: no file
    assert events.rows == 10 and bool(events)
    batches = events.take()
    assert [(b.partition, b.first, b.last, b.rows) for b in batches] == [(0, 10, 29, 10),
                                                                       (1, 5, 5, 0)]
    assert not events and dead.take() == []
    for b in batches:
        events.write(b)
    assert h.landed_offsets("events", LOG) == {0: 29, 1: 5}
    assert h.count("events") == 10


def test_kpi_rows_convert_from_the_wire_and_the_latency_view_merges_their_sketches(tmp_path):
    import numpy as np
    import orjson

    from agentflux.schemas.sketch import DDSketch
    from agentflux.sinks.tables import kpi_row

    h = History(tmp_path)
    write_catalog(h)
    rng = np.random.default_rng(3)
    merged, wire = DDSketch(), []
    for worker in range(3):  # three workers' partial rows of one window
        values = rng.lognormal(3, 1, 500)
        s = DDSketch()
        s.add_many(values)
        merged.merge(s)
        wire.append(orjson.dumps({
            "kind": "kpi", "row_id": f"row-{worker}", "worker": f"w{worker}", "dim": "name",
            "window_start_ns": 0, "window_end_ns": 10 * 10**9, "type": "tool.call",
            "name": "grep", "philosophy": "react", "revision": 0, "source_partition": worker,
            "count": 500, "errors": worker, "sketch": s.to_dict(), "p50_ms": s.quantile(0.5),
            "sums": {"cached": 10.0 * worker}, "maxes": {"cached": 1.0}}))
    # a row published twice (a crash between publishing and the next state): counted once
    wire.append(wire[1])
    table = KPIS.rows([kpi_row(v, 0, i) for i, v in enumerate(wire)])
    h.write_segment(KPIS, table, log=LOG, partition=0, first=0, last=3)
    con = connect(tmp_path)
    got = con.execute("SELECT count, errors, p50_ms, p90_ms, p95_ms, p99_ms FROM latency"
                      ).fetchall()
    assert got == [(1500, 3, *[pytest.approx(merged.quantile(q), rel=1e-12)
                               for q in (0.5, 0.9, 0.95, 0.99)])]
    # the analysts' helper reads the same merged sketch (one SQL template for both)
    from agentflux import analysis
    rows = analysis.records(analysis.latency(analysis.connect(tmp_path)))
    assert [(r["calls"], r["errors"], r["p50_ms"], r["p90_ms"], r["p95_ms"], r["p99_ms"])
            for r in rows] == got
    assert con.execute("SELECT kpi, value FROM kpi_values ORDER BY kpi").fetchall() == [
        ("error_rate", 3 / 1500)]
    assert con.execute("SELECT count, partial_rows FROM kpi_windows").fetchall() == [(1500, 3)]
    with pytest.raises((ValueError, KeyError, TypeError)):
        kpi_row(b'{"kind": "kpi"}', 0, 0)


def test_with_floors_orders_by_first_then_longest(tmp_path):
    h = History(tmp_path)
    a, b = seg(h, 0, 10), seg(h, 0, 20)
    c = seg(h, 15, 30)
    assert [(s.last, f) for s, f in with_floors([a, b, c])] == [(20, -1), (10, 20), (30, 20)]


def test_the_sink_splits_rows_of_several_partitions_by_their_partition_column(tmp_path):
    h = History(tmp_path)
    sink = ParquetSink(EVENTS, LOG, h, empty_segments=True)
    mixed = pa.concat_tables([rows(range(0, 5), partition=0), rows(range(7, 9), partition=2)])
    sink.add_ranges({0: (0, 6), 2: (7, 9), 3: (4, 4)}, mixed)
    got = [(b.partition, b.first, b.last, sorted(b.data.column("kafka_offset").to_pylist()))
           for b in sink.take()]
    assert got == [(0, 0, 6, [0, 1, 2, 3, 4]), (2, 7, 9, [7, 8]), (3, 4, 4, [])]


def test_another_pyarrow_filesystem_writes_through_a_temporary_name_and_reads_back(tmp_path):
    import pyarrow.fs as pafs

    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    h = History("root", filesystem=fs)
    assert not h.local and not h.object_store
    h.init()
    h.write_segment(EVENTS, rows(range(5)), log=LOG, partition=0, first=0, last=4)
    assert h.count("events") == 5 and h.landed_offsets("events", LOG) == {0: 4}
    assert not [f for _, _, fs_ in os.walk(tmp_path) for f in fs_ if f.endswith(".tmp")]


def test_a_moved_history_is_still_readable_through_its_views(tmp_path):
    h = History(tmp_path / "a")
    write_catalog(h)
    seg(h, 0, 9)
    os.rename(tmp_path / "a", tmp_path / "b")
    assert len(view_ids(tmp_path / "b")) == 10
