"""The history past one machine: the same layout on an S3-compatible object store (moto's server,
started by the test on 127.0.0.1), written by History and by real workers, and read back through
pyarrow (:meth:`History.read`) and DuckDB (:func:`connect`). Nothing here goes past localhost;
if the server cannot start, the test fails (it never skips)."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import Counter

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from agentflux.harness import WorkerProcess
from agentflux.localkafka import free_port
from agentflux.runtime.emitter import Emitter
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.sinks.catalog import connect
from agentflux.sinks.history import History, log_id, with_floors
from agentflux.sinks.tables import DEADLETTERS, EVENTS
from tests.unit.test_history import rows

LOG = log_id("cluster-s3", "topic-s3")
EVENTS_ROWS = 'agentflux_history_rows{table="events"}'
# dummy credentials: moto accepts any; set so that no real profile, token or instance metadata
# is looked up (the SDK would otherwise try ~/.aws and the EC2 metadata endpoint)
AWS_ENV = {"AWS_ACCESS_KEY_ID": "agentflux-test", "AWS_SECRET_ACCESS_KEY": "agentflux-test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
AWS_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
             "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


@pytest.fixture(scope="module")
def s3_endpoint() -> str:
    """moto's S3-compatible server on 127.0.0.1 (a free port), for this module."""
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request
    errors = []
    for _ in range(3):  # a free port can be taken between its choice and the bind
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        # start() waits for the bind forever if the bind fails: wait in a thread instead
        starter = threading.Thread(target=server.start, daemon=True)
        starter.start()
        starter.join(30)
        if not starter.is_alive():
            break
        errors.append(f"127.0.0.1:{port}: not listening after 30 s")
    else:
        pytest.fail("cannot start the local S3-compatible server (moto[server], "
                    f"ThreadedMotoServer): {'; '.join(errors)}", pytrace=False)
    yield f"127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_root(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on the local server, and the history root in it as a pyarrow URI."""
    for k in AWS_UNSET:
        monkeypatch.delenv(k, raising=False)
    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    bucket = f"agentflux-{uuid.uuid4().hex[:12]}"
    admin = pafs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http",
                              region="us-east-1", allow_bucket_creation=True)
    try:
        admin.create_dir(bucket)
    except OSError as exc:
        pytest.fail(f"the local S3 server at {s3_endpoint} does not answer: {exc}",
                    pytrace=False)
    return f"s3://{bucket}/history?endpoint_override={s3_endpoint}&scheme=http"


def seg(h, first, last, partition=0, tag="x", day=None):
    return h.write_segment(EVENTS, rows(range(first, last + 1), partition, tag), log=LOG,
                           partition=partition, first=first, last=last, day=day)


def ids_via_duckdb(root: str) -> tuple[int, int, list[str]]:
    """Rows, distinct ids and the ids of ``events`` through DuckDB; the analyst views on top
    (``spans``: events with a duration) agree with what pyarrow reads."""
    con = connect(root)
    try:
        n, distinct = con.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone()
        ids = sorted(r[0] for r in con.execute("SELECT id FROM events").fetchall())
        spans = con.execute("SELECT count(*) FROM spans").fetchone()[0]
    finally:
        con.close()
    durations = History(root).read("events", ["duration_ms"]).column("duration_ms")
    assert spans == len(durations) - durations.null_count
    return n, distinct, ids


