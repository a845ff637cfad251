"""The agentflux event model: envelope, versioned event types, JSON Schema, validation."""

from agentflux.schemas.events import (
    EVENT_TYPES, CacheEvict, CacheInvalidate, CacheLookup, CacheStats, CheckpointRestore,
    ContextCompress, Event, EventType, ExecutorTask, LlmCall, MemoryGc, PoolAcquire, PoolRelease,
    PoolState, PromptCacheLookup, ResourceSample, RoutingDecision, Source, ToolCall,
)
from agentflux.schemas.ids import uuid7
from agentflux.schemas.validate import InvalidEvent, Problem, check, validate

__all__ = [
    "EVENT_TYPES", "CacheEvict", "CacheInvalidate", "CacheLookup", "CacheStats",
    "CheckpointRestore", "ContextCompress", "Event", "EventType", "ExecutorTask", "InvalidEvent",
    "LlmCall", "MemoryGc", "PoolAcquire", "PoolRelease", "PoolState", "Problem",
    "PromptCacheLookup", "ResourceSample", "RoutingDecision", "Source", "ToolCall", "check",
    "uuid7", "validate",
]
