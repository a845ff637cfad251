"""The profile's bucket rules on hand-written py-spy stacks (collapsed format, outermost frame
first, the thread first), and the rebuilding of stacks from py-spy's chrometrace."""

from pathlib import Path

import pytest

from agentflux.bench.profile import (BUCKETS, GROUPS, Breakdown, classify, drain_window,
                                     end_dead_threads, parse_collapsed, split_cpu,
                                     trace_intervals)

SITE = "/venv/lib/python3.11/site-packages"
LIB = "/usr/lib/python3.11"
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LOOP = (f"BaseEventLoop.run_forever ({LIB}/asyncio/base_events.py:607);"
        f"BaseEventLoop._run_once ({LIB}/asyncio/base_events.py:1922);"
        f"Handle._run ({LIB}/asyncio/events.py:80)")
AGENT = f"{LOOP};Agent._execute_actor ({SITE}/faust/agents/agent.py:698)"
EXECUTOR = (f"Thread._bootstrap_inner ({LIB}/threading.py:1045);"
            f"Thread.run ({LIB}/threading.py:982);_worker ({LIB}/concurrent/futures/thread.py:83)")
ARROW = f"array ({SITE}/pyarrow/lib.cpython-311-x86_64-linux-gnu.so)"
LANDING = (f"{EXECUTOR};write_in_order.<locals>.<lambda> (/repo/agents/history.py:160);"
           "write_in_order.<locals>.<lambda>.<locals>.<listcomp> (/repo/agents/history.py:160);"
           "ParquetSink.write (/repo/sinks/sink.py:112)")
PARQUET_WRITE = (f"write_table ({SITE}/pyarrow/parquet/core.py:1900);"
                 f"ParquetWriter.write_table ({SITE}/pyarrow/parquet/core.py:1110)")
LIBPARQUET = f"{SITE}/pyarrow/libparquet.so.2600"
NUMPY = f"{SITE}/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so"


def frames(line: str) -> list[str]:
    return line.split(";")


