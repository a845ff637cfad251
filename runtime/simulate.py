"""A synthetic agent runtime: N agents of several philosophies running ReAct-style loops.

Each session: a pool start, then think (routing decision + LLM call) / act (cache lookups + tool
call) steps until the agent answers, with context compression when the context grows, and
resource samples and cache statistics along the way. Latencies are heavy-tailed (log-normal body
with a Pareto tail), token counts log-normal, errors and timeouts at per-tool rates. Everything
is drawn from one seeded ``random.Random``, so the same seed and ``start_ns`` give byte-identical
events.

The normal fleet is healthy under the failure-pattern engine's default rules: tools fail
0.01-0.1 % of their calls, LLM calls 0.03 %, the ``tool_metadata`` and ``execution_patterns``
caches hit ~92 % / ~88 % (``cache.stats`` every 10 s of event time per agent; the specifications
ask 80 %+), the ``tool_results`` cache ~92 % of idempotent lookups, warm starts ~98.5 %, CPU below
80 %, ``memory_percent`` 40-60 %, sessions cost cents.

**Incidents** (:class:`IncidentSpec`, :data:`INCIDENTS`) are injected into that noise in event
time: each has a start offset from the first event, a duration and a target (a tool, a model, a
cache, a philosophy, an agent). :attr:`SyntheticRuntime.incidents` is the ground truth: the
incident, its target labels (as an alert would name them) and its event-time start and end.

With ``start_ns`` given (deterministic mode) events come out in event-time order across agents,
as a fleet's collector would see them: the agent furthest behind acts next, and a small buffer
releases an event once no agent can produce an earlier one. Event time is then independent of
the wall clock and can run much faster (``agentflux bench alerts`` covers an hour in a minute).
"""

from __future__ import annotations

import heapq
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
    "web_search": (420.0, 0.0005, True),
    "code_exec": (900.0, 0.001, False),
    "file_read": (12.0, 0.0001, True),
    "sql_query": (85.0, 0.0002, True),
    "http_get": (230.0, 0.0005, True),
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
# caches reported by interval statistics (cache.stats): name -> (normal hit rate, lookups a step)
STATS_CACHES = {"tool_metadata": (0.92, 3), "execution_patterns": (0.88, 1)}
TOOL_RESULT_HIT_RATE = 0.92  # of idempotent tools' tool_results lookups (well above the 80 % rule: binomial noise over a rule's 6 windows stays clear of it)
LLM_ERROR_RATE = 0.0003
WARM_START_RATE = 0.985
STATS_INTERVAL_S = 10.0
LLM_LATENCY_FACTOR = 1.0  # an LLM call's median: the model's x (0.5 + output tokens / 400)

# incident -> (what it does, the target's kind, the default target)
INCIDENTS: dict[str, tuple[str, str, str]] = {
    "error_burst": ("one tool fails ~100 % of its calls", "tool", "web_search"),
    "slow_model": ("one model's calls stall: ~50 s each, x10+ its latency", "model", "gpt-4o-mini"),
    "cache_collapse": ("one cache's hit rate drops to ~10 %", "cache", "tool_metadata"),
    "memory_climb": ("memory_percent of one philosophy's runtimes climbs past 85 % (to ~95 %)",
                     "philosophy", "multi_agent"),
    "cost_runaway": ("one agent's session loops on an expensive model with a growing context: "
                     "its cost runs far past any session budget", "agent", "0"),
    "fallback_storm": ("routing falls back from one model on every decision that prefers it "
                       "(most decisions)", "model", "claude-sonnet-4"),
}
SLOW_MODEL_FACTOR = 10.0  # at least; and a stalled call takes ~50 s (log-normal, sigma 0.3)
SLOW_MODEL_MEDIAN_MS = 50_000.0
COLLAPSED_HIT_RATE = 0.10
MEMORY_PEAK_PERCENT = 95.0
MEMORY_CLIMB_FRACTION = 0.25  # of the incident's duration spent climbing to the peak
RUNAWAY_MODEL = "claude-sonnet-4"
RUNAWAY_CONTEXT_TOKENS = 60_000  # and growing, never compressed


def incident_names() -> str:
    """The valid incident names with what each does, one per line (for help and errors)."""
    what_target = {"agent": "an agent's index"}
    return "\n".join(f"  {name:<15} {what} (target: {what_target.get(kind, 'a ' + kind)}; "
                     f"default {default})" for name, (what, kind, default) in INCIDENTS.items())


