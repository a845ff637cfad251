"""KPIs from the windows: what users read off them (hit rates, token accounting, cost saved),
equal to an independent per-event oracle, the same in Python and in the history's SQL views, and
exact across a snapshot/restore of the window state at any point of a stream."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from agentflux.runtime.cache import PerformanceCache
from agentflux.runtime.instrument import CountingEmitter, Instrumentation
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.runtime.usage import normalise_usage
from agentflux.schemas.kpis import (KPI_BY_NAME, PRICES, cost_per_decision, kpi_value, kpi_values,
                                   merge_rows)
from agentflux.schemas.wire import envelope
from agentflux.streams.windows import TumblingWindows, explode
from tests.kpi_oracle import compare, oracle

S = 10**9


class Clock:
    def __init__(self, t: int = 0):
        self.t = t

    def __call__(self) -> int:
        return self.t


def rows_of(events: list[dict], size_s: float = 10.0) -> list[dict]:
    w = TumblingWindows(size_s=size_s, grace_s=0, wall_clock_ns=Clock(2**62))
    w.add(events)
    return [r.to_dict() for r in explode(w.close_due(flush_all=True))]


def merged(events: list[dict], size_s: float = 10.0) -> dict:
    return merge_rows(rows_of(events, size_s))


def at(events: list[dict], ts: int) -> list[dict]:
    return [{**e, "ts": ts + i} for i, e in enumerate(events)]


def test_a_cache_hit_rate_is_the_same_from_lookup_events_and_from_stats_deltas():
    sink = CountingEmitter(keep=100_000)
    cache = PerformanceCache(50, default_ttl=60, name="tool_metadata",
                             instrumentation=Instrumentation(sink), lookup_sample_rate=1.0)
    rng = random.Random(4)
    for _ in range(3000):
        key = f"k{int(rng.paretovariate(1.2)) % 200}"
        if cache.get(key, tool=f"tool{len(key) % 3}") is None:
            cache.set(key, 1)
    cache.report(interval_s=5.0)
    m = merged(at(list(sink.events), 1_000 * S), size_s=3600)
    lookup = m[next(k for k in m if k[1:3] == ("name", "cache.lookup"))]
    stats = m[next(k for k in m if k[1:3] == ("name", "cache.stats"))]
    rate = KPI_BY_NAME["cache_hit_rate"]
    assert lookup["count"] == 3000
    assert kpi_value(rate, lookup) == kpi_value(rate, stats) == pytest.approx(
        cache.get_stats()["hits"] / 3000)
    # and per tool: the lookups name their tool; the per-tool rates add up to the cache's
    per_tool = [r for k, r in m.items() if k[1:3] == ("tool", "cache.lookup")]
    assert sorted(r["name"] for r in per_tool) == ["tool0", "tool1", "tool2"]
    assert sum(r["sums"]["hits"] for r in per_tool) == lookup["sums"]["hits"]


def test_openai_and_anthropic_usage_are_counted_once_and_cost_saved_is_priced_per_provider():
    openai = normalise_usage({"prompt_tokens": 1200, "completion_tokens": 80,
                              "prompt_tokens_details": {"cached_tokens": 1024}})
    anthropic = normalise_usage({"input_tokens": 176, "output_tokens": 80,
                                 "cache_read_input_tokens": 1024,
                                 "cache_creation_input_tokens": 0})
    # the same request, told both ways: the same normalised accounting
    assert openai == anthropic == {"input_tokens": 1200, "output_tokens": 80,
                                   "cache_read_tokens": 1024, "cache_write_tokens": 0}
    write = normalise_usage({"input_tokens": 10, "output_tokens": 5,
                             "cache_creation_input_tokens": 2000})
    assert write["input_tokens"] == 2010 and write["cache_write_tokens"] == 2000
    src = {"runtime": "t", "host": "h", "pid": 1}

    def call(model: str, provider: str, usage: dict) -> dict:
        return envelope("llm.call", {"provider": provider, "model": model, "duration_ms": 900.0,
                                     "status": "ok", **usage, "cost_usd": 0.01},
                        source=src, agent_id="a1", session_id="s1", philosophy="react")

    m = merged(at([call("gpt-4o", "openai", openai),
                   call("claude-sonnet-4", "anthropic", anthropic),
                   call("claude-sonnet-4", "anthropic", write)], 1_000 * S))
    by_name = {k[3]: r for k, r in m.items() if k[1] == "name"}
    session = next(r for k, r in m.items() if k[1] == "session")
    assert session["sums"]["input_tokens"] == 1200 + 1200 + 2010  # no token counted twice
    assert session["sums"]["cache_read_tokens"] == 2048
    assert kpi_value(KPI_BY_NAME["llm_cached_token_share"], by_name["gpt-4o"]) == 1024 / 1200
    p, r, _ = PRICES["gpt-4o"]
    assert kpi_values(by_name["gpt-4o"])["cost_saved_usd"] == pytest.approx(p / 1e6 * 1024 * r)
    p, r, w = PRICES["claude-sonnet-4"]
    assert kpi_values(by_name["claude-sonnet-4"])["cost_saved_usd"] == pytest.approx(
        p / 1e6 * (1024 * (1 - r) - 2000 * (w - 1)))  # a cache write costs extra


def sim(n: int = 6000, seed: int = 3) -> list[dict]:
    return list(SyntheticRuntime(SimConfig(events=n, agents=10, seed=seed,
                                           start_ns=1_700_000_000 * S)).events())


def test_every_window_equals_the_per_event_oracle():
    evs = sim()
    got = {}
    for k, r in merged(evs).items():
        got[k] = {"count": r["count"], "errors": r["errors"], "sums": r["sums"],
                  "sketches": [r["sketch"]]}
    assert not compare(got, oracle(evs, 10 * S))


@pytest.mark.parametrize("seed", range(6))
def test_a_snapshot_and_restore_anywhere_in_a_stream_changes_no_row(seed):
    """The state stored with a partition's offsets: a stream cut anywhere, the state moved to a
    new owner, gives the rows one owner gives (and a row published before the cut and again
    after it has the same id)."""
    rng = random.Random(seed)
    evs = sim(3000, seed)
    clock = Clock(evs[0]["ts"])

    def windows() -> TumblingWindows:
        return TumblingWindows(size_s=5, grace_s=1, wall_clock_ns=clock, log="L")

    def run(cuts: set[int]) -> list[dict]:
        w, out = windows(), []
        for i in range(0, len(evs), 100):
            w.add(evs[i:i + 100])
            clock.t = evs[min(i + 99, len(evs) - 1)]["ts"]
            out += [r.to_dict() for r in explode(w.close_due())]
            w.published(w.outbox())
            if i in cuts:
                data = w.snapshot(0)
                w = windows()
                w.restore(0, data)
        out += [r.to_dict() for r in explode(w.close_due(flush_all=True))]
        return out

    one = run(set())
    moved = run({rng.randrange(0, len(evs), 100) for _ in range(4)})
    assert sorted(orjson.dumps(r) for r in one) == sorted(orjson.dumps(r) for r in moved)


def test_an_unpublished_row_survives_a_restore_in_the_outbox_with_its_id():
    evs = sim(500)
    clock = Clock(evs[-1]["ts"] + 100 * S)
    w = TumblingWindows(size_s=5, grace_s=1, wall_clock_ns=clock, log="L")
    w.add(evs)
    closed = w.close_due()
    assert closed and w.outbox() == closed
    w2 = TumblingWindows(size_s=5, grace_s=1, wall_clock_ns=clock, log="L")
    w2.restore(0, w.snapshot(0))
    assert [r.to_dict() for r in explode(w2.outbox())] == [r.to_dict() for r in explode(closed)]
    w2.published(w2.outbox()[:3])
    assert len(w2.outbox()) == len(closed) - 3


def test_the_sql_views_compute_what_python_computes(tmp_path):
    from agentflux.sinks.catalog import connect, write_catalog
    from agentflux.sinks.history import History, log_id
    from agentflux.sinks.tables import KPIS, kpi_row

    evs = sim(4000)
    rows = rows_of(evs)
    h = History(tmp_path)
    write_catalog(h)
    table = KPIS.rows([kpi_row(orjson.dumps(r), 0, i) for i, r in enumerate(rows)])
    h.write_segment(KPIS, table, log=log_id("c", "t"), partition=0, first=0,
                    last=len(rows) - 1)
    con = connect(tmp_path)
    sql = {(start, dim, t, name, phil, kpi): v for start, dim, t, name, phil, kpi, v in
           con.execute("SELECT epoch_ns(window_start), dim, type, name, philosophy, kpi, value "
                       "FROM kpi_values WHERE kpi NOT IN ('p50_ms', 'p99_ms')").fetchall()}
    py = {(*k, kpi): v for k, r in merge_rows(rows).items()
          for kpi, v in kpi_values(r).items() if kpi not in ("p50_ms", "p99_ms")}
    assert set(sql) == set(py)
    assert all(sql[k] == pytest.approx(py[k], rel=1e-9, abs=1e-12) for k in py)
    assert {k[-1] for k in py} >= {"cache_hit_rate", "warm_start_rate", "cost_usd",
                                   "compression_ratio", "error_rate", "cost_saved_usd"}
    # across types and windows: LLM cost per routing decision, and cost to date per session
    per_decision = {(start, model, phil): v for start, model, phil, v in con.execute(
        "SELECT epoch_ns(window_start), model, philosophy, cost_per_decision "
        "FROM kpi_cost_per_decision").fetchall()}
    want = cost_per_decision(merge_rows(rows))
    assert want and per_decision.keys() == want.keys()
    assert all(per_decision[k] == pytest.approx(want[k], rel=1e-9) for k in want)
    to_date = dict(con.execute(
        "SELECT name, max(cost_usd_to_date) FROM kpi_rolling_cost WHERE dim = 'session' "
        "GROUP BY name").fetchall())
    spent: dict = {}
    for e in evs:
        if e["type"] == "llm.call":
            spent[e["session_id"]] = spent.get(e["session_id"], 0.0) + e["attrs"]["cost_usd"]
    assert to_date.keys() == spent.keys()
    assert all(to_date[k] == pytest.approx(v, rel=1e-9) for k, v in spent.items())



def test_alerts_do_not_depend_on_the_order_the_partitions_rows_arrive_in():
    """Each partition closes its windows on its own watermark: in a backlog or a replay the
    rows of one partition arrive minutes of event time ahead of another's. With the progress
    markers the worker publishes after its rows, the detector judges each window once every
    partition has passed it, and raises what it raises on rows in window order."""
    import itertools

    from agentflux.agents.failures import FailureDetector, load_rules
    from agentflux.runtime.simulate import IncidentSpec

    cfg = SimConfig(agents=24, events=40_000, seed=5, start_ns=1_700_000_000 * S,
                    incidents=(IncidentSpec("error_burst", start_s=120.0),))
    evs = list(SyntheticRuntime(cfg).events())
    w = TumblingWindows(size_s=10, grace_s=0, wall_clock_ns=Clock(2**62), log="L")
    for e in evs:
        e["_p"] = hash(e["session_id"]) % 4
    for p in range(4):
        w.add([e for e in evs if e["_p"] == p], partition=p)
    rows = [r.to_dict() for r in explode(w.close_due(flush_all=True))]
    rules = load_rules(Path(__file__).resolve().parents[2] / "bench" / "alert_rules.yaml")

    def marker(p: int, done: int) -> dict:
        return {"kind": "progress", "source_partition": p, "done_before_ns": done,
                "partitions": 4}

    in_order = FailureDetector(rules, progress=True)
    want = []
    rows.sort(key=lambda r: (r["window_start_ns"], r["source_partition"]))
    for start, group in itertools.groupby(rows, key=lambda r: r["window_start_ns"]):
        want += in_order.observe(list(group))
        want += in_order.observe([marker(p, start + 10 * S) for p in range(4)])
    assert any(t["rule"] == "tool_error_budget" and t["status"] == "firing" for t in want)

    skewed = FailureDetector(rules, progress=True)
    got = []
    for p in (2, 0, 3, 1):  # a partition at a time, each with its marker after its rows
        mine = [r for r in rows if r["source_partition"] == p]
        got += skewed.observe(mine)
        got += skewed.observe([marker(p, max(r["window_end_ns"] for r in rows))])
    assert got == want


def test_a_batch_of_session_rows_lands_and_is_judged_as_the_rows_it_holds():
    """Sessions close as one batch per partition and window (columns, not a row object each):
    split across the KPI topic's partitions, every row of a session goes to one partition
    whichever events partition it came from; a batch lands as the rows it holds would, with
    their ids; and the failure detector raises from batches what it raises from the rows."""
    import itertools

    from agentflux.agents.failures import FailureDetector, load_rules
    from agentflux.runtime.simulate import IncidentSpec
    from agentflux.sinks.tables import check_kpi_batch, kpi_batch_table, kpi_table
    from agentflux.streams.windows import WindowBatch

    cfg = SimConfig(agents=24, events=30_000, seed=9, start_ns=1_700_000_000 * S,
                    incidents=(IncidentSpec("cost_runaway", start_s=30.0),))
    evs = list(SyntheticRuntime(cfg).events())
    w = TumblingWindows(size_s=10, grace_s=0, wall_clock_ns=Clock(2**62), log="L")
    for p in range(3):  # (a session's events spread over the partitions)
        w.add(evs[p::3], partition=p)
    closed = w.close_due(flush_all=True)
    batches = [c for c in closed if isinstance(c, WindowBatch)]
    assert len(batches) > 10 and {b.dim for b in batches} == {"session"}
    where: dict[str, int] = {}
    for b in batches:
        docs = b.docs("w", 4)
        assert sorted(i for d in docs.values() for i in d["at"]) == list(range(b.rows))
        rows = b.explode()
        for q, d in docs.items():
            assert check_kpi_batch(orjson.loads(orjson.dumps(d))) == len(d["name"])
            assert all(where.setdefault(name, q) == q for name in d["name"])
            mine = [rows[i].to_dict("w") for i in d["at"]]
            assert kpi_batch_table(d, q, 7).to_pylist() == \
                kpi_table(mine, q, [7] * len(mine)).to_pylist()
    assert len({n for b in batches for n in b.names}) < sum(b.rows for b in batches)

    def judged(as_batches: bool) -> list[dict]:
        det = FailureDetector(load_rules(), progress=True)
        docs = [d for c in closed for d in (
            c.docs("w", 1).values() if as_batches and isinstance(c, WindowBatch)
            else [r.to_dict("w") for r in explode([c])])]
        docs.sort(key=lambda d: d["window_start_ns"])
        out = []
        for start, group in itertools.groupby(docs, key=lambda d: d["window_start_ns"]):
            out += det.observe([*group, *({"kind": "progress", "source_partition": p,
                                           "done_before_ns": start + 10 * S, "partitions": 3}
                                          for p in range(3))])
        again = det.observe([d for d in docs if d["dim"] == "session"])  # redelivered
        assert again == [] and det.counters["duplicates"] == sum(b.rows for b in batches)
        empty = {**docs[-1], "kind": "kpi_batch", "row_id": "x", "at": [], "name": [],
                 "philosophy": [], "count": [], "errors": [], "sums": {}, "maxes": {}}
        assert det.observe([empty]) == [] and det.counters["rejected"] == 1  # (not a crash)
        if as_batches:
            one = next(d for d in docs if d["kind"] == "kpi_batch" and len(d["at"]) > 1)
            with pytest.raises(ValueError, match="increasing"):  # two rows of one id
                check_kpi_batch({**one, "at": [one["at"][0]] * len(one["at"])})
        return out

    out = judged(as_batches=True)
    assert [t["rule"] for t in out if t["status"] == "firing"].count("session_cost_budget") == 1
    assert out == judged(as_batches=False)


def test_kpi_records_go_where_kafkas_default_partitioner_puts_their_rows_keys():
    from aiokafka.partitioner import DefaultPartitioner

    from agentflux.agents.kpis import kpi_partition
    keys = [f"session|llm.call|s-{i}|react".encode() for i in range(500)]
    for n in (1, 3, 12):
        parts = list(range(n))
        assert [kpi_partition(k, n) for k in keys] == \
            [DefaultPartitioner()(k, parts, parts) for k in keys]
    assert len({kpi_partition(k, 12) for k in keys}) == 12


def test_kpi_rows_are_sent_as_bounded_json_arrays_that_keep_every_row_in_order():
    from agentflux.agents.kpis import json_arrays
    docs = [{"i": i, "pad": "x" * (i % 50)} for i in range(2500)]
    arrays = json_arrays(docs, max_items=1000, max_bytes=20_000)
    back = [d for a in arrays for d in orjson.loads(a)]
    assert back == docs
    assert all(len(orjson.loads(a)) <= 1000 and len(a) <= 20_000 for a in arrays)
    big = {"pad": "y" * 50_000}  # larger than the bound: an array of its own
    assert [len(orjson.loads(a)) for a in json_arrays([docs[0], big, docs[1]], 10, 20_000)] \
        == [1, 1, 1]
    assert json_arrays([]) == []


def test_a_partition_read_far_behind_the_others_is_waited_for_while_its_worker_says_so():
    """A worker catching up on a backlog (a restart, or a burst published faster than it is
    read) reads one partition's log after another: the partitions' rows arrive tens of minutes
    of event time apart, more than the late-rows horizon (15 min). Its markers name the
    partitions it has not read to their end (``behind``); the detector waits for those and
    raises what it raises on rows in window order, and drops nothing as too late. Without the
    names it cannot tell a backlog from a stalled partition: it stops waiting at the horizon
    and the lagging partitions' rows are dropped (an incident's first half hour unalerted)."""
    import itertools

    from agentflux.agents.failures import FailureDetector, load_rules
    from agentflux.runtime.simulate import IncidentSpec

    # (a stalled model makes the run's event time long: ~45 minutes)
    cfg = SimConfig(agents=16, events=30_000, seed=42, start_ns=1_700_000_000 * S,
                    incidents=(IncidentSpec("error_burst", start_s=120.0),
                               IncidentSpec("slow_model", start_s=120.0)))
    evs = list(SyntheticRuntime(cfg).events())
    span_s = (evs[-1]["ts"] - evs[0]["ts"]) / S
    assert span_s > 40 * 60  # (well past the 15-minute horizon)
    w = TumblingWindows(size_s=10, grace_s=0, wall_clock_ns=Clock(2**62), log="L")
    for e in evs:
        e["_p"] = hash(e["session_id"]) % 4
    for p in range(4):
        w.add([e for e in evs if e["_p"] == p], partition=p)
    rows = [r.to_dict() for r in explode(w.close_due(flush_all=True))]
    rules = load_rules()

    def marker(p: int, done: int, behind: list[int] | None) -> dict:
        m = {"kind": "progress", "source_partition": p, "log": "w1", "done_before_ns": done,
             "partitions": 4}
        return m if behind is None else {**m, "behind": behind}

    in_order = FailureDetector(rules, progress=True)
    want = []
    rows.sort(key=lambda r: (r["window_start_ns"], r["source_partition"]))
    for start, group in itertools.groupby(rows, key=lambda r: r["window_start_ns"]):
        want += in_order.observe(list(group))
        want += in_order.observe([marker(p, start + 10 * S, []) for p in range(4)])
    first = min(t["starts_at_ns"] for t in want if t["status"] == "firing")
    assert (first - evs[0]["ts"]) / S < 6 * 60  # the burst starts 2 minutes in

    def skewed(named: bool) -> tuple[list[dict], FailureDetector]:
        det, got, order = FailureDetector(rules, progress=True), [], (2, 0, 3, 1)
        for i, p in enumerate(order):  # a partition's whole log at a time, marker after
            mine = [r for r in rows if r["source_partition"] == p]
            end = max(r["window_end_ns"] for r in rows)
            for j in range(0, len(mine), 500):  # (its rows in batches, a marker after each)
                got += det.observe(mine[j:j + 500])
                done = mine[min(j + 500, len(mine)) - 1]["window_start_ns"]
                got += det.observe([marker(p, done, list(order[i:]) if named else None)])
            got += det.observe([marker(p, end, list(order[i + 1:]) if named else None)])
        return got, det

    got, det = skewed(named=True)
    assert got == want and det.counters["too_late"] == 0
    unnamed, det = skewed(named=False)
    assert det.counters["too_late"] > 0

    def first_firing(ts: list[dict]) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in ts:
            if t["status"] == "firing":
                out.setdefault(t["fingerprint"], t["starts_at_ns"])
        return out

    # alerts late: raised only once the lagging partitions' later rows came in
    late = first_firing(unnamed)
    assert unnamed != want
    assert any(late.get(fp, 1 << 62) > s for fp, s in first_firing(want).items())