@pytest.mark.parametrize("stack, bucket", [
    # old hot path: per-event validation and span extraction under Faust's agent
    (f"{AGENT};land (/repo/agents/history.py:170);decode_record (/repo/streams/codec.py:140);"
     "check (/repo/schemas/validate.py:115);_check_fields (/repo/schemas/validate.py:80)",
     "validation"),
    (f"{AGENT};land (/repo/agents/history.py:172);DecodedBatch.spans (/repo/streams/codec.py:42);"
     "DecodedBatch.spans.<locals>.<listcomp> (/repo/streams/codec.py:42);"
     "span_of (/repo/streams/fields.py:55)", "span extraction"),
    # orjson's native frames are JSON decode even inside the codec's loop
    (f"{AGENT};decode_record (/repo/streams/codec.py:130);"
     f"0x7f00 ({SITE}/orjson/orjson.cpython-311-x86_64-linux-gnu.so)", "JSON decode"),
    # new hot path: msgspec's typed decode is validation; Arrow under span columns is spans
    (f"{AGENT};decode_record (/repo/streams/codec.py:120);"
     "decode_fast (/repo/schemas/structs.py:116);"
     f"Decoder_decode ({SITE}/msgspec/_core.cpython-311-x86_64-linux-gnu.so)", "validation"),
    (f"{AGENT};Kpis.add (/repo/agents/kpis.py:30);"
     f"EventFrame.spans (/repo/streams/frame.py:185);str_array (/repo/streams/frame.py:63);{ARROW}",
     "span extraction"),
    (f"{AGENT};EventHistory.land (/repo/agents/history.py:195);"
     f"EventFrame.table (/repo/streams/frame.py:210);str_array (/repo/streams/frame.py:63);{ARROW}",
     "Arrow building"),
    # the sink batching a partition's rows on the event loop is Arrow work, not a segment write
    (f"{AGENT};EventHistory.add (/repo/agents/history.py:245);"
     "BatchingSink.add (/repo/sinks/sink.py:62);Table.rows (/repo/sinks/tables.py:30);"
     f"Table.select ({SITE}/pyarrow/table.pxi:1500)", "Arrow building"),
    (f"{AGENT};KpiHistory.land (/repo/agents/history.py:330);kpi_row (/repo/sinks/tables.py:100);"
     f"0x7f01 ({SITE}/orjson/orjson.cpython-311-x86_64-linux-gnu.so)", "Arrow building"),
    # the history's executor: writing a segment (Parquet encoding and compression, the fsync),
    # and waiting inside it
    (f"{LANDING};History.write_segment (/repo/sinks/history.py:170);"
     f"History._publish (/repo/sinks/history.py:190);{PARQUET_WRITE};"
     f"parquet::arrow::FileWriterImpl::WriteColumnChunk ({LIBPARQUET});"
     f"ZSTD_compressStream2 ({SITE}/pyarrow/libarrow.so.2600)", "Parquet segment writes"),
    (f"{LANDING};History.write_segment (/repo/sinks/history.py:170);"
     f"History._publish (/repo/sinks/history.py:194);fsync ({LIBC})", "Parquet segment writes"),
    (f"{LANDING};History.write_segment (/repo/sinks/history.py:170);"
     f"History._publish (/repo/sinks/history.py:190);{PARQUET_WRITE};"
     f"0x7f02 ({LIBPARQUET});pthread_cond_timedwait ({LIBC})", "idle / waiting"),
    # the compactor on the upkeep executor, and Parquet's own frames wherever they run
    (f"{EXECUTOR};History.compact (/repo/sinks/history.py:320);"
     f"History._read (/repo/sinks/history.py:225);read_table ({SITE}/pyarrow/parquet/core.py:1800)",
     "Parquet segment writes"),
    (f"thread_run (libpython3.11.so.1.0);parquet::arrow::FileWriter::WriteTable ({LIBPARQUET})",
     "Parquet segment writes"),
    (f"{EXECUTOR};_queue_SimpleQueue_get_impl (libpython3.11.so.1.0);"
     f"PyThread_acquire_lock_timed (libpython3.11.so.1.0);0x7f03 ({LIBC})", "idle / waiting"),
    (f"{LOOP};EpollSelector.select ({LIB}/selectors.py:468);epoll_wait ({LIBC})", "idle / waiting"),
    # waiting for the GIL is not work, wherever it happens
    (f"{AGENT};land (/repo/agents/history.py:170);take_gil (libpython3.11.so.1.0)",
     "idle / waiting"),
    (f"{AGENT};land (/repo/agents/history.py:170);gc_collect_main (libpython3.11.so.1.0);"
     "visit_decref (libpython3.11.so.1.0)", "garbage collection"),
    (f"{AGENT};Kpis.add (/repo/agents/kpis.py:30);TumblingWindows.add_frame "
     "(/repo/streams/windows.py:160);DDSketch.add_many (/repo/schemas/sketch.py:60)",
     "windows and sketches"),
    (f"{AGENT};Kpis.add (/repo/agents/kpis.py:30);PipelineMetrics.observe_many "
     f"(/repo/sinks/prometheus.py:120);Histogram.observe ({SITE}/prometheus_client/metrics.py:600)",
     "Prometheus updates"),
    (f"{LOOP};Fetcher._fetch_requests_routine ({SITE}/aiokafka/consumer/fetcher.py:440)",
     "Kafka fetch and record decoding"),
    (f"{LOOP};_SelectorSocketTransport._read_ready ({LIB}/asyncio/selector_events.py:862);"
     "sock_recv_impl (libpython3.11.so.1.0)", "Kafka fetch and record decoding"),
    (f"{AGENT};take_bounded (/repo/streams/batching.py:40)", "Faust stream and take() machinery"),
    (f"{LOOP};Stream._py_aiter ({SITE}/faust/streams.py:1100)",
     "Faust stream and take() machinery"),
    # agentflux code with no bucket of its own is "other", not the Faust frames that called it
    (f"{AGENT};EventHistory.deduplicate (/repo/agents/history.py:166);"
     "_Partition.add (/repo/streams/dedup.py:60)", "other"),
    (f"{AGENT};EventHistory.deduplicate (/repo/agents/history.py:166);"
     f"array_zeros ({NUMPY})", "other"),
    # an installed (not editable) agentflux is recognised too
    (f"{AGENT};check ({SITE}/agentflux/schemas/validate.py:115)", "validation"),
    ("thread_run (libpython3.11.so.1.0);0x7f04 (libfoo.so)", "other"),
])
def test_each_sample_lands_in_the_bucket_of_its_innermost_claimed_frame(stack, bucket):
    assert classify(frames(stack)) == bucket