@dataclass(frozen=True)
class IncidentSpec:
    """An incident to inject: ``name`` (a key of :data:`INCIDENTS`), its start as seconds of
    event time after the simulator's start, its duration (``math.inf``: to the end of the run)
    and its target (None: the incident's default). ``parse`` reads the CLI form
    ``NAME[:TARGET]``."""

    name: str
    start_s: float = 0.0
    duration_s: float = math.inf
    target: str | None = None

    def __post_init__(self) -> None:
        if self.name not in INCIDENTS:
            raise ValueError(f"unknown incident {self.name!r}: use one of "
                             f"{', '.join(INCIDENTS)}")
        if self.start_s < 0 or not self.duration_s > 0:
            raise ValueError(f"incident {self.name}: start_s must be >= 0 and duration_s > 0, "
                             f"got {self.start_s!r} and {self.duration_s!r}")
        kind = INCIDENTS[self.name][1]
        valid = {"tool": TOOLS, "model": MODELS, "cache": (*STATS_CACHES, "tool_results"),
                 "philosophy": None, "agent": None}[kind]
        if valid is not None and self.resolved_target not in valid:
            raise ValueError(f"incident {self.name}: unknown {kind} {self.resolved_target!r}; "
                             f"use one of {', '.join(valid)}")
        if kind == "agent" and not self.resolved_target.isdigit():
            raise ValueError(f"incident {self.name}: the target is an agent's index (0, 1, ...), "
                             f"got {self.resolved_target!r}")

    @property
    def resolved_target(self) -> str:
        return self.target if self.target is not None else INCIDENTS[self.name][2]

    @classmethod
    def parse(cls, text: str, **kw) -> "IncidentSpec":
        name, _, target = text.partition(":")
        return cls(name.strip(), target=target.strip() or None, **kw)


@dataclass(frozen=True)
class Incident:
    """Ground truth of one injected incident: what, the labels an alert on it names (``tool``,
    ``model``, ``cache``, ``philosophy``, ``session`` / ``agent``), and its event-time span
    ``[start_ns, end_ns)`` (``end_ns`` None: until the run ends)."""

    name: str
    labels: dict[str, str]
    start_ns: int
    end_ns: int | None

    def active(self, ts: int) -> bool:
        return self.start_ns <= ts and (self.end_ns is None or ts < self.end_ns)

    def to_dict(self) -> dict:
        return {"name": self.name, "labels": dict(self.labels), "start_ns": self.start_ns,
                "end_ns": self.end_ns}


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
    incidents: tuple[IncidentSpec, ...] = ()

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ValueError(f"agents must be >= 1, got {self.agents!r}")
        if self.events < 0:
            raise ValueError(f"events must be >= 0, got {self.events!r}")
        if not self.philosophies:
            raise ValueError("philosophies must name at least one philosophy")
        self.incidents = tuple(self.incidents)
        for spec in self.incidents:
            kind = INCIDENTS[spec.name][1]
            if kind == "philosophy" and spec.resolved_target not in self.philosophies:
                raise ValueError(f"incident {spec.name}: no agent runs the philosophy "
                                 f"{spec.resolved_target!r}; use one of "
                                 f"{', '.join(self.philosophies)}")
            if kind == "agent" and int(spec.resolved_target) >= self.agents:
                raise ValueError(f"incident {spec.name}: agent {spec.resolved_target} does not "
                                 f"exist (agents 0..{self.agents - 1})")


@dataclass
class _Agent:
    idx: int
    philosophy: str
    clock_ns: int
    session: int = 0
    steps: Iterator[dict] | None = None
    source: dict = field(default_factory=dict)
    # cache.stats deltas since the last report: cache -> [hits, misses]
    stats: dict = field(default_factory=dict)
    stats_due_ns: int = 0
    runaways: list = field(default_factory=list)  # this agent's cost_runaway incidents, in order


