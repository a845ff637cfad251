"""The closed loop's stage in the worker, on KPI documents (no broker): commands are signed with
the first key and sent; decided on rows far behind the wall clock they land but are not sent
(stale); without a key they land unsigned; predictions only when they move."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from agentflux import commands
from agentflux.agents.autoscaler import AutoscalerPolicy
from agentflux.agents.loop import ClosedLoop
from agentflux.config import SecretStr, Settings
from agentflux.sinks.prometheus import PipelineMetrics

S = 1_000_000_000
T0 = 1_800_000_000 * S


class Topic:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, key: bytes, value: bytes):
        self.sent.append((key, value))
        f = asyncio.get_running_loop().create_future()
        f.set_result(None)
        return f


def ctx(keys: str | None) -> SimpleNamespace:
    s = Settings(window_s=1.0, grace_s=0.0,
                 command_keys=SecretStr(keys) if keys else None)
    return SimpleNamespace(settings=s, worker="w1", metrics=PipelineMetrics(),
                           log_of=lambda topic: "log",
                           topics=SimpleNamespace(predictions=Topic(), pool_commands=Topic()))


def docs(start_s: int, seconds: int, rate: int, in_use: int) -> list[dict]:
    out = []
    for i in range(seconds):
        start = T0 + (start_s + i) * S
        out.append({"kind": "kpi", "row_id": f"r{start_s + i}", "dim": "name",
                    "type": "pool.acquire", "name": "react", "philosophy": "react",
                    "window_start_ns": start, "window_end_ns": start + S, "count": rate,
                    "errors": 0, "source_partition": 0,
                    "sums": {"warm": rate, "cold": 0, "available": rate, "in_use": rate * in_use,
                             "target": rate * 2},
                    "maxes": {"warm": 1, "cold": 0, "available": 1, "in_use": in_use,
                              "target": 2}})
        out.append({"kind": "kpi", "row_id": f"c{start_s + i}", "dim": "resource",
                    "type": "resource.sample", "name": "cpu_percent", "philosophy": "react",
                    "window_start_ns": start, "window_end_ns": start + S, "count": 1,
                    "errors": 0, "source_partition": 0, "sums": {}, "maxes": {},
                    "sketch": {"alpha": 0.01, "zero": 0, "count": 1, "sum": 40.0,
                               "min": 40.0, "max": 40.0, "bins": {"185": 1}}})
        out.append({"kind": "progress", "source_partition": 0, "done_before_ns": start + S,
                    "partitions": 1})
    return out


POLICY = AutoscalerPolicy(interval_s=1, windows=3, scale_down_stabilization_s=5)


def run(loop: ClosedLoop, d: list[dict]):
    predictions, cmds = loop.observe(0, d)
    loop.committed(predictions, cmds)
    asyncio.run(loop.publish())
    return predictions, cmds


def test_commands_are_signed_with_the_first_key_and_sent():
    c = ctx("new-key,old-key")
    loop = ClosedLoop(c, POLICY, clock=lambda: T0 + 10 * S)
    predictions, cmds = run(loop, docs(0, 8, 20, 12))
    assert cmds and all(send for _, send, _ in cmds)
    sent = c.topics.pool_commands.sent
    assert [k for k, _ in sent] == [b"react"] * len(cmds)
    import orjson
    doc = orjson.loads(sent[-1][1])
    assert commands.verify(doc, [b"new-key"]) is None
    assert doc["issuer"] == "w1" and doc["target"] > 12
    assert predictions and c.topics.predictions.sent[0][0] == b"react"
    # the same windows again move nothing: no new prediction, no new command
    again_p, again_c = run(loop, docs(0, 8, 20, 12))
    assert again_p == [] and again_c == []


def test_decisions_on_a_backlog_are_landed_not_sent():
    c = ctx("k")
    loop = ClosedLoop(c, POLICY, clock=lambda: T0 + 3600 * S)  # an hour behind
    _, cmds = run(loop, docs(0, 8, 20, 12))
    assert cmds and not any(send for _, send, _ in cmds) and all(st for _, _, st in cmds)
    assert c.topics.pool_commands.sent == []


def test_a_target_decided_on_a_backlog_is_sent_once_the_loop_has_caught_up():
    import orjson
    c = ctx("k")
    now = [T0 + 3600 * S]  # first an hour behind the wall clock
    loop = ClosedLoop(c, POLICY, clock=lambda: now[0])
    _, cmds = run(loop, docs(0, 8, 20, 12))
    assert cmds and c.topics.pool_commands.sent == []
    target = cmds[-1][0]["target"]
    now[0] = T0 + 10 * S  # caught up: the same demand, so the target does not change
    _, cmds = run(loop, docs(8, 2, 20, 12))
    assert [(c_["target"], send) for c_, send, _ in cmds] == [(target, True)]
    (sent,) = [orjson.loads(v) for _, v in c.topics.pool_commands.sent]
    assert sent["target"] == target and commands.verify(sent, [b"k"]) is None
    assert sent["reason"].startswith("hold: caught up")
    _, cmds = run(loop, docs(10, 2, 20, 12))  # once
    assert cmds == [] and len(c.topics.pool_commands.sent) == 1


def test_without_a_key_commands_are_unsigned_and_not_sent():
    c = ctx(None)
    loop = ClosedLoop(c, POLICY, clock=lambda: T0 + 10 * S)
    _, cmds = run(loop, docs(0, 8, 20, 12))
    assert cmds and "signature" not in cmds[0][0] and not cmds[0][1]
    assert c.topics.pool_commands.sent == []
