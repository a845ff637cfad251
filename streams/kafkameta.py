"""Which cluster and which incarnation of a topic a stored offset belongs to.

An offset means nothing without the log it counts in. A topic that was deleted and created again
under the same name starts again at offset 0, and another cluster reached through the same
address has logs of its own: offsets landed in the history must not be applied to either, or
the worker silently skips everything up to the old offset (the history names each segment by
the log of its offsets, :func:`agentflux.sinks.history.log_id`). Kafka names both: the cluster id
(Metadata v2+) and the topic id, a UUID given to each incarnation of a topic (Metadata v10+,
Kafka 2.8+). aiokafka asks for Metadata up to v5 only, so this module sends a Metadata v10
request itself, with aiokafka's protocol types.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Sequence

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (AbstractType, Boolean, CompactArray, CompactString, Int16,
                                     Int32, Schema, TaggedFields)

from agentflux.config import ConfigError, Settings


class Uuid(AbstractType[str]):
    """Kafka's UUID: 16 bytes on the wire."""

    @classmethod
    def encode(cls, value: str | None) -> bytes:
        return (uuid.UUID(value) if value else uuid.UUID(int=0)).bytes

    @classmethod
    def decode(cls, data: BytesIO) -> str:
        raw = data.read(16)
        if len(raw) != 16:
            raise ValueError("Buffer underrun decoding UUID")
        return str(uuid.UUID(bytes=raw))


class MetadataResponse_v10(Response):
    API_KEY = 3
    API_VERSION = 10
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", CompactArray(("node_id", Int32), ("host", CompactString("utf-8")),
                                 ("port", Int32), ("rack", CompactString("utf-8")),
                                 ("tags", TaggedFields))),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        ("topics", CompactArray(
            ("error_code", Int16), ("name", CompactString("utf-8")), ("topic_id", Uuid),
            ("is_internal", Boolean),
            ("partitions", CompactArray(
                ("error_code", Int16), ("partition_index", Int32), ("leader_id", Int32),
                ("leader_epoch", Int32), ("replica_nodes", CompactArray(Int32)),
                ("isr_nodes", CompactArray(Int32)), ("offline_replicas", CompactArray(Int32)),
                ("tags", TaggedFields))),
            ("topic_authorized_operations", Int32), ("tags", TaggedFields))),
        ("cluster_authorized_operations", Int32),
        ("tags", TaggedFields),
    )


class MetadataRequest_v10(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 10
    RESPONSE_TYPE = MetadataResponse_v10
    SCHEMA = Schema(
        ("topics", CompactArray(("topic_id", Uuid), ("name", CompactString("utf-8")),
                                ("tags", TaggedFields))),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class TopicIdsRequest(Request[MetadataRequest_v10]):
    API_KEY = 3

    def __init__(self, topics: Sequence[str]):
        self.topics = list(topics)

    def build(self, request_struct_class: type[MetadataRequest_v10]) -> MetadataRequest_v10:
        return request_struct_class([(None, t, {}) for t in self.topics], False, False, False, {})


@dataclass(frozen=True)
class LogIdentity:
    """The cluster and the incarnation of a topic that offsets count in."""

    cluster_id: str
    topic_id: str
    partitions: int = 0  # how many partitions the topic has (0: not known)

    def __str__(self) -> str:
        return f"cluster {self.cluster_id}, topic id {self.topic_id}"


async def log_identities(settings: Settings, topics: Sequence[str],
                         timeout_s: float = 15.0) -> dict[str, LogIdentity]:
    """``{topic: LogIdentity}`` for the topics that exist on the configured cluster."""
    import asyncio

    from aiokafka.client import AIOKafkaClient

    kw = settings.kafka_client_kwargs()
    client = AIOKafkaClient(**kw, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        node = client.get_random_node()
        resp: Any = await asyncio.wait_for(client.send(node, TopicIdsRequest(topics)), timeout_s)
    finally:
        await client.close()
    if resp.API_VERSION != 10:  # pragma: no cover - a broker older than Kafka 2.8
        raise ConfigError("the Kafka cluster does not report topic ids (Metadata v10, Kafka "
                          "2.8+): agentflux needs Kafka 2.8 or newer")
    out = {}
    for error_code, name, topic_id, _internal, partitions, *_ in resp.topics:
        if error_code == 0 and topic_id != str(uuid.UUID(int=0)):
            out[name] = LogIdentity(resp.cluster_id, topic_id, len(partitions))
    return out
