"""agentflux: an observability-first event pipeline for AI-agent runtimes.

The root package holds the configuration and the CLI. The parts live in subpackages:
``agentflux.schemas`` (event model), ``agentflux.runtime`` (emitter, components, simulator),
``agentflux.streams`` (Faust app, topics, codec, windows), ``agentflux.agents`` (stream
processors) and ``agentflux.sinks`` (DuckDB, Prometheus, dead letters).
"""

__version__ = "0.1.0"

from agentflux.config import ConfigError, Settings

__all__ = ["ConfigError", "Settings", "__version__"]
