"""The event model: one envelope and versioned, type-specific ``attrs``.

The dataclasses here are the single source of truth. ``schemas/json/*.json`` are generated from
them (``python -m agentflux.schemas.jsonschema --write``) and a test proves the two agree, so a
runtime in another language can validate with the JSON Schema files alone.

Token accounting in ``llm.call`` is normalised: ``input_tokens`` includes cached tokens;
``cache_read_tokens`` and ``cache_write_tokens`` say how many of them were read from / written to
the provider's prompt cache.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

Status = Literal["ok", "error", "timeout", "cancelled"]


@dataclass(frozen=True)
class Source:
    """Who emitted an event."""

    runtime: str
    host: str
    pid: int


@dataclass(frozen=True)
class ToolCall:
    tool: str
    duration_ms: float
    status: Status
    error: Optional[str] = None
    idempotent: bool = False
    cached: bool = False


@dataclass(frozen=True)
class LlmCall:
    provider: str
    model: str
    duration_ms: float
    status: Status
    ttft_ms: Optional[float] = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    finish_reason: Optional[str] = None


@dataclass(frozen=True)
class CacheLookup:
    cache: str
    outcome: Literal["hit", "miss", "expired"]
    latency_ns: Optional[int] = None
    tool: Optional[str] = None  # the tool whose metadata or result was looked up, if any


@dataclass(frozen=True)
class CacheEvict:
    cache: str
    reason: Literal["ttl", "lru", "checkpoint_restore", "explicit"]
    count: int = 1


@dataclass(frozen=True)
class CacheInvalidate:
    cache: str
    reason: Literal["ttl", "lru", "checkpoint_restore", "explicit"]
    count: int = 1


@dataclass(frozen=True)
class CacheStats:
    """Per-interval deltas for high-frequency caches (instead of one event per lookup)."""

    cache: str
    interval_s: float
    hits: int = 0
    misses: int = 0
    expired: int = 0
    evictions: int = 0
    size: int = 0
    tool: Optional[str] = None  # a cache that serves one tool


@dataclass(frozen=True)
class PromptCacheLookup:
    prefix_id: str
    prefix_tokens: int
    outcome: Literal["hit", "miss"]


@dataclass(frozen=True)
class ContextCompress:
    strategy: str
    tokens_before: int
    tokens_after: int
    duration_ms: float
    preserved: int = 0
    quality: Optional[float] = None


@dataclass(frozen=True)
class RoutingDecision:
    candidates: list[str]
    chosen: str
    decision_us: float
    scores: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    fallback_from: Optional[str] = None
    attempt: int = 1


@dataclass(frozen=True)
class ExecutorTask:
    task: str
    outcome: Literal["ok", "won", "cancelled", "failed"]
    duration_ms: float
    concurrency: int = 1
    speculative: bool = False
    budget: Optional[dict[str, float]] = None
    budget_exceeded: bool = False  # the task was refused or cut short by its budget


@dataclass(frozen=True)
class PoolAcquire:
    pool: str
    warm: bool
    startup_ms: float
    available: int = 0
    in_use: int = 0
    target: int = 0


@dataclass(frozen=True)
class PoolRelease:
    pool: str
    available: int = 0
    in_use: int = 0
    target: int = 0


@dataclass(frozen=True)
class PoolState:
    pool: str
    available: int = 0
    in_use: int = 0
    target: int = 0


@dataclass(frozen=True)
class ResourceSample:
    cpu_percent: float
    memory_mb: float
    execution_time_s: Optional[float] = None
    memory_percent: Optional[float] = None  # of the memory available to the runtime (0-100)


@dataclass(frozen=True)
class MemoryGc:
    objects_collected: int
    rss_before_mb: Optional[float] = None
    rss_after_mb: Optional[float] = None


@dataclass(frozen=True)
class CheckpointRestore:
    checkpoint_id: str


@dataclass(frozen=True)
class EventType:
    """A registered event type: its wire name, current version and attrs model."""

    name: str
    version: int
    attrs: type


EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType("tool.call", 1, ToolCall),
        EventType("llm.call", 1, LlmCall),
        EventType("cache.lookup", 1, CacheLookup),
        EventType("cache.evict", 1, CacheEvict),
        EventType("cache.invalidate", 1, CacheInvalidate),
        EventType("cache.stats", 1, CacheStats),
        EventType("prompt_cache.lookup", 1, PromptCacheLookup),
        EventType("context.compress", 1, ContextCompress),
        EventType("routing.decision", 1, RoutingDecision),
        EventType("executor.task", 1, ExecutorTask),
        EventType("pool.acquire", 1, PoolAcquire),
        EventType("pool.release", 1, PoolRelease),
        EventType("pool.state", 1, PoolState),
        EventType("resource.sample", 1, ResourceSample),
        EventType("memory.gc", 1, MemoryGc),
        EventType("checkpoint.restore", 1, CheckpointRestore),
    )
}
ATTRS_TYPE_NAMES: dict[type, str] = {t.attrs: t.name for t in EVENT_TYPES.values()}


@dataclass(frozen=True)
class Event:
    """The envelope. ``id`` is a UUIDv7 (the idempotency key); ``ts`` is UTC epoch nanoseconds."""

    id: str
    ts: int
    source: Source
    agent_id: str
    session_id: str
    philosophy: str
    attrs: Any
    trace_id: Optional[str] = None
    span_id: Optional[str] = None
    parent_span_id: Optional[str] = None

    @property
    def type(self) -> str:
        return ATTRS_TYPE_NAMES[type(self.attrs)]

    def to_dict(self) -> dict[str, Any]:
        """The wire form (what is serialised to JSON)."""
        etype = EVENT_TYPES[self.type]
        d: dict[str, Any] = {
            "id": self.id, "type": etype.name, "v": etype.version, "ts": self.ts,
            "source": dataclasses.asdict(self.source), "agent_id": self.agent_id,
            "session_id": self.session_id, "philosophy": self.philosophy,
        }
        for k in ("trace_id", "span_id", "parent_span_id"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        d["attrs"] = dataclasses.asdict(self.attrs)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Event":
        """Build a model from a validated wire dict (unknown attrs are kept out of the model)."""
        etype = EVENT_TYPES[d["type"]]
        names = {f.name for f in dataclasses.fields(etype.attrs)}
        attrs = etype.attrs(**{k: v for k, v in d["attrs"].items() if k in names})
        return cls(id=d["id"], ts=d["ts"], source=Source(**d["source"]), agent_id=d["agent_id"],
                   session_id=d["session_id"], philosophy=d["philosophy"], attrs=attrs,
                   trace_id=d.get("trace_id"), span_id=d.get("span_id"),
                   parent_span_id=d.get("parent_span_id"))
