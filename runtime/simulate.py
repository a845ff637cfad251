"""A synthetic agent runtime: N agents of several philosophies running ReAct-style loops.

Each session: a pool start, then think (routing decision + LLM call) / act (cache lookup + tool
call) steps until the agent answers, with context compression when the context grows, and
resource samples along the way. Latencies are heavy-tailed (log-normal body with a Pareto tail),
token counts log-normal, errors and timeouts at per-tool rates. Everything is drawn from one
seeded ``random.Random``, so the same seed and ``start_ns`` give byte-identical events.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from agentflux.schemas.ids import uuid7
from agentflux.schemas.wire import envelope

PHILOSOPHIES = ("react", "chain_of_thought", "multi_agent", "autonomous")
# tool -> (median ms, error rate, idempotent)
TOOLS = {
    "web_search": (420.0, 0.04, True),
    "code_exec": (900.0, 0.08, False),
    "file_read": (12.0, 0.01, True),
    "sql_query": (85.0, 0.03, True),
    "http_get": (230.0, 0.05, True),
}
# model -> (provider, median ms, input $/Mtok, output $/Mtok)
MODELS = {
    "gpt-4o": ("openai", 1800.0, 2.5, 10.0),
    "gpt-4o-mini": ("openai", 700.0, 0.15, 0.6),
    "claude-sonnet-4": ("anthropic", 2100.0, 3.0, 15.0),
    "claude-haiku-4": ("anthropic", 650.0, 0.8, 4.0),
}
# philosophy -> (mean steps, preferred models)
PROFILES = {
    "react": (4, ("gpt-4o-mini", "claude-haiku-4")),
    "chain_of_thought": (3, ("gpt-4o", "claude-sonnet-4")),
    "multi_agent": (6, ("gpt-4o-mini", "claude-sonnet-4")),
    "autonomous": (8, ("gpt-4o", "claude-sonnet-4", "gpt-4o-mini")),
}


@dataclass
class SimConfig:
    agents: int = 8
    events: int = 10_000
    seed: int = 42
    philosophies: tuple[str, ...] = PHILOSOPHIES
    # Event time of the first event, then advanced by the simulated durations: byte-identical
    # output for a seed. None: live mode, event time is the wall clock at generation (as a real
    # runtime's would be; ids and timestamps then differ between runs, nothing else does).
    start_ns: int | None = None
    runtime: str = "agentflux-sim"
    host: str = "sim-host"

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ValueError(f"agents must be >= 1, got {self.agents!r}")
        if self.events < 0:
            raise ValueError(f"events must be >= 0, got {self.events!r}")
        if not self.philosophies:
            raise ValueError("philosophies must name at least one philosophy")


@dataclass
class _Agent:
    idx: int
    philosophy: str
    clock_ns: int
    session: int = 0
    steps: Iterator[dict] | None = None
    source: dict = field(default_factory=dict)


class SyntheticRuntime:
    def __init__(self, config: SimConfig | None = None):
        self.config = config or SimConfig()
        self.rng = random.Random(self.config.seed)
        self._live = self.config.start_ns is None
        start = time.time_ns() if self._live else self.config.start_ns
        self.agents = [
            _Agent(i, self.config.philosophies[i % len(self.config.philosophies)], start,
                   source={"runtime": self.config.runtime, "host": self.config.host, "pid": 1000 + i})
            for i in range(self.config.agents)
        ]

    # --- distributions ---------------------------------------------------------------------
    def _latency(self, median_ms: float) -> float:
        r = self.rng
        if r.random() < 0.05:  # Pareto tail: 5 % of calls are 2x-20x+ slower
            return round(median_ms * 2 * r.paretovariate(1.6), 3)
        return round(r.lognormvariate(math.log(median_ms), 0.5), 3)

    def _tokens(self, median: float, sigma: float = 0.6) -> int:
        return max(1, int(self.rng.lognormvariate(math.log(median), sigma)))

    # --- one session ------------------------------------------------------------------------
    def _event(self, agent: _Agent, sid: str, type_: str, attrs: dict, advance_ms: float,
               trace_id: str) -> dict:
        if self._live:
            agent.clock_ns = max(time.time_ns(), agent.clock_ns + 1)
        else:
            agent.clock_ns += int(advance_ms * 1e6) + 1000
        span_id = f"{self.rng.getrandbits(64):016x}"  # drawn before the id: the seeded order
        return envelope(type_, attrs, source=agent.source, agent_id=f"agent-{agent.idx}",
                        session_id=sid, philosophy=agent.philosophy, ts=agent.clock_ns,
                        id=uuid7(agent.clock_ns, self.rng), trace_id=trace_id, span_id=span_id)

    def _session(self, agent: _Agent) -> Iterator[dict]:
        r = self.rng
        agent.session += 1
        sid = f"s{self.config.seed}-a{agent.idx}-{agent.session}"
        trace = f"{r.getrandbits(128):032x}"
        mean_steps, models = PROFILES.get(agent.philosophy, (4, tuple(MODELS)))
        warm = r.random() < 0.66
        yield self._event(agent, sid, "pool.acquire", {
            "pool": agent.philosophy, "warm": warm,
            "startup_ms": round(r.uniform(5, 30) if warm else r.uniform(400, 2500), 2),
            "available": r.randint(0, 4), "in_use": r.randint(1, 8), "target": 5}, 1, trace)
        context_tokens = self._tokens(1200, 0.3)
        steps = max(1, int(r.expovariate(1 / mean_steps)) + 1)
        for step in range(steps):
            scores = {m: round(r.random(), 4) for m in models}
            chosen = max(scores, key=scores.get)
            yield self._event(agent, sid, "routing.decision", {
                "candidates": list(models), "chosen": chosen, "decision_us": round(r.uniform(4, 40), 2),
                "scores": scores, "weights": {"cost": 0.4, "latency": 0.3, "quality": 0.3},
                "attempt": 1}, 0.05, trace)
            provider, med, pin, pout = MODELS[chosen]
            out_tok = self._tokens(180)
            cached = int(context_tokens * r.uniform(0.3, 0.9)) if step else 0
            dur = self._latency(med * (0.5 + out_tok / 400))
            status = "ok" if r.random() > 0.01 else r.choice(["error", "timeout"])
            yield self._event(agent, sid, "llm.call", {
                "provider": provider, "model": chosen, "duration_ms": dur,
                "ttft_ms": round(dur * r.uniform(0.1, 0.3), 3), "input_tokens": context_tokens,
                "output_tokens": out_tok, "cache_read_tokens": cached,
                "cache_write_tokens": 0 if step else context_tokens,
                "cost_usd": round(((context_tokens - cached) * pin + cached * pin * 0.1
                                   + out_tok * pout) / 1e6, 8),
                "status": status, "finish_reason": "tool_calls" if step < steps - 1 else "stop"},
                dur, trace)
            context_tokens += out_tok
            if step == steps - 1:
                break
            tool = r.choice(list(TOOLS))
            tmed, err_rate, idem = TOOLS[tool]
            hit = idem and r.random() < 0.35
            yield self._event(agent, sid, "cache.lookup", {
                "cache": "tool_results", "outcome": "hit" if hit else "miss",
                "latency_ns": int(r.uniform(300, 3000))}, 0.01, trace)
            if hit:
                tdur, tstatus, terr = round(r.uniform(0.05, 0.5), 3), "ok", None
            else:
                tdur = self._latency(tmed)
                roll = r.random()
                tstatus = "ok" if roll > err_rate else ("timeout" if roll < err_rate / 4 else "error")
                terr = None if tstatus == "ok" else f"{tool} failed: {tstatus}"
            yield self._event(agent, sid, "tool.call", {
                "tool": tool, "duration_ms": tdur, "status": tstatus, "error": terr,
                "idempotent": idem, "cached": hit}, tdur, trace)
            context_tokens += self._tokens(900, 0.9)
            if context_tokens > 5000:
                after = min(2000, context_tokens // 3)
                yield self._event(agent, sid, "context.compress", {
                    "strategy": "extractive", "tokens_before": context_tokens, "tokens_after": after,
                    "duration_ms": round(r.uniform(5, 60), 3), "preserved": r.randint(3, 12),
                    "quality": round(r.uniform(0.85, 1.0), 4)}, 5, trace)
                context_tokens = after
            if r.random() < 0.2:
                yield self._event(agent, sid, "resource.sample", {
                    "cpu_percent": round(min(100.0, r.gammavariate(2, 12)), 2),
                    "memory_mb": round(r.lognormvariate(math.log(350), 0.4), 1),
                    "execution_time_s": round((agent.clock_ns % 10**12) / 1e9, 3)}, 0.1, trace)
        yield self._event(agent, sid, "pool.release", {
            "pool": agent.philosophy, "available": r.randint(1, 5), "in_use": r.randint(0, 7),
            "target": 5}, 1, trace)

    def events(self) -> Iterator[dict]:
        """Exactly ``config.events`` events, sessions of all agents interleaved."""
        r = self.rng
        for _ in range(self.config.events):
            agent = self.agents[r.randrange(len(self.agents))]
            while True:
                if agent.steps is None:
                    agent.steps = self._session(agent)
                ev = next(agent.steps, None)
                if ev is not None:
                    break
                agent.steps = None
            yield ev

    def run(self, emit: Callable[[dict], object], progress: Callable[[int], None] | None = None,
            every: int = 1000) -> int:
        """Feed every event to ``emit`` (e.g. ``Emitter.emit``); returns how many were produced."""
        n = 0
        for ev in self.events():
            emit(ev)
            n += 1
            if progress is not None and n % every == 0:
                progress(every)
        if progress is not None and n % every:
            progress(n % every)
        return n