def test_the_layout_on_an_object_store_reads_back_exactly_once(s3_root):
    h = History(s3_root)
    assert h.object_store and not h.local
    h.init()
    now = time.time()
    old = time.strftime("%Y-%m-%d", time.gmtime(now - 40 * 86400))
    want: set[str] = set()
    # partition 0: twenty small segments (a compaction's input)
    for i in range(20):
        seg(h, i * 10, i * 10 + 9, partition=0)
    want |= {f"p0-o{o}" for o in range(200)}
    # partition 1: a new owner's segments and a previous owner's late one over both
    seg(h, 0, 99, partition=1, tag="b")
    seg(h, 100, 249, partition=1, tag="b")
    seg(h, 250, 400, partition=1, tag="b")
    seg(h, 100, 260, partition=1, tag="a")
    want |= {f"p1-o{o}" for o in range(401)}
    # partition 2: a day past the retention window, and today
    seg(h, 0, 49, partition=2, day=old)
    h.write_segment(DEADLETTERS, DEADLETTERS.empty(), log=LOG, partition=2, first=0, last=49,
                    day=old)
    seg(h, 50, 99, partition=2)
    want |= {f"p2-o{o}" for o in range(100)}

    # listed from the bucket, parsed from the keys
    segs = h.segments("events")
    assert len(segs) == 26
    assert all(s.path.startswith(h.base + "/events/day=") and s.mtime > now - 60 for s in segs)
    assert h.landed_offsets("events", LOG) == {0: 199, 1: 400, 2: 99}
    assert h.landed_offsets("events", log_id("cluster-s3", "other-topic")).get(0, -1) == -1
    # read back exactly once, through pyarrow and through DuckDB
    assert sorted(h.read("events", ["id"]).column("id").to_pylist()) == sorted(want)
    assert h.count("events") == len(want)
    assert ids_via_duckdb(s3_root) == (len(want), len(want), sorted(want))

    # compaction with a grace period: merged and sources side by side, nothing shown twice
    stats = h.compact(EVENTS, partitions=[0], min_files=16, target_rows=1000, grace_s=60)
    t1 = time.time()  # the merged segment's mtime (the server's clock) is not after this
    assert stats == {"written": 1, "merged": 20, "deleted": 0}
    assert len(h.segments("events", partitions=[0])) == 21
    assert ids_via_duckdb(s3_root)[:2] == (len(want), len(want))
    assert h.compact(EVENTS, partitions=[0], min_files=16, grace_s=60, now=t1 + 30) == \
        {"written": 0, "merged": 0, "deleted": 0}
    assert h.compact(EVENTS, partitions=[0], min_files=16, grace_s=60, now=t1 + 61) == \
        {"written": 0, "merged": 0, "deleted": 20}
    assert [(s.first, s.last) for s in h.segments("events", partitions=[0])] == [(0, 199)]
    # the late overlapping segment compacts into one segment, each offset once
    h.compact(EVENTS, partitions=[1], min_files=2, target_rows=10_000, grace_s=0)
    h.compact(EVENTS, partitions=[1], min_files=2, grace_s=0, now=time.time() + 2)
    assert [(s.first, s.last) for s in h.segments("events", partitions=[1])] == [(0, 400)]
    assert sorted(h.read("events", ["id"]).column("id").to_pylist()) == sorted(want)
    assert h.landed_offsets("events", LOG) == {0: 199, 1: 400, 2: 99}

    # retention deletes the old day of every table (every key under it), nothing else
    gone = h.apply_retention(30, now=now)
    assert sorted(g.rsplit("/", 2)[-2] for g in gone) == ["deadletters", "events"]
    assert all(g.endswith(f"/day={old}") for g in gone)
    for g in gone:
        assert h.fs.get_file_info(pafs.FileSelector(g, recursive=True, allow_not_found=True)) \
            == []
    want -= {f"p2-o{o}" for o in range(50)}
    assert h.count("events") == len(want) == 651
    assert ids_via_duckdb(s3_root) == (len(want), len(want), sorted(want))
    assert h.landed_offsets("events", LOG) == {0: 199, 1: 400, 2: 99}
    assert h.read("deadletters").num_rows == 0