def test_source_lines_split_msgspecs_raw_pass_from_its_typed_decode(tmp_path: Path):
    src = tmp_path / "schemas" / "structs.py"
    src.parent.mkdir()
    src.write_text("def decode_fast(body):\n"
                   "    events = _typed_many.decode(body)\n"
                   "    return events, [r.attrs for r in _raw_many.decode(body)]\n")
    native = f"Decoder_decode ({SITE}/msgspec/_core.cpython-311-x86_64-linux-gnu.so)"
    assert classify([f"decode_fast ({src}:2)", native]) == "validation"
    assert classify([f"decode_fast ({src}:3)", native]) == "JSON decode"


def test_breakdown_groups_threads_and_counts_microseconds_per_event():
    lines = [
        f"thread (100): MainThread;{AGENT};check (/repo/schemas/validate.py:115) 30",
        f"thread (100);{LOOP};EpollSelector.select ({LIB}/selectors.py:468) 10",  # not named yet
        f"thread (101): agentflux-history_0;{LANDING} 20",
        f"thread (102): Thread-3;WorkerThread.run ({SITE}/mode/threads.py:62);"
        f"Fetcher.fetched_records ({SITE}/aiokafka/consumer/fetcher.py:1100) 5",
        # an executor thread not named in its samples: its history calls place it
        f"thread (103);{EXECUTOR};History.compact (/repo/sinks/history.py:320) 4",
        f"thread (104): Thread-1 (serve_forever);MetricsHandler.do_GET "
        f"({SITE}/prometheus_client/exposition.py:300) 2",
    ]
    samples = parse_collapsed(f"{line}\n" for line in lines)
    bd = Breakdown.of({stack: n / 100 for stack, n in samples.items()})  # 100 Hz
    assert {t: bd.threads[t].group for t in bd.threads} == {
        "100": "main event loop", "101": "history threads", "102": "Faust consumer thread",
        "103": "history threads", "104": "other threads"}
    # the kernel's CPU per thread: 100 and 101 read; 102-104 came and went between readings
    # and share what the process used beyond its threads' readings; threads py-spy could not
    # sample (jemalloc's) are "other"
    cpu = bd.cpu({"100": 0.15, "101": 0.2}, unaccounted=0.022,
                 unsampled={("other", "other threads"): 0.05})
    assert cpu[("Kafka fetch and record decoding", "Faust consumer thread")] == pytest.approx(0.01)
    assert cpu[("Parquet segment writes", "history threads")] == pytest.approx(0.208)
    assert cpu[("Prometheus updates", "other threads")] == pytest.approx(0.004)
    assert cpu[("other", "other threads")] == pytest.approx(0.05)
    assert cpu[("idle / waiting", "main event loop")] == 0.0
    r = bd.report(events=1000, rate=100, cpu=cpu)
    assert list(r["buckets"]) == list(BUCKETS)
    assert all(list(row) == [*GROUPS, "total"] for row in r["buckets"].values())
    v = r["buckets"]["validation"]
    assert v["main event loop"]["samples"] == 30
    assert v["main event loop"]["sampled_us_per_event"] == pytest.approx(300.0)  # 0.3 s / 1000
    assert v["main event loop"]["busy_share"] == 1.0
    assert v["main event loop"]["cpu_us_per_event"] == pytest.approx(150.0)  # the kernel's 0.15 s
    assert v["main event loop"]["share"] == 0.75  # of the thread's 40 samples
    seg = r["buckets"]["Parquet segment writes"]["history threads"]
    assert seg["samples"] == 24 and seg["sampled_us_per_event"] == pytest.approx(240.0)
    assert r["buckets"]["idle / waiting"]["total"]["cpu_us_per_event"] is None
    assert r["buckets"]["Prometheus updates"]["other threads"]["samples"] == 2
    assert r["busy"]["total"]["samples"] == 61


def test_threads_py_spy_cannot_sample_are_other_from_the_kernels_figures():
    sampled, unsampled, listing = split_cpu({100: 1.5, 105: 0.25, 106: 0.05}, ["100"],
                                            {100: "python3", 105: "jemalloc_bg_thd"})
    assert sampled == {"100": 1.5}
    assert unsampled == {("other", "other threads"): pytest.approx(0.3)}
    assert [(t["tid"], t["comm"], t["counted_as"]) for t in listing] == [
        (105, "jemalloc_bg_thd", ["other", "other threads"]),
        (106, "", ["other", "other threads"])]


