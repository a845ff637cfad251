"""Cost/latency-aware model routing with a capability cache and a fallback chain.

Score of a candidate = ``w_cost * (1 - cost_n) + w_latency * (1 - latency_n) + w_quality * quality``
where ``cost_n`` and ``latency_n`` are min-max normalised over the candidates (estimated cost of
the request from per-token prices; observed latency as an EWMA). The capability cache maps a set
of required capabilities to the models that have them, so routing does not rescan the catalogue.
``call_with_fallback`` tries models best-first, with full-jitter exponential backoff between
attempts; every decision emits ``routing.decision`` with the scores and the decision time.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Mapping, TypeVar

from agentflux.runtime.instrument import Instrumentation

T = TypeVar("T")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    provider: str
    capabilities: frozenset[str]
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    quality: float = 0.5  # 0..1, from offline evaluation
    latency_ms: float = 1000.0  # prior until observed


@dataclass(frozen=True)
class Decision:
    chosen: str
    candidates: tuple[str, ...]
    scores: dict[str, float]
    decision_us: float
    ranked: tuple[str, ...] = ()


class NoCapableModel(LookupError):
    """No model has every required capability."""


class AllModelsFailed(RuntimeError):
    def __init__(self, errors: dict[str, BaseException]):
        super().__init__("every model in the fallback chain failed: "
                         + "; ".join(f"{m}: {e!r}" for m, e in errors.items()))
        self.errors = errors


class ModelRouter:
    def __init__(self, models: Iterable[ModelSpec], *,
                 weights: Mapping[str, float] | None = None, latency_alpha: float = 0.2,
                 backoff_base_s: float = 0.05, backoff_max_s: float = 2.0, max_attempts: int = 3,
                 instrumentation: Instrumentation | None = None, rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep):
        self._models: dict[str, ModelSpec] = {}
        self._latency: dict[str, float] = {}
        w = dict(weights or {"cost": 0.4, "latency": 0.3, "quality": 0.3})
        unknown = set(w) - {"cost", "latency", "quality"}
        if unknown or any(v < 0 for v in w.values()) or not sum(w.values()):
            raise ValueError(f"weights must be non-negative cost/latency/quality, got {w!r}")
        self.weights = {k: w.get(k, 0.0) for k in ("cost", "latency", "quality")}
        self.latency_alpha = latency_alpha
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_attempts = max_attempts
        self._instr = instrumentation
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._capable: dict[frozenset[str], tuple[str, ...]] = {}
        self.cache_hits = self.cache_misses = 0
        for m in models:
            self.add_model(m)

    def add_model(self, model: ModelSpec) -> None:
        self._models[model.name] = model
        self._latency.setdefault(model.name, model.latency_ms)
        self._capable.clear()  # the capability cache is derived from the catalogue

    def observe_latency(self, model: str, ms: float) -> None:
        a = self.latency_alpha
        self._latency[model] = (1 - a) * self._latency.get(model, ms) + a * ms

    def capable(self, required: Iterable[str] = ()) -> tuple[str, ...]:
        key = frozenset(required)
        hit = self._capable.get(key)
        if hit is not None:
            self.cache_hits += 1
            return hit
        self.cache_misses += 1
        names = tuple(n for n, m in self._models.items() if key <= m.capabilities)
        self._capable[key] = names
        return names

    def route(self, required: Iterable[str] = (), input_tokens: int = 1000,
              output_tokens: int = 200, exclude: Iterable[str] = (), *,
              philosophy: str | None = None, fallback_from: str | None = None,
              attempt: int = 1) -> Decision:
        t0 = time.perf_counter_ns()
        excl = set(exclude)
        names = [n for n in self.capable(required) if n not in excl]
        if not names:
            raise NoCapableModel(f"no model offers {sorted(set(required))} "
                                 f"(excluding {sorted(excl)})")
        models = self._models
        costs = [(models[n].input_usd_per_mtok * input_tokens
                  + models[n].output_usd_per_mtok * output_tokens) / 1e6 for n in names]
        lats = [self._latency[n] for n in names]
        c_lo, c_span = min(costs), (max(costs) - min(costs)) or 1.0
        l_lo, l_span = min(lats), (max(lats) - min(lats)) or 1.0
        wc, wl, wq = self.weights["cost"], self.weights["latency"], self.weights["quality"]
        scores = {n: round(wc * (1 - (c - c_lo) / c_span) + wl * (1 - (lt - l_lo) / l_span)
                           + wq * models[n].quality, 6)
                  for n, c, lt in zip(names, costs, lats)}
        ranked = tuple(sorted(names, key=lambda n: -scores[n]))
        us = (time.perf_counter_ns() - t0) / 1000
        d = Decision(ranked[0], tuple(names), scores, us, ranked)
        if self._instr is not None:
            attrs = {"candidates": list(names), "chosen": d.chosen, "decision_us": round(us, 3),
                     "scores": scores, "weights": self.weights, "attempt": attempt}
            if fallback_from:
                attrs["fallback_from"] = fallback_from
            self._instr.emit("routing.decision", attrs, philosophy=philosophy)
        return d

    def backoff_s(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))]."""
        return self._rng.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)))

    async def call_with_fallback(self, call: Callable[[str], Awaitable[T]],
                                 required: Iterable[str] = (), input_tokens: int = 1000,
                                 output_tokens: int = 200, *, philosophy: str | None = None
                                 ) -> tuple[str, T]:
        """``(model, result)`` from the best model that succeeds within ``max_attempts``."""
        required = frozenset(required)
        errors: dict[str, BaseException] = {}
        previous = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                d = self.route(required, input_tokens, output_tokens, exclude=errors,
                               philosophy=philosophy, fallback_from=previous, attempt=attempt)
            except NoCapableModel:
                break
            t0 = time.perf_counter()
            try:
                result = await call(d.chosen)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                errors[d.chosen] = exc
                previous = d.chosen
                if attempt < self.max_attempts:
                    await self._sleep(self.backoff_s(attempt))
                continue
            self.observe_latency(d.chosen, (time.perf_counter() - t0) * 1000)
            return d.chosen, result
        raise AllModelsFailed(errors)
