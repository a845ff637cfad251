"""An async executor for recursive/parallel agent calls.

* ``gather``: run named calls in an ``asyncio.TaskGroup`` with at most ``max_concurrency`` at a
  time; a failing call does not cancel the others: its error is reported and the best-effort
  result holds what succeeded.
* ``speculative``: run alternatives at once; the first success wins and the losers are
  cancelled.
* A :class:`Budget` (tokens, cost, wall time) is enforced across the parallel calls: calls
  report usage with ``charge``; once a limit is crossed, calls not yet finished are cancelled
  and reported as such.

Every call emits ``executor.task`` (outcome ok/won/cancelled/failed, duration, concurrency).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from agentflux.runtime.instrument import Instrumentation

Call = Callable[[], Awaitable[Any]]


class BudgetExceeded(RuntimeError):
    pass


@dataclass
class Budget:
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_wall_s: float | None = None
    tokens: int = 0
    cost_usd: float = 0.0

    def charge(self, tokens: int = 0, cost_usd: float = 0.0) -> None:
        self.tokens += tokens
        self.cost_usd += cost_usd
        if self.exceeded():
            raise BudgetExceeded(f"budget exceeded: {self.tokens} tokens (max {self.max_tokens}), "
                                 f"${self.cost_usd:.4f} (max {self.max_cost_usd})")

    def exceeded(self) -> bool:
        return ((self.max_tokens is not None and self.tokens > self.max_tokens)
                or (self.max_cost_usd is not None and self.cost_usd > self.max_cost_usd))

    def as_attrs(self) -> dict[str, float]:
        out = {"tokens": float(self.tokens), "cost_usd": round(self.cost_usd, 6)}
        if self.max_tokens is not None:
            out["max_tokens"] = float(self.max_tokens)
        if self.max_cost_usd is not None:
            out["max_cost_usd"] = self.max_cost_usd
        if self.max_wall_s is not None:
            out["max_wall_s"] = self.max_wall_s
        return out


_current_budget: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "agentflux_budget", default=None)


def charge(tokens: int = 0, cost_usd: float = 0.0) -> None:
    """Report usage from inside a call run by the executor (no-op outside one)."""
    b = _current_budget.get()
    if b is not None:
        b.charge(tokens, cost_usd)


@dataclass
class ParallelResult:
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    budget_exceeded: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and not self.cancelled

    def best_effort(self, combine: Callable[[dict[str, Any]], Any] | None = None) -> Any:
        """The successful results (combined by ``combine`` if given)."""
        return combine(self.results) if combine else dict(self.results)


class AsyncExecutor:
    def __init__(self, max_concurrency: int = 10, *, instrumentation: Instrumentation | None = None):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        self.max_concurrency = max_concurrency
        self._instr = instrumentation

    async def gather(self, calls: Mapping[str, Call], budget: Budget | None = None) -> ParallelResult:
        out = ParallelResult()
        sem = asyncio.Semaphore(self.max_concurrency)
        tasks: dict[str, asyncio.Task] = {}
        token = _current_budget.set(budget)
        exhausted: set[str] = set()  # tasks refused or stopped by the budget

        async def run(name: str, call: Call) -> None:
            t0 = time.perf_counter()
            outcome = "ok"
            try:
                async with sem:
                    if budget is not None and budget.exceeded():
                        raise BudgetExceeded("budget already spent")
                    out.results[name] = await call()
            except asyncio.CancelledError:
                outcome = "cancelled"
                out.cancelled.append(name)
            except BudgetExceeded as exc:
                outcome = "failed"
                out.errors[name] = exc
                out.budget_exceeded = True
                exhausted.add(name)
                for other, t in tasks.items():
                    if other != name and not t.done():
                        t.cancel()
            except Exception as exc:
                outcome = "failed"
                out.errors[name] = exc
            finally:
                self._emit(name, outcome, t0, False, budget, name in exhausted)

        try:
            async with asyncio.timeout(budget.max_wall_s if budget and budget.max_wall_s else None):
                async with asyncio.TaskGroup() as tg:
                    for name, call in calls.items():
                        tasks[name] = tg.create_task(run(name, call))
        except TimeoutError:
            out.budget_exceeded = True
            for name, t in tasks.items():
                if name not in out.results and name not in out.errors and name not in out.cancelled:
                    out.cancelled.append(name)
        finally:
            _current_budget.reset(token)
        return out

    async def speculative(self, alternatives: Mapping[str, Call]) -> tuple[str, Any]:
        """``(name, result)`` of the first alternative to succeed; the others are cancelled."""
        if not alternatives:
            raise ValueError("speculative() needs at least one alternative")
        starts = {}
        pending: dict[asyncio.Task, str] = {}
        for name, call in alternatives.items():
            starts[name] = time.perf_counter()
            pending[asyncio.ensure_future(call())] = name
        errors: dict[str, BaseException] = {}
        try:
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    name = pending.pop(t)
                    if t.exception() is None:
                        self._emit(name, "won", starts[name], True, None)
                        return name, t.result()
                    errors[name] = t.exception()
                    self._emit(name, "failed", starts[name], True, None)
            raise ExceptionGroup("every speculative alternative failed",
                                 [e for e in errors.values() if isinstance(e, Exception)])
        finally:
            for t, name in pending.items():
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                for name in pending.values():
                    self._emit(name, "cancelled", starts[name], True, None)

    def _emit(self, task: str, outcome: str, t0: float, speculative: bool,
              budget: Budget | None, budget_exceeded: bool = False) -> None:
        if self._instr is None:
            return
        attrs = {"task": task, "outcome": outcome, "concurrency": self.max_concurrency,
                 "speculative": speculative,
                 "duration_ms": round((time.perf_counter() - t0) * 1000, 3)}
        if budget is not None:
            attrs["budget"] = budget.as_attrs()
        if budget_exceeded:
            attrs["budget_exceeded"] = True
        self._instr.emit("executor.task", attrs)
