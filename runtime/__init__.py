"""What runs inside an agent runtime: the emitter, instrumented components, the simulator."""

from agentflux.runtime.cache import CacheEntry, PerformanceCache, ToolResultCache
from agentflux.runtime.compress import CompressionResult, ContextCompressor, Message
from agentflux.runtime.emitter import Emitter, EmitterStats
from agentflux.runtime.executor import AsyncExecutor, Budget, BudgetExceeded, ParallelResult, charge
from agentflux.runtime.instrument import CountingEmitter, Instrumentation
from agentflux.runtime.optimizer import PerformanceOptimizer, get_performance_optimizer
from agentflux.runtime.pool import ContainerPool, DockerBackend, ProcessBackend
from agentflux.runtime.prompt_cache import PrefixRegistry, PromptPart, ProviderPricing
from agentflux.runtime.resources import ResourcePredictor, ResourceSampler, optimize_memory
from agentflux.runtime.router import AllModelsFailed, ModelRouter, ModelSpec, NoCapableModel

__all__ = [
    "AllModelsFailed", "AsyncExecutor", "Budget", "BudgetExceeded", "CacheEntry",
    "CompressionResult", "ContainerPool", "ContextCompressor", "CountingEmitter", "DockerBackend",
    "Emitter", "EmitterStats", "Instrumentation", "Message", "ModelRouter", "ModelSpec",
    "NoCapableModel", "ParallelResult", "PerformanceCache", "PerformanceOptimizer",
    "PrefixRegistry", "ProcessBackend", "PromptPart", "ProviderPricing", "ResourcePredictor",
    "ResourceSampler", "ToolResultCache", "charge", "get_performance_optimizer", "optimize_memory",
]
