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


async def produce_raw(settings: Settings, values: list[bytes], key: bytes = b"k") -> None:
    producer = AIOKafkaProducer(**settings.kafka_client_kwargs(), max_request_size=16 * 1024 * 1024)
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(settings.topics.events, v, key=key)
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
