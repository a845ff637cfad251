"""Small helpers for tests against the real broker."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agentflux.config import ConfigError, Settings


def start_or_fail(kafka):
    """Start a ``LocalKafka``; a broker that cannot start fails the test with the reason (CI
    never skips the real component)."""
    try:
        return kafka.start()
    except ConfigError as exc:
        pytest.fail(f"the real Kafka broker is required for this test: {exc}", pytrace=False)


async def produce_raw(settings: Settings, values: list[bytes], key: bytes = b"k",
                      topic: str | None = None) -> None:
    """Send ``values`` as records to ``topic`` (default: the events topic)."""
    producer = AIOKafkaProducer(**settings.kafka_client_kwargs(), max_request_size=16 * 1024 * 1024)
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic or settings.topics.events, v, key=key)
    finally:
        await producer.stop()


async def consume(settings: Settings, topic: str, n: int, deadline_s: float = 30.0) -> list:
    """Read ``n`` records of ``topic`` from the beginning, or fail after ``deadline_s``."""
    consumer = AIOKafkaConsumer(topic, **settings.kafka_client_kwargs(),
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=None, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    out: list = []
    end = time.monotonic() + deadline_s
    try:
        while len(out) < n:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"read {len(out)} of {n} records from {topic}")
            batch = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


def consume_sync(settings: Settings, topic: str, n: int, deadline_s: float = 30.0) -> list:
    return asyncio.run(consume(settings, topic, n, deadline_s))


async def read_all(settings: Settings, topic: str, deadline_s: float = 30.0) -> list:
    """Every record of ``topic`` up to its end offsets as of now."""
    from aiokafka import TopicPartition
    consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic)
                                                  or await _partitions(consumer, topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list = []
        end = time.monotonic() + deadline_s
        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            if time.monotonic() > end:
                raise TimeoutError(f"read {len(out)} records of {topic}, not to its end")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set:
    await consumer._client.force_metadata_update()  # noqa: SLF001 (a test helper)
    return consumer.partitions_for_topic(topic) or set()


async def commit_group_offsets(settings: Settings, group: str, topic: str,
                               offsets: dict[int, int]) -> None:
    """Commit ``offsets`` (partition -> next offset to read) for consumer group ``group``, as
    a consumer of that group that skipped records would."""
    from aiokafka import TopicPartition
    consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): o for p, o in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    from aiokafka import TopicPartition
    consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), group_id=None)
    await consumer.start()
    try:
        parts = await _partitions(consumer, topic)
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: o for tp, o in ends.items()}
    finally:
        await consumer.stop()
