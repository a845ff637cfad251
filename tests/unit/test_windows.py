import numpy as np

from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.schemas.sketch import DDSketch
from agentflux.streams.fields import span_of
from agentflux.streams.windows import TumblingWindows

S = 10**9


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def named(rows):
    """The rows of the ``name`` dimension (every event has one; tool calls also count per
    agent)."""
    return [r for r in rows if r.dim == "name"]


def ev(ts, tool="grep", dur=10.0, status="ok", phil="react"):
    return {"id": "x" * 36, "type": "tool.call", "v": 1, "ts": ts, "philosophy": phil,
            "source": {}, "agent_id": "a", "session_id": "s",
            "attrs": {"tool": tool, "duration_ms": dur, "status": status}}


def test_events_fall_into_tumbling_windows_and_close_on_the_watermark():
    clock = Clock(13 * S)
    w = TumblingWindows(size_s=10, grace_s=2, wall_clock_ns=clock)
    w.add([ev(1 * S), ev(9 * S, status="error"), ev(11 * S, tool="ls")])
    assert w.close_due() == []  # watermark 11 s < 10 + 2
    w.add([ev(12 * S + 1, tool="ls")])
    (row,) = named(w.close_due())
    assert (row.window_start_ns, row.window_end_ns, row.name) == (0, 10 * S, "grep")
    assert (row.count, row.errors, row.revision) == (2, 1, 0)
    assert w.open_windows == 2  # (window 10 s of "ls": its name and agent keys)


def test_a_quiet_stream_closes_its_last_window_by_wall_clock():
    clock = Clock(5 * S)
    w = TumblingWindows(size_s=10, grace_s=2, wall_clock_ns=clock)
    w.add([ev(5 * S)])
    clock.t = 11 * S
    assert w.close_due() == []  # window not over yet
    clock.t = 12 * S
    assert [r.count for r in named(w.close_due())] == [1]


def test_late_events_make_a_new_revision_that_merges():
    clock = Clock(0)
    w = TumblingWindows(size_s=10, grace_s=0, wall_clock_ns=clock)
    w.add([ev(1 * S, dur=5), ev(20 * S)])
    first = named(w.close_due())
    w.add([ev(2 * S, dur=7)])  # late for [0, 10)
    w.add([ev(40 * S)])
    late = [r for r in named(w.close_due()) if r.window_start_ns == 0]
    assert [r.revision for r in first if r.window_start_ns == 0] == [0]
    assert [r.revision for r in late] == [1] and w.late_events == 1
    merged = DDSketch()
    for r in first + late:
        if r.window_start_ns == 0:
            merged.merge(r.sketch)
    assert merged.count == 2


def test_keys_are_type_name_and_philosophy_and_percentiles_match_numpy():
    evs = list(SyntheticRuntime(SimConfig(events=3000, seed=1, start_ns=0)).events())
    w = TumblingWindows(size_s=3600, grace_s=0)
    w.add(evs[:1000])
    w.add(evs[1000:])
    rows = named(w.close_due(flush_all=True))
    assert sum(r.count for r in rows) == len(evs)
    for r in rows:
        mine = [span_of(e) for e in evs
                if span_of(e)[0] == (r.type, r.name, r.philosophy)
                and r.window_start_ns <= e["ts"] < r.window_end_ns]
        assert len(mine) == r.count
        assert sum(m[2] for m in mine) == r.errors
        durs = [m[1] for m in mine if m[1] is not None]
        if durs:
            exact = np.quantile(durs, 0.99, method="lower")
            assert abs(r.sketch.quantile(0.99) - exact) <= 0.01 * exact


def test_span_of_reads_the_right_fields():
    assert span_of(ev(0, dur=12.5, status="timeout")) == (("tool.call", "grep", "react"), 12.5, True)
    cache = {"type": "cache.lookup", "philosophy": "p", "attrs": {"cache": "c", "outcome": "hit",
                                                                  "latency_ns": 2500}}
    (key, dur, err) = span_of(cache)
    assert key == ("cache.lookup", "c", "p") and abs(dur - 0.0025) < 1e-12 and not err


