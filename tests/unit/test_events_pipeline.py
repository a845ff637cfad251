"""The events pipeline's stages: batches taken in ahead of the one applied, and what a forget
(a rebalance) does to a batch prepared before it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agentflux.agents.events import EventPipeline
from agentflux.agents.kpis import Kpis
from agentflux.config import Settings
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.schemas.wire import encode_events
from agentflux.sinks.history import History
from agentflux.sinks.prometheus import PipelineMetrics
from agentflux.streams.context import PipelineContext
from agentflux.streams.windows import TumblingWindows


@dataclass
class Message:
    topic: str
    partition: int
    offset: int


@dataclass
class Record:  # what the pipeline reads of a Faust event
    message: Message
    value: bytes


class Stream:
    def __init__(self) -> None:
        self.acked: list[int] = []

    async def ack(self, fe: Record) -> None:
        self.acked.append(fe.message.offset)


def pipeline(tmp_path) -> tuple[EventPipeline, Stream]:
    settings = Settings.from_env(env={}, history_path=str(tmp_path / "history"), window_s=10.0)
    ctx = PipelineContext(settings=settings, metrics=PipelineMetrics(),
                          history=History(settings.history_path), windows=TumblingWindows(10.0))
    topic = settings.topics.events
    stream = Stream()
    return EventPipeline(ctx, Kpis(ctx), stream, lambda: {(topic, 0), (topic, 1)}), stream


def records(topic: str, partition: int, first: int, n: int, seed: int) -> list[Record]:
    evs = list(SyntheticRuntime(SimConfig(events=n * 50, seed=seed)).events())
    return [Record(Message(topic, partition, first + i), encode_events(evs[i * 50:(i + 1) * 50]))
            for i in range(n)]


def test_batches_are_applied_in_order_while_later_ones_are_taken_in(tmp_path):
    p, stream = pipeline(tmp_path)
    topic = p.history.topic

    async def run() -> None:
        for k in range(5):  # more batches than may be in flight
            await p.handle(records(topic, k % 2, (k // 2) * 4, 4, seed=k))
        await p.drain()

    asyncio.run(run())
    assert p.taken == {0: 11, 1: 7}
    assert p.history.landed.offsets[(topic, 0)] == 11 and p.history.landed.offsets[(topic, 1)] == 7
    assert sorted(stream.acked) == sorted([*range(12), *range(8)])
    windows = p.kpis.windows.partitions
    assert sum(int(w.count[w.live()].sum()) for w in windows.values()) > 0


def test_a_batch_prepared_before_its_partition_was_forgotten_is_not_applied(tmp_path):
    """A batch before it met a rebalance and was dropped with what was known of its
    partitions: the batch prepared meanwhile saw that state (offsets taken in, windows) and is
    dropped too, not applied to windows the forget emptied. Its partition is read again."""
    p, stream = pipeline(tmp_path)
    topic = p.history.topic

    async def run() -> None:
        await p.handle(records(topic, 0, 0, 3, seed=1))
        await p.settle()
        held = p.history.events.rows
        assert p.taken[0] == 2 and held > 0
        prepared = await p._prepare(records(topic, 0, 3, 3, seed=2))
        p._chain(prepared)
        p.forget({0})  # (as a batch before it that met a rebalance does)
        await p.settle()
        assert 0 not in p.taken  # read again from the history's offsets
        assert p.history.events.rows == 0  # neither the forgotten rows nor the batch's
        assert 0 not in p.kpis.windows.partitions  # no window opened from the batch
        await p.drain()

    asyncio.run(run())
    assert stream.acked == []  # nothing of partition 0 landed: nothing acked
    assert p.history.landed.offsets.get((topic, 0), -1) == -1
