"""The failure detector's stored state (agents/alerting.py) on a real history directory: a delta per
KPI batch, in full now and then, restored from the full state and the deltas after it, and the
states before a committed full one deleted."""

from __future__ import annotations

import asyncio
import random

from agentflux.agents.alerting import MAX_DELTAS, STATE_KIND, Alerting
from agentflux.agents.failures import load_rules
from agentflux.config import Settings
from agentflux.sinks.history import History
from agentflux.sinks.prometheus import PipelineMetrics
from agentflux.streams.context import PipelineContext
from agentflux.streams.windows import TumblingWindows, explode
from tests.unit.test_failures import BASE, W, canonical, row

P = 0


def context(tmp_path) -> PipelineContext:
    settings = Settings.from_env(env={}, history_path=str(tmp_path / "history"), window_s=10.0)
    return PipelineContext(settings=settings, metrics=PipelineMetrics(),
                           history=History(settings.history_path), windows=TumblingWindows(10.0))


def batches(n: int) -> list[list[dict]]:
    """KPI rows of ``n`` windows: sessions that spend and go quiet, a tool that fails."""
    rnd = random.Random(3)
    out = []
    for i in range(n):
        rows = [row(i, type="llm.call", dim="session", name=f"s-{i // 5}-{k}", count=1,
                    sums={"cost_usd": rnd.choice([0.5, 3.0])}) for k in range(4)]
        rows.append(row(i, count=5, errors=5 if 20 <= i < 26 else 0))
        rows.append({"kind": "progress", "source_partition": 0, "partitions": 1,
                     "done_before_ns": BASE + (i + 1) * W})
        out.append(rows)
    return out


def land(alerting: Alerting, rows: list[dict], offset: int) -> list[dict]:
    """What the KPI lander does with a batch: observe, store the state, commit."""
    raised = alerting.observe(P, rows)
    alerting.write_states([(P, offset, alerting.state(P, offset))])
    alerting.committed(P, raised)
    return raised


def test_the_state_is_a_delta_per_batch_and_restores_from_its_full_state_and_deltas(tmp_path):
    ctx = context(tmp_path)
    rules = load_rules()
    first = Alerting(ctx, rules)
    asyncio.run(first.load([P], {}))
    feed = batches(3 * MAX_DELTAS)
    raised = []
    for i, rows in enumerate(feed[:2 * MAX_DELTAS + 10]):
        raised += land(first, rows, offset=i)
    ctx.upkeep_executor.submit(int).result()  # (the deletions run there)
    assert {t["rule"] for t in raised} >= {"session_cost_budget", "tool_failure_streak"}
    stored = ctx.history.state_offsets(STATE_KIND, ctx.log_of(ctx.settings.topics.kpis), P)
    # the last full state and the deltas after it, nothing older
    assert 1 <= len(stored) <= MAX_DELTAS + 2 and stored[-1] == 2 * MAX_DELTAS + 9
    assert stored[0] > 0
    last = stored[-1]

    second = Alerting(ctx, rules)
    asyncio.run(second.load([P], {(ctx.settings.topics.kpis, P): last}))
    a, b = first.detectors[P], second.detectors[P]
    assert canonical(b.state()) == canonical(a.state())
    # and both go on alike, storing deltas on the restored chain
    rest_a = [t for i, rows in enumerate(feed[last + 1:], last + 1) for t in land(first, rows, i)]
    rest_b = [t for i, rows in enumerate(feed[last + 1:], last + 1) for t in land(second, rows, i)]
    assert rest_a == rest_b
    third = Alerting(ctx, rules)
    asyncio.run(third.load([P], {(ctx.settings.topics.kpis, P): len(feed) - 1}))
    assert canonical(third.detectors[P].state()) == canonical(second.detectors[P].state())


def test_a_full_state_alone_restores_with_its_outbox(tmp_path):
    """The first state stored is a full one (no delta after it): a worker restarted right then
    restores it, and the transitions not on the alerts topic yet are sent again."""
    ctx = context(tmp_path)
    rules = load_rules()
    first = Alerting(ctx, rules)
    asyncio.run(first.load([P], {}))
    feed = batches(30)
    raised = [t for rows in feed[:25] for t in first.observe(P, rows)]
    assert raised  # the tool's failures
    first.write_states([(P, 24, first.state(P, 24))])
    first.committed(P, raised)
    second = Alerting(ctx, rules)
    asyncio.run(second.load([P], {(ctx.settings.topics.kpis, P): 24}))
    assert canonical(second.detectors[P].state()) == canonical(first.detectors[P].state())
    assert second.outbox[P] == raised and [t for _, t in second._ready] == raised


def test_kpi_rows_whose_acks_never_come_are_published_again_not_lost(tmp_path, monkeypatch):
    """A publication waits a bounded time for the broker's acks (it runs on the timer that
    closes idle windows: a send that never completed would stop that timer for good, and the
    last windows of a quiet partition would never be published); the rows stay ready and go
    out, with the same ids, at the next publication."""
    from types import SimpleNamespace

    import orjson

    from agentflux.agents import kpis as kpis_module
    from agentflux.runtime.simulate import SimConfig, SyntheticRuntime

    monkeypatch.setattr(kpis_module, "PUBLISH_TIMEOUT_S", 0.2)

    class Topic:
        def __init__(self) -> None:
            self.hang, self.sent = True, []

        async def send(self, value: bytes, partition: int) -> asyncio.Future:
            fut = asyncio.get_running_loop().create_future()
            if not self.hang:  # (a hung send: its future never completes)
                self.sent.append(value)
                fut.set_result(None)
            return fut

    ctx = context(tmp_path)
    ctx.topics = SimpleNamespace(kpis=Topic())
    kpis = kpis_module.Kpis(ctx)
    evs = list(SyntheticRuntime(SimConfig(events=2000, seed=2, start_ns=BASE)).events())
    ctx.windows.add(evs)
    closed = ctx.windows.close_due(flush_all=True)
    kpis._ready = list(closed)
    want = {r.row_id for r in explode(closed)}

    async def run() -> None:
        await kpis.publish()  # no ack within the bound: kept
        assert kpis._ready == closed and ctx.topics.kpis.sent == []
        ctx.topics.kpis.hang = False
        await kpis.publish()
    asyncio.run(run())
    docs = [d for v in ctx.topics.kpis.sent for d in orjson.loads(v) if d["kind"] != "progress"]
    got = {f"{d['row_id']}.{i}" for d in docs if d["kind"] == "kpi_batch" for i in d["at"]}
    assert got | {d["row_id"] for d in docs if d["kind"] == "kpi"} == want
    assert kpis._ready == [] and ctx.windows.outbox() == []