def test_an_event_from_the_future_does_not_move_the_watermark_past_the_allowed_skew():
    """One producer whose clock is a day fast must not close every open window at once and
    keep its own window open for a day: its time is clamped for windowing, and counted."""
    clock = Clock(95 * S)
    w = TumblingWindows(size_s=10, grace_s=2, wall_clock_ns=clock, max_future_skew_s=5)
    w.add([ev(91 * S), ev(93 * S), ev(95 * S + 86400 * S, tool="fast-clock")])
    assert w.watermark_ns == 100 * S and w.early_events == 1
    assert w.close_due() == []  # [90, 100) closes at 102 s, not at once
    # the clamped event sits in the window of wall clock + skew, not a day ahead
    assert sorted((k[0] // S, k[1][2]) for k in w.partitions[0].open_keys() if k[1][0] == "name") == [
        (90, "grep"), (100, "fast-clock")]
    clock.t = 115 * S
    assert sorted((r.window_start_ns // S, r.name, r.count) for r in named(w.close_due())) == [
        (90, "grep", 2), (100, "fast-clock", 1)]


def test_late_events_are_counted_per_event():
    clock = Clock(0)
    w = TumblingWindows(size_s=10, grace_s=0, wall_clock_ns=clock, max_future_skew_s=3600)
    w.add([ev(1 * S), ev(20 * S)])
    w.close_due()
    w.add([ev(2 * S), ev(3 * S), ev(21 * S)])
    assert w.late_events == 2


def test_window_state_written_before_columnar_windows_is_restored():
    """A state file of the JSON format (agentflux before the windows were columns, made by
    streams/windows.py at 42ba07d: [0, 10) closed twice, its second row and [40, 50)'s first
    unpublished, [40, 50) open again with one error) is taken over: the outbox keeps its ids,
    the open window its counts, and the next row gets a revision no earlier row had."""
    from pathlib import Path
    data = (Path(__file__).parent.parent / "data" / "windows-state-json-v1.state").read_bytes()
    w = TumblingWindows(size_s=10, grace_s=0, wall_clock_ns=Clock(100 * S), log="L")
    w.restore(0, data)
    assert [(r.window_start_ns // S, r.dim, r.revision, r.row_id) for r in w.outbox()] == [
        (0, "name", 1, "9e6efd20ab277f5a8f82a78d"), (0, "agent", 1, "a26a984fb90fe9ed2f2cc292"),
        (40, "name", 0, "089a534a8d4d1a6331a5007a"), (40, "agent", 0, "cd925cab753294d5d0ec6a9c")]
    assert sorted(w.partitions[0].open_keys()) == [
        (40 * S, ("agent", "tool.call", "a", "react")),
        (40 * S, ("name", "tool.call", "grep", "react"))]
    w.published(w.outbox())
    rows = w.close_due(flush_all=True)
    assert sorted((r.dim, r.count, r.errors, r.revision) for r in rows) == [
        ("agent", 1, 1, 2), ("name", 1, 1, 2)]
    assert [r.sketch.count for r in named(rows)] == [1]


def test_columnar_state_round_trips_and_row_ids_never_repeat_across_late_events():
    """Late events reopen closed windows again and again across snapshots: every row id is
    new, and the merged rows equal what one uninterrupted owner computes."""
    clock = Clock(0)

    def windows():
        return TumblingWindows(size_s=10, grace_s=0, wall_clock_ns=clock, log="L",
                               max_future_skew_s=3600)

    def run(cut: bool):
        w, rows = windows(), []
        for i in range(12):
            w.add([ev(i * 10 * S + 1, dur=float(i + 1)), ev(3 * S, tool="late", dur=2.0,
                                                           status="error" if i % 2 else "ok")])
            rows += w.close_due()
            w.published(w.outbox())
            if cut:
                data = w.snapshot(0)
                w = windows()
                w.restore(0, data)
        return rows + w.close_due(flush_all=True)

    one, moved = run(False), run(True)
    assert len({r.row_id for r in moved}) == len(moved)
    assert sorted(r.to_dict()["row_id"] for r in one) == sorted(r.row_id for r in moved)
    late = [r for r in named(moved) if r.name == "late"]
    assert sum(r.count for r in late) == 12 and sum(r.errors for r in late) == 6
    assert sum(r.sketch.count for r in late) == 12


def test_only_the_configured_dimensions_are_kept():
    evs = list(SyntheticRuntime(SimConfig(events=2000, seed=4, start_ns=0)).events())
    every = TumblingWindows(size_s=3600, grace_s=0)
    some = TumblingWindows(size_s=3600, grace_s=0, dimensions=("agent", "tool"))
    every.add(evs)
    some.add(evs)
    rows_every = every.close_due(flush_all=True)
    rows_some = some.close_due(flush_all=True)
    assert {r.dim for r in rows_every} == {"name", "agent", "session", "tool", "cold", "resource"}
    assert {r.dim for r in rows_some} == {"name", "agent", "tool"}  # name always
    key = lambda r: (r.window_start_ns, r.dim, r.type, r.name, r.philosophy, r.count, r.errors)
    assert sorted(map(key, rows_some)) == sorted(key(r) for r in rows_every
                                                if r.dim in ("name", "agent", "tool"))


def test_resource_rows_sketch_each_metric_per_philosophy_and_share_a_kpi_partition():
    """The resource dimension: one key per metric and philosophy whose sketch holds that
    metric's values (not a duration), and all of a philosophy's metrics in one KPI partition
    (the predictor needs them together), as all of a pool's rows (the autoscaler)."""
    from agentflux.agents.kpis import kpi_partition
    evs = list(SyntheticRuntime(SimConfig(events=3000, seed=9, start_ns=0)).events())
    w = TumblingWindows(size_s=3600, grace_s=0)
    w.add(evs)
    rows = [r for r in w.close_due(flush_all=True) if r.dim == "resource"]
    samples = [e for e in evs if e["type"] == "resource.sample"]
    assert samples and rows
    for metric in ("cpu_percent", "memory_mb", "execution_time_s"):
        for phil in {e["philosophy"] for e in samples}:
            values = np.array([e["attrs"][metric] for e in samples
                               if e["philosophy"] == phil and e["attrs"].get(metric) is not None])
            got = [r for r in rows if r.name == metric and r.philosophy == phil]
            assert sum(r.sketch.count for r in got) == len(values)
            if len(values) and got[0].sketch.count == len(values):
                lo, hi = (np.quantile(values, 0.9, method=m) for m in ("lower", "higher"))
                assert lo * 0.98 <= got[0].sketch.quantile(0.9) <= hi * 1.02
    for phil in {r.philosophy for r in rows}:
        assert len({kpi_partition(r.partition_key.encode(), 12) for r in rows
                    if r.philosophy == phil}) == 1
