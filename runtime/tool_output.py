"""Synthetic tool outputs: long, realistic text with the facts that must survive compression.

The agent simulator (:mod:`agentflux.runtime.agentsim`) feeds ``log_sample`` dumps through the
context compressor; the benchmark corpus (``agentflux.bench.corpus``) builds its other kinds on
``Sample`` and ``grow_lines``. Deterministic for a seeded ``random.Random``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from agentflux.runtime.tokens import count_tokens


@dataclass
class Sample:
    """One tool output, the query it answers and what a compressor must keep of it."""

    kind: str
    query: str
    text: str
    key_facts: list[str] = field(default_factory=list)
    error_lines: list[str] = field(default_factory=list)
    file_paths: list[str] = field(default_factory=list)

    def must_keep(self) -> list[str]:
        return self.key_facts + self.error_lines + self.file_paths


def grow_lines(make_line: Callable[[int], str], budget_tokens: int) -> list[str]:
    """Lines ``make_line(0), make_line(1), ...`` until they hold ``budget_tokens`` tokens."""
    lines, tokens = [], 0
    while tokens < budget_tokens:
        line = make_line(len(lines))
        lines.append(line)
        tokens += count_tokens(line) + 1
    return lines


def log_sample(rng: random.Random, tokens: int = 5000) -> Sample:
    """A service log of about ``tokens`` tokens: routine lines around one payment-worker
    failure (error lines, a traceback with file paths, the supervisor's verdict)."""
    services = ["api-gateway", "auth", "inventory", "search", "notifier"]

    def noise(i: int) -> str:
        ts = f"2026-11-23T10:{(i // 60) % 60:02d}:{i % 60:02d}.{rng.randint(0, 999):03d}Z"
        kind = rng.random()
        svc = rng.choice(services)
        if kind < 0.4:
            return f"{ts} INFO  {svc} heartbeat ok uptime={rng.randint(1000, 99999)}s rss={rng.randint(100, 900)}MB"
        if kind < 0.8:
            return (f"{ts} INFO  {svc} GET /api/v1/items/{rng.randint(1, 99999)} 200 "
                    f"{rng.randint(2, 300)}ms req_id={rng.getrandbits(48):012x}")
        return f"{ts} DEBUG {svc} cache refresh took {rng.randint(1, 90)}ms entries={rng.randint(10, 5000)}"

    lines = grow_lines(noise, tokens - 450)
    facts = ["payment-worker-3 exited with code 137 (OOMKilled) while settling batch 8812",
             "payment job settle_invoices retried 3 times, giving up"]
    errors = ["2026-11-23T10:41:07.113Z ERROR payment-worker-3 settle_invoices failed: "
              "ConnectionResetError: [Errno 104] Connection reset by peer",
              "2026-11-23T10:41:09.520Z ERROR payment-worker-3 " + facts[1]]
    paths = ["/srv/payments/worker/settle.py", "/srv/payments/db/pool.py"]
    trace = ["Traceback (most recent call last):",
             f'  File "{paths[0]}", line 214, in settle_invoices',
             "    rows = pool.fetch(batch)",
             f'  File "{paths[1]}", line 88, in fetch',
             "    raise ConnectionResetError(104, 'Connection reset by peer')",
             "ConnectionResetError: [Errno 104] Connection reset by peer"]
    at = len(lines) // 2
    lines[at:at] = [errors[0], *trace, errors[1],
                    f"2026-11-23T10:41:10.002Z WARN  supervisor {facts[0]}"]
    return Sample("log", "why did the payment job fail on payment-worker-3",
                  "\n".join(lines), facts, errors + ["ConnectionResetError: [Errno 104] Connection reset by peer"],
                  paths)
