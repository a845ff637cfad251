"""How runtime components emit events: a small context (who is emitting) around an emitter.

Every component takes an ``Instrumentation``; without one it uses a :class:`CountingEmitter`,
so the components work without a broker (events are counted, and kept up to a bound for tests).
"""

from __future__ import annotations

import collections
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from agentflux.schemas.wire import envelope


class EventSink(Protocol):
    def emit(self, event: Mapping[str, Any]) -> bool: ...


class CountingEmitter:
    """An emitter that is not connected: counts events by type and keeps the last ``keep``."""

    def __init__(self, keep: int = 10_000):
        self.counts: collections.Counter = collections.Counter()
        self.events: collections.deque = collections.deque(maxlen=keep)

    def emit(self, event: Mapping[str, Any]) -> bool:
        self.counts[event["type"]] += 1
        self.events.append(event)
        return True

    def of_type(self, type_: str) -> list[dict]:
        return [e for e in self.events if e["type"] == type_]


@dataclass
class Instrumentation:
    """Builds wire-form events for one agent/session and hands them to ``sink``."""

    sink: EventSink = field(default_factory=CountingEmitter)
    agent_id: str = "runtime"
    session_id: str = "runtime"
    philosophy: str = "runtime"
    runtime: str = "agentflux"
    source: dict = field(init=False)

    def __post_init__(self) -> None:
        self.source = {"runtime": self.runtime, "host": socket.gethostname(), "pid": os.getpid()}

    def emit(self, type_: str, attrs: dict, *, philosophy: str | None = None,
             session_id: str | None = None, trace_id: str | None = None) -> bool:
        ev = envelope(type_, attrs, source=self.source, agent_id=self.agent_id,
                      session_id=session_id or self.session_id,
                      philosophy=philosophy or self.philosophy, trace_id=trace_id)
        return self.sink.emit(ev)

    def child(self, **changes: Any) -> "Instrumentation":
        import dataclasses
        return dataclasses.replace(self, **changes)
