"""What runs inside an agent runtime: the emitter, instrumented components, the simulator."""

from agentflux.runtime.emitter import Emitter, EmitterStats

__all__ = ["Emitter", "EmitterStats"]
