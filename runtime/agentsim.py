"""A synthetic agent runtime that runs the real runtime components.

Each agent runs ReAct-style sessions: acquire a container from the :class:`ContainerPool`, then
think/act steps. Thinking builds the prompt with the :class:`PrefixRegistry` (recursive calls
share a cached prefix), routes it with the :class:`ModelRouter` (fallback on simulated provider
errors) and records an ``llm.call`` with the registry's token accounting. Acting calls simulated
tools through the :class:`ToolResultCache` (idempotent tools hit on repeated arguments), multi-
agent philosophies fan out through the :class:`AsyncExecutor`, long tool outputs go through the
:class:`ContextCompressor`, and resources feed the predictor via the :class:`PerformanceOptimizer`.
So the events show real cache hits, compressions, routing decisions, executor outcomes and pool
starts. Simulated latencies are real sleeps scaled by ``time_scale``.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass
from typing import Callable

from agentflux.runtime.cache import ToolResultCache
from agentflux.runtime.compress import ContextCompressor
from agentflux.runtime.executor import AsyncExecutor
from agentflux.runtime.instrument import EventSink, Instrumentation
from agentflux.runtime.optimizer import PerformanceOptimizer
from agentflux.runtime.prompt_cache import PrefixRegistry, PromptPart
from agentflux.runtime.router import AllModelsFailed, ModelRouter, ModelSpec
from agentflux.runtime.simulate import MODELS, PHILOSOPHIES, PROFILES, TOOLS
from agentflux.runtime.tool_output import log_sample

MODEL_SPECS = [ModelSpec(name, provider, frozenset({"tools", "long_context"}), pin, pout,
                         quality=0.6 + 0.1 * i, latency_ms=med)
               for i, (name, (provider, med, pin, pout)) in enumerate(MODELS.items())]


@dataclass
class AgentSimConfig:
    agents: int = 8
    sessions: int = 40
    seed: int = 42
    time_scale: float = 0.001  # 1 simulated second = 1 ms
    philosophies: tuple[str, ...] = PHILOSOPHIES
    provider_error_rate: float = 0.03


class SimulatedContainers:
    """A pool backend whose cold start is a scaled sleep (the pool logic itself is real)."""

    def __init__(self, rng: random.Random, time_scale: float):
        self.rng, self.scale, self.n = rng, time_scale, 0

    async def create(self, philosophy: str) -> str:
        await asyncio.sleep(self.rng.uniform(0.8, 2.5) * self.scale)
        self.n += 1
        return f"sim-{philosophy}-{self.n}"

    async def destroy(self, container_id: str) -> None:
        pass


class ComponentRuntime:
    def __init__(self, sink: EventSink, config: AgentSimConfig | None = None):
        self.config = c = config or AgentSimConfig()
        self.rng = random.Random(c.seed)
        self.instr = Instrumentation(sink, runtime="agentflux-agentsim")
        self.containers = SimulatedContainers(self.rng, c.time_scale)
        self.optimizer = PerformanceOptimizer(pool_size=3, instrumentation=self.instr,
                                              backend=self.containers)
        self.router = ModelRouter(MODEL_SPECS, instrumentation=self.instr, rng=self.rng,
                                  backoff_base_s=0.05 * c.time_scale)
        self.tool_cache = ToolResultCache(500, 300, instrumentation=self.instr)
        self.tool_cache.declare_idempotent(*[t for t, (_, _, idem) in TOOLS.items() if idem])
        self.prefixes = PrefixRegistry(instrumentation=self.instr)
        self.compressor = ContextCompressor(instrumentation=self.instr)
        self.executor = AsyncExecutor(max_concurrency=4, instrumentation=self.instr)
        self._docs = [f"Project file {i}: " + " ".join(f"symbol_{i}_{k} does step {k}." for k in range(220))
                      for i in range(6)]
        self.sessions_done = 0

    async def _sleep_ms(self, ms: float) -> None:
        await asyncio.sleep(ms / 1000 * self.config.time_scale)

    def _latency(self, median_ms: float) -> float:
        r = self.rng
        if r.random() < 0.05:
            return median_ms * 2 * r.paretovariate(1.6)
        return r.lognormvariate(math.log(median_ms), 0.5)

    async def _tool(self, instr: Instrumentation, tool: str, args: dict) -> str:
        med, err_rate, idem = TOOLS[tool]

        async def run(**kw) -> str:
            dur = self._latency(med)
            await self._sleep_ms(dur)
            if self.rng.random() < err_rate:
                raise RuntimeError(f"{tool} failed")
            return f"{tool} result for {sorted(kw.items())}"

        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            result, cached = await self.tool_cache.call(tool, args, run)
            status, error = "ok", None
        except RuntimeError as exc:
            result, cached, status, error = "", False, "error", str(exc)
        ms = (loop.time() - t0) * 1000 / self.config.time_scale
        instr.emit("tool.call", {"tool": tool, "duration_ms": round(ms, 3), "status": status,
                                 "error": error, "idempotent": idem, "cached": cached})
        return result

    async def _think(self, instr: Instrumentation, context: list[PromptPart], query: str,
                     philosophy: str) -> int:
        out_tokens = max(1, int(self.rng.lognormvariate(math.log(180), 0.6)))

        async def call(model: str) -> float:
            if self.rng.random() < self.config.provider_error_rate:
                raise ConnectionError(f"{model}: 529 overloaded")
            dur = self._latency(MODELS[model][1] * (0.5 + out_tokens / 400))
            await self._sleep_ms(dur)
            return dur

        try:
            model, dur = await self.router.call_with_fallback(call, {"tools"}, 2000, out_tokens,
                                                              philosophy=philosophy)
        except AllModelsFailed:
            return 0
        provider, _, _, pout = MODELS[model]
        built = self.prefixes.build([*context, PromptPart("query", query)],
                                    provider if provider in self.prefixes.prices else "openai")
        instr.emit("llm.call", {
            "provider": provider, "model": model, "duration_ms": round(dur, 3),
            "ttft_ms": round(dur * 0.2, 3), "input_tokens": built.input_tokens,
            "output_tokens": out_tokens, "cache_read_tokens": built.cache_read_tokens,
            "cache_write_tokens": built.cache_write_tokens,
            "cost_usd": round(built.cost_usd + out_tokens * pout / 1e6, 8), "status": "ok",
            "finish_reason": "tool_calls"})
        return out_tokens

    async def _session(self, agent: int, n: int) -> None:
        c, r = self.config, self.rng
        philosophy = c.philosophies[agent % len(c.philosophies)]
        instr = self.instr.child(agent_id=f"agent-{agent}", session_id=f"s{c.seed}-a{agent}-{n}",
                                 philosophy=philosophy)
        cid, _ = await self.optimizer.optimize_container_creation(
            {"philosophy": philosophy}, lambda: self.containers.create(philosophy))
        context = [PromptPart("system", f"You are a {philosophy} agent."),
                   PromptPart("shared", self._docs[agent % len(self._docs)])]
        steps, _ = PROFILES.get(philosophy, (4, ()))
        for step in range(max(1, int(r.expovariate(1 / steps)) + 1)):
            await self._think(instr, context, f"step {step}: what next?", philosophy)
            tools = [r.choice(list(TOOLS)) for _ in range(3 if philosophy == "multi_agent" else 1)]
            args = [{"q": f"topic-{r.randint(1, 12)}"} for _ in tools]
            if len(tools) > 1:
                res = await self.executor.gather({f"{t}#{i}": (lambda t=t, a=a: self._tool(instr, t, a))
                                                  for i, (t, a) in enumerate(zip(tools, args))})
                output = "\n".join(str(v) for v in res.results.values())
            else:
                output = await self._tool(instr, tools[0], args[0])
            if r.random() < 0.08:  # a long tool output (a log dump) that must be compressed
                sample = log_sample(r, 6000)
                output = self.compressor.maybe_compress(sample.text, sample.query)
            context.append(PromptPart("history", output[:2000]))
        self.optimizer.track_agent_resources(instr, {
            "philosophy": philosophy, "cpu_percent": round(r.gammavariate(2, 12), 2),
            "memory_usage_mb": round(r.lognormvariate(math.log(300), 0.3), 1),
            "execution_time": round(r.uniform(5, 60), 2)})
        await self.optimizer.release_container({"philosophy": philosophy}, cid)
        self.sessions_done += 1

    async def run(self, progress: Callable[[int], None] | None = None) -> int:
        """Run every session (agents in parallel); returns the number of sessions."""
        c = self.config

        async def agent_loop(agent: int) -> None:
            for n in range(agent, c.sessions, c.agents):
                await self._session(agent, n)
                if progress:
                    progress(1)

        async with asyncio.TaskGroup() as tg:
            for a in range(min(c.agents, c.sessions)):
                tg.create_task(agent_loop(a))
        self.tool_cache.report(1.0)
        return self.sessions_done
