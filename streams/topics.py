"""Topic definitions from configuration, and their creation on the broker."""

from __future__ import annotations

from dataclasses import dataclass

from agentflux.config import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: tuple[tuple[str, str], ...] = ()


def topic_specs(settings: Settings) -> list[TopicSpec]:
    t = settings.topics
    rf = t.replication_factor
    return [
        TopicSpec(t.events, t.events_partitions, rf, (("max.message.bytes", "16777216"),)),
        TopicSpec(t.kpis, t.partitions, rf),
        TopicSpec(t.alerts, t.partitions, rf),
        # the latest prediction per philosophy is what matters: compacted
        TopicSpec(t.predictions, t.partitions, rf, (("cleanup.policy", "compact"),)),
        TopicSpec(t.pool_commands, t.partitions, rf),
        TopicSpec(t.deadletter, t.partitions, rf, (("max.message.bytes", "16777216"),)),
    ]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.config))
               for s in topic_specs(settings) if s.name not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process
        return [n.name for n in new]
    finally:
        await admin.close()