def test_a_failed_write_publishes_no_object(s3_root):
    """Closing an S3 output stream completes the upload: a failure while encoding must not
    leave a segment (truncated or empty) under its final name (a reader would fail on it, and a
    worker would resume past offsets that never landed). The failure is real: pyarrow cannot
    write a union column to Parquet."""
    h = History(s3_root)
    h.init()
    union = pa.UnionArray.from_dense(pa.array([0, 1], pa.int8()), pa.array([0, 0], pa.int32()),
                                     [pa.array([1]), pa.array(["a"])])
    unwritable = pa.table({"kafka_offset": pa.array([0, 1], pa.int64()), "u": union})
    with pytest.raises(pa.ArrowNotImplementedError, match="Parquet"):
        h.write_segment(EVENTS, unwritable, log=LOG, partition=0, first=0, last=9)
    assert h.segments("events") == []
    assert h.landed_offsets("events", LOG) == {}
    assert ids_via_duckdb(s3_root) == (0, 0, [])
    seg(h, 0, 9)
    assert h.count("events") == 10


def test_a_missing_history_in_a_bucket_is_an_error_not_an_empty_one(s3_root):
    with pytest.raises(FileNotFoundError, match="no history"):
        connect(s3_root.replace("/history?", "/nothing-here?"))


def compacted(h: History, min_files: int) -> bool:
    floors = with_floors(h.segments("events"))
    visible = Counter(s.partition for s, floor in floors if floor < s.last)
    return bool(visible) and sum(visible.values()) == len(floors) \
        and max(visible.values()) < min_files


def test_workers_land_every_event_once_in_a_bucket_through_a_kill_9(settings, s3_root,
                                                                     tmp_path):
    n = 20_000
    settings = settings.replace(history_path=s3_root, compact_interval_s=2.0,
                                compact_min_files=2, compact_grace_s=1.0)
    env = {k: os.environ[k] for k in AWS_ENV}
    worker = WorkerProcess(settings, log_path=tmp_path / "worker.log", extra_env=env)
    evs = list(SyntheticRuntime(SimConfig(events=n, agents=10, seed=31,
                                          start_ns=time.time_ns())).events())
    produced = threading.Event()
    failures: list[BaseException] = []

    def produce():
        try:
            with Emitter(settings, batch_events=200) as em:
                for i in range(0, n, 500):  # ~5 s of steady traffic
                    for e in evs[i:i + 500]:
                        em.emit(e)
                    time.sleep(0.12)  # pacing the producer, not synchronising the test
                assert em.flush(60) and em.stats().acked == n
            produced.set()
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    try:
        worker.start()
        t = threading.Thread(target=produce, daemon=True)
        t.start()
        worker.wait_for(lambda m: m.get(EVENTS_ROWS, 0) >= n // 5, 60, "a fifth of the events")
        at_kill = worker.metrics()[EVENTS_ROWS]
        worker.kill()
        worker.start()  # resumes from the segments in the bucket
        t.join(120)
        assert not failures, failures
        assert produced.is_set(), "the producer did not finish in 120 s"
        worker.wait_for(lambda m: m.get(EVENTS_ROWS, 0) >= n, 120, f"{n} events after the restart")
        # each partition landed in segments before the kill and after it: the worker's
        # compactor merges them in the bucket (one per partition) and deletes the sources
        worker.wait_for(lambda m: compacted(History(s3_root), settings.compact_min_files), 60,
                        "the compactor to merge the segments and delete what they hide")
        assert worker.stop() == 0
    finally:
        worker.stop()
    assert at_kill < n  # the kill really was mid-stream

    h = History(s3_root)
    ids = h.read("events", ["id"]).column("id").to_pylist()
    assert (len(ids), len(set(ids))) == (n, n)
    assert set(ids) == {e["id"] for e in evs}
    assert h.count("events") == n
    n_duck, distinct, _ = ids_via_duckdb(s3_root)
    assert (n_duck, distinct) == (n, n)
    # one segment per partition from offset 0: what landed before and after the kill, merged
    segs = h.segments("events")
    assert sorted((s.partition, s.first) for s in segs) == [
        (p, 0) for p in range(settings.topics.events_partitions)]
    assert not (tmp_path / "history").exists()  # the settings fixture's local root: unused
