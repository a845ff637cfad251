"""In-memory doubles for fast tests of code that emits events (no broker needed)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SentRecord:
    topic: str
    value: bytes
    key: bytes | None
    partition: int


@dataclass
class InMemoryProducer:
    """Stands in for ``aiokafka.AIOKafkaProducer`` in :class:`~agentflux.runtime.Emitter`:
    ``Emitter(settings, producer_factory=InMemoryProducer.factory(store))``."""

    records: list = field(default_factory=list)
    partitions: int = 4
    fail: bool = False
    kwargs: dict = field(default_factory=dict)

    @classmethod
    def factory(cls, records: list, partitions: int = 4, fail: bool = False):
        def make(**kwargs: Any) -> "InMemoryProducer":
            return cls(records=records, partitions=partitions, fail=fail, kwargs=kwargs)
        return make

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   partition: int | None = None) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if self.fail:
            fut.set_exception(ConnectionError("in-memory producer set to fail"))
        else:
            self.records.append(SentRecord(topic, value, key, partition))
            fut.set_result(None)
        return fut