class SyntheticRuntime:
    def __init__(self, config: SimConfig | None = None):
        self.config = config or SimConfig()
        self.rng = random.Random(self.config.seed)
        self._live = self.config.start_ns is None
        start = time.time_ns() if self._live else self.config.start_ns
        self.start_ns = start
        self.agents = [
            _Agent(i, self.config.philosophies[i % len(self.config.philosophies)], start,
                   source={"runtime": self.config.runtime, "host": self.config.host, "pid": 1000 + i},
                   stats_due_ns=start + int(STATS_INTERVAL_S * 1e9 * (i + 1) / self.config.agents))
            for i in range(self.config.agents)
        ]
        self.incidents: list[Incident] = []
        for k, spec in enumerate(self.config.incidents):
            t0 = start + int(spec.start_s * 1e9)
            t1 = None if math.isinf(spec.duration_s) else t0 + int(spec.duration_s * 1e9)
            kind, target = INCIDENTS[spec.name][1], spec.resolved_target
            if kind == "agent":
                agent = self.agents[int(target)]
                labels = {"session": f"s{self.config.seed}-a{agent.idx}-runaway{k}",
                          "agent": f"agent-{agent.idx}"}
            else:
                labels = {kind: target}
            inc = Incident(spec.name, labels, t0, t1)
            self.incidents.append(inc)
            if kind == "agent":
                agent.runaways.append(inc)
        self._by_name: dict[str, list[Incident]] = {}
        for inc in self.incidents:
            self._by_name.setdefault(inc.name, []).append(inc)

    # --- incidents ---------------------------------------------------------------------------
    def _active(self, name: str, label: str, value: str, ts: int) -> Incident | None:
        for inc in self._by_name.get(name, ()):
            if inc.labels.get(label) == value and inc.active(ts):
                return inc
        return None

    def _due_runaway(self, agent: _Agent) -> Incident | None:
        """The agent's cost_runaway that has started and not ended, if its session has not run."""
        while agent.runaways and agent.runaways[0].end_ns is not None \
                and agent.runaways[0].end_ns <= agent.clock_ns:
            agent.runaways.pop(0)  # it ended before the agent got to it
        if agent.runaways and agent.runaways[0].start_ns <= agent.clock_ns:
            return agent.runaways[0]
        return None

    # --- distributions ---------------------------------------------------------------------
    def _latency(self, median_ms: float) -> float:
        r = self.rng
        if r.random() < 0.02:  # Pareto tail: 2 % of calls are 1.5x-10x+ slower
            return round(median_ms * 1.5 * r.paretovariate(2.5), 3)
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

    def _llm_call(self, agent: _Agent, sid: str, trace: str, model: str, context_tokens: int,
                  step: int, last: bool) -> tuple[dict, int]:
        r = self.rng
        provider, med, pin, pout = MODELS[model]
        out_tok = self._tokens(180)
        cached = int(context_tokens * r.uniform(0.3, 0.9)) if step else 0
        dur = self._latency(med * LLM_LATENCY_FACTOR * (0.5 + out_tok / 400))
        if self._active("slow_model", "model", model, agent.clock_ns):
            dur = round(max(dur * SLOW_MODEL_FACTOR,
                            r.lognormvariate(math.log(SLOW_MODEL_MEDIAN_MS), 0.3)), 3)
        status = "ok" if r.random() > LLM_ERROR_RATE else r.choice(["error", "timeout"])
        ev = self._event(agent, sid, "llm.call", {
            "provider": provider, "model": model, "duration_ms": dur,
            "ttft_ms": round(dur * r.uniform(0.1, 0.3), 3), "input_tokens": context_tokens,
            "output_tokens": out_tok, "cache_read_tokens": cached,
            "cache_write_tokens": 0 if step else context_tokens,
            "cost_usd": round(((context_tokens - cached) * pin + cached * pin * 0.1
                               + out_tok * pout) / 1e6, 8),
            "status": status, "finish_reason": "stop" if last else "tool_calls"}, dur, trace)
        return ev, out_tok

    def _routing(self, agent: _Agent, sid: str, trace: str, models: tuple[str, ...]) -> tuple[dict, str]:
        r = self.rng
        scores = {m: round(r.random(), 4) for m in models}
        chosen = max(scores, key=scores.get)
        attrs = {"candidates": list(models), "chosen": chosen,
                 "decision_us": round(r.uniform(4, 40), 2), "scores": scores,
                 "weights": {"cost": 0.4, "latency": 0.3, "quality": 0.3}, "attempt": 1}
        for m in models:  # a model in a fallback storm is tried first, fails, and is passed over
            if len(models) > 1 and self._active("fallback_storm", "model", m, agent.clock_ns):
                rest = {k: v for k, v in scores.items() if k != m}
                attrs.update(chosen=max(rest, key=rest.get), fallback_from=m, attempt=2,
                             decision_us=round(attrs["decision_us"] + r.uniform(200, 2000), 2))
                break
        return self._event(agent, sid, "routing.decision", attrs, 0.05, trace), attrs["chosen"]

    def _cache_stats(self, agent: _Agent, sid: str, trace: str) -> Iterator[dict]:
        """The agent's interval statistics of the stats-reported caches, once per interval."""
        if agent.clock_ns < agent.stats_due_ns:
            return
        interval = STATS_INTERVAL_S + (agent.clock_ns - agent.stats_due_ns) / 1e9
        agent.stats_due_ns = agent.clock_ns + int(STATS_INTERVAL_S * 1e9)
        for cache in STATS_CACHES:
            hits, misses = agent.stats.pop(cache, (0, 0))
            if hits + misses:
                yield self._event(agent, sid, "cache.stats", {
                    "cache": cache, "interval_s": round(interval, 3), "hits": hits,
                    "misses": misses, "expired": 0, "evictions": 0,
                    "size": 200 + agent.idx}, 0.01, trace)

    def _count_lookups(self, agent: _Agent) -> None:
        r = self.rng
        for cache, (rate, per_step) in STATS_CACHES.items():
            if self._active("cache_collapse", "cache", cache, agent.clock_ns):
                rate = COLLAPSED_HIT_RATE
            hits = sum(r.random() < rate for _ in range(per_step))
            h, m = agent.stats.get(cache, (0, 0))
            agent.stats[cache] = (h + hits, m + per_step - hits)

    def _resource(self, agent: _Agent, sid: str, trace: str) -> dict:
        r = self.rng
        memory = r.uniform(40.0, 60.0)
        climb = self._active("memory_climb", "philosophy", agent.philosophy, agent.clock_ns)
        if climb is not None:
            span = ((climb.end_ns - climb.start_ns) if climb.end_ns is not None
                    else 600 * 10**9) * MEMORY_CLIMB_FRACTION
            progress = min(1.0, (agent.clock_ns - climb.start_ns) / span)
            memory = memory + (MEMORY_PEAK_PERCENT - 2.0 - memory) * progress + r.uniform(-1, 2)
        return self._event(agent, sid, "resource.sample", {
            "cpu_percent": round(min(78.0, 5 + r.gammavariate(2, 9)), 2),
            "memory_mb": round(memory * 8.0, 1),  # of an 800 MB limit
            "memory_percent": round(min(100.0, memory), 2),
            "execution_time_s": round((agent.clock_ns % 10**12) / 1e9, 3)}, 0.1, trace)

    def _session(self, agent: _Agent) -> Iterator[dict]:
        runaway = self._due_runaway(agent)
        if runaway is not None:
            agent.runaways.pop(0)
            yield from self._runaway_session(agent, runaway)
            return
        r = self.rng
        agent.session += 1
        sid = f"s{self.config.seed}-a{agent.idx}-{agent.session}"
        trace = f"{r.getrandbits(128):032x}"
        mean_steps, models = PROFILES.get(agent.philosophy, (4, tuple(MODELS)))
        warm = r.random() < WARM_START_RATE
        yield self._event(agent, sid, "pool.acquire", {
            "pool": agent.philosophy, "warm": warm,
            "startup_ms": round(r.uniform(5, 30) if warm else r.uniform(400, 2500), 2),
            "available": r.randint(1, 4), "in_use": r.randint(1, 8), "target": 5}, 1, trace)
        context_tokens = self._tokens(1200, 0.3)
        steps = max(1, int(r.expovariate(1 / mean_steps)) + 1)
        for step in range(steps):
            ev, chosen = self._routing(agent, sid, trace, models)
            yield ev
            last = step == steps - 1 or self._due_runaway(agent) is not None
            ev, out_tok = self._llm_call(agent, sid, trace, chosen, context_tokens, step, last)
            yield ev
            context_tokens += out_tok
            if last:
                break  # the answer (or the agent is pulled into a runaway: the session ends)
            tool = r.choice(list(TOOLS))
            tmed, err_rate, idem = TOOLS[tool]
            failing = self._active("error_burst", "tool", tool, agent.clock_ns) is not None
            hit = False
            # only idempotent tools' results are cached; a failing tool's calls go around the
            # cache (a runtime retries a failure uncached), so its hit rate stays as it was
            if idem and not failing:
                rate = TOOL_RESULT_HIT_RATE
                if self._active("cache_collapse", "cache", "tool_results", agent.clock_ns):
                    rate = COLLAPSED_HIT_RATE
                hit = r.random() < rate
                yield self._event(agent, sid, "cache.lookup", {
                    "cache": "tool_results", "outcome": "hit" if hit else "miss", "tool": tool,
                    "latency_ns": int(r.uniform(300, 3000))}, 0.01, trace)
            self._count_lookups(agent)
            if hit:
                tdur, tstatus, terr = round(r.uniform(0.05, 0.5), 3), "ok", None
            else:
                tdur = self._latency(tmed)
                roll = r.random()
                if failing:
                    err_rate = 0.98
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
                yield self._resource(agent, sid, trace)
            yield from self._cache_stats(agent, sid, trace)
        yield self._event(agent, sid, "pool.release", {
            "pool": agent.philosophy, "available": r.randint(1, 5), "in_use": r.randint(0, 7),
            "target": 5}, 1, trace)

    def _runaway_session(self, agent: _Agent, inc: Incident) -> Iterator[dict]:
        """A session stuck in a loop: the most expensive model, a context that only grows, a
        tool call between calls, until the incident ends (or, in live mode, for ever)."""
        r = self.rng
        sid = inc.labels["session"]
        trace = f"{r.getrandbits(128):032x}"
        yield self._event(agent, sid, "pool.acquire", {
            "pool": agent.philosophy, "warm": True, "startup_ms": round(r.uniform(5, 30), 2),
            "available": r.randint(1, 4), "in_use": r.randint(1, 8), "target": 5}, 1, trace)
        context_tokens = RUNAWAY_CONTEXT_TOKENS
        step = 0
        while inc.active(agent.clock_ns):
            ev, _ = self._routing(agent, sid, trace, (RUNAWAY_MODEL,))
            yield ev
            ev, out_tok = self._llm_call(agent, sid, trace, RUNAWAY_MODEL, context_tokens, step,
                                         False)
            yield ev
            context_tokens += out_tok + self._tokens(900, 0.9)
            step += 1
            tool = r.choice(("file_read", "sql_query"))
            tdur = self._latency(TOOLS[tool][0])
            yield self._event(agent, sid, "tool.call", {
                "tool": tool, "duration_ms": tdur, "status": "ok", "error": None,
                "idempotent": True, "cached": False}, tdur, trace)
            if r.random() < 0.2:
                yield self._resource(agent, sid, trace)
            yield from self._cache_stats(agent, sid, trace)
        yield self._event(agent, sid, "pool.release", {
            "pool": agent.philosophy, "available": r.randint(1, 5), "in_use": r.randint(0, 7),
            "target": 5}, 1, trace)

    def _next(self, agent: _Agent) -> dict:
        while True:
            if agent.steps is None:
                agent.steps = self._session(agent)
            ev = next(agent.steps, None)
            if ev is not None:
                return ev
            agent.steps = None

    def events(self) -> Iterator[dict]:
        """Exactly ``config.events`` events, sessions of all agents interleaved (in event-time
        order in deterministic mode)."""
        n = self.config.events
        if self._live:
            r = self.rng
            for _ in range(n):
                yield self._next(self.agents[r.randrange(len(self.agents))])
            return
        # The agent furthest behind acts next; its event ends after its clock (every event
        # advances it), so an event no later than the earliest agent clock can be released:
        # nothing generated after it can be earlier.
        behind = [(a.clock_ns, a.idx) for a in self.agents]
        heapq.heapify(behind)
        ready: list[tuple[int, int, dict]] = []
        made = out = 0
        while out < n:
            _, idx = heapq.heappop(behind)
            agent = self.agents[idx]
            ev = self._next(agent)
            heapq.heappush(ready, (ev["ts"], made, ev))
            made += 1
            heapq.heappush(behind, (agent.clock_ns, idx))
            low = behind[0][0]
            while ready and ready[0][0] <= low and out < n:
                yield heapq.heappop(ready)[2]
                out += 1

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


def accelerated(config: SimConfig, end_ns: int | None = None, lead_in: float = 0.2) -> SimConfig:
    """``config`` in deterministic, accelerated event time that ends at ``end_ns`` (default:
    now), with each of its incidents (start offsets ignored) starting after the first
    ``lead_in`` of the run and lasting to its end: how ``agentflux simulate --incident`` and
    ``agentflux demo --incident`` show an alert firing, a run of a few seconds covering many
    minutes of event time. Two dry runs find the run's event-time span (deterministic: the real
    run spans the same)."""
    if end_ns is None:
        end_ns = time.time_ns()

    def span(cfg: SimConfig) -> int:
        last = 0
        for ev in SyntheticRuntime(cfg).events():
            last = ev["ts"]
        return last

    healthy = SimConfig(**{**config.__dict__, "start_ns": 0, "incidents": ()})
    start_s = span(healthy) / 1e9 * lead_in
    incidents = tuple(IncidentSpec(s.name, start_s, math.inf, s.target) for s in config.incidents)
    with_incidents = SimConfig(**{**config.__dict__, "start_ns": 0, "incidents": incidents})
    total = span(with_incidents)
    return SimConfig(**{**config.__dict__, "start_ns": end_ns - total - 1,
                        "incidents": incidents})