def _trace(tid: int, ts: int, pops: int, pushes: list[str]) -> list[dict]:
    return ([{"ph": "E", "tid": tid, "ts": ts, "name": "", "args": {}}] * pops
            + [{"ph": "B", "tid": tid, "ts": ts, "name": name,
                "args": {"filename": path, "line": line}} for name, path, line in
               (p.split("|") for p in pushes)])


def test_chrometrace_becomes_timed_stacks_and_the_drain_window():
    main = "thread (100): MainThread||0"
    loop = f"_run_once|{LIB}/asyncio/base_events.py|1922"
    events = [
        *_trace(0, 0, 0, [main, loop, f"select|{LIB}/selectors.py|468"]),
        *_trace(0, 100_000, 1, ["decode_record|/repo/streams/codec.py|120"]),
        *_trace(0, 300_000, 1, ["EventFrame.table|/repo/streams/frame.py|204"]),
        *_trace(0, 400_000, 1, [f"select|{LIB}/selectors.py|468"]),
        *_trace(0, 900_000, 3, []),
        # the executor writes 0.40-0.60 s: the end of the drain
        *_trace(1, 50_000, 0, ["thread (101): agentflux-history_0||0",
                               f"_worker|{LIB}/concurrent/futures/thread.py|83"]),
        *_trace(1, 400_000, 0, ["ParquetSink.write|/repo/sinks/sink.py|112"]),
        *_trace(1, 600_000, 1, []),
        *_trace(1, 700_000, 0, ["ParquetSink.write|/repo/sinks/sink.py|112"]),  # KPI rows, later
        *_trace(1, 710_000, 1, []),
        *_trace(1, 900_000, 2, []),
        # the compactor merges segments 0.35-0.50 s: writing segments, but not landing any
        *_trace(3, 50_000, 0, ["thread (103): agentflux-upkeep_0||0",
                               f"_worker|{LIB}/concurrent/futures/thread.py|83"]),
        *_trace(3, 350_000, 0, ["History.compact|/repo/sinks/history.py|320",
                                "History.write_segment|/repo/sinks/history.py|170"]),
        *_trace(3, 500_000, 2, []),
        *_trace(3, 900_000, 2, []),
        # a /metrics request thread that exited at 0.25 s; the trace keeps it until the end
        *_trace(2, 200_000, 0, ["thread (102): Thread-6||0",
                                f"handle|{LIB}/wsgiref/simple_server.py|130"]),
        *_trace(2, 900_000, 2, []),
    ]
    ivs = trace_intervals(events)
    assert (0, 0.1, 0.3, ("thread (100): MainThread",
                          f"_run_once ({LIB}/asyncio/base_events.py:1922)",
                          "decode_record (/repo/streams/codec.py:120)")) in ivs
    assert drain_window(ivs) == pytest.approx((0.1, 0.6))
    ivs = end_dead_threads(ivs, alive={100, 101, 103}, period_s=0.01)
    dead = [iv for iv in ivs if iv[3][0].startswith("thread (102)")]
    assert [(a, b) for _, a, b, _ in dead] == [(0.2, pytest.approx(0.21))]


def test_the_drain_ends_with_the_write_queued_behind_the_one_in_flight():
    main = "thread (100): MainThread||0"
    writer = ["thread (101): agentflux-history_0||0",
              f"_worker|{LIB}/concurrent/futures/thread.py|83"]
    events = [
        *_trace(0, 0, 0, [main, "decode_record|/repo/streams/codec.py|120"]),
        *_trace(0, 300_000, 1, ["EventFrame.table|/repo/streams/frame.py|204"]),  # the last one
        *_trace(0, 400_000, 1, [f"select|{LIB}/selectors.py|468"]),
        *_trace(0, 900_000, 2, []),
        # the previous batch lands 0.25-0.45 s, the last one right behind it until 0.6 s
        *_trace(1, 0, 0, writer),
        *_trace(1, 250_000, 0, ["ParquetSink.write|/repo/sinks/sink.py|112"]),
        *_trace(1, 450_000, 1, ["ParquetSink.write|/repo/sinks/sink.py|113"]),
        *_trace(1, 600_000, 1, []),
        *_trace(1, 700_000, 0, ["ParquetSink.write|/repo/sinks/sink.py|112"]),  # KPI rows, later
        *_trace(1, 710_000, 1, []),
        *_trace(1, 900_000, 2, []),
    ]
    assert drain_window(trace_intervals(events)) == pytest.approx((0.0, 0.6))
