"""Context compression: a sliding window for conversations, and two-stage compression of long
tool outputs (extractive, query-aware; then an optional abstractive summariser hook).

Extractive stage, on lines (and on sentences of long prose lines):

1. Lines that repeat with only numbers, ids or times changed (log heartbeats, progress lines)
   collapse to their first occurrence plus a "[N similar lines omitted]" marker.
2. Protected lines are always kept: error messages, stack-trace frames, fenced code blocks,
   code signatures and raise/throw lines of code listings, and file references (paths).
3. Every other line is scored by relevance to the query: the IDF-weighted share of query terms
   it contains, plus a small bonus for figures and ``key: value`` facts. Lines are added best
   first while they fit the budget; lines with no relevance at all are dropped. Kept lines stay
   in their original order; gaps are marked "[... N lines omitted ...]".

If the result is still over ``target_tokens`` and a summariser is configured (any callable
``(text, target_tokens) -> str``, e.g. an LLM call), it gets the extractive result.

Quality score (0..1, emitted with every compression): the mean of (a) the share of protected
lines kept and (b) the share of total relevance (sum of line scores) kept. 1.0 means nothing the
scorer considered important was dropped; it is a heuristic, not a guarantee of task success.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from agentflux.runtime.instrument import Instrumentation
from agentflux.runtime.tokens import DEFAULT_ENCODING, count_many, count_tokens

ERROR_RE = re.compile(r"\b(error|exception|traceback|fatal|panic|failed|failure|critical|"
                      r"denied|refused|timeout|timed out|segfault|errno|assert\w*)\b", re.I)
TRACE_RE = re.compile(r'^\s*(File "[^"]+", line \d+|at [\w$.<>]+\(.*\)|at .+:\d+:\d+\)?$|'
                      r'#\d+\s+0x[0-9a-f]+|\w+(\.\w+)+Error:|\w+Error:|\w+Exception:|Caused by:)')
PATH_RE = re.compile(r"(?<![\w@/:])(?:\.{0,2}/)?(?:[\w.-]+/)+[\w.-]+\.\w{1,6}(?::\d+(?::\d+)?)?|"
                     r"\b[\w-]+\.(?:py|js|ts|tsx|go|rs|java|kt|c|cc|cpp|h|hpp|rb|php|cs|json|"
                     r"ya?ml|toml|ini|cfg|md|sql|sh)(?::\d+)?\b")
SIGNATURE_RE = re.compile(r"^\s*(async\s+def|def|class|function|func|fn|pub\s+fn|impl|interface|"
                          r"public|private|protected|export\s+(function|class|const))\b")
RAISE_RE = re.compile(r"^\s*(raise|throw)\b|\bpanic!\(")
FACT_RE = re.compile(r"\d|^\s*\"?[\w .-]{1,40}\"?\s*[:=]\s*\S")
WORD_RE = re.compile(r"\w{2,}")
TEMPLATE_RE = re.compile(r"0x[0-9a-fA-F]+|[0-9a-fA-F]{8,}|\d+")
STOP = frozenset("the a an and or of to in on for is are was were be with by at from as it this "
                 "that what which how why when where who does do did has have had can".split())


def _terms(text: str) -> list[str]:
    out = []
    for w in WORD_RE.findall(text):
        w = w.lower()
        if w not in STOP:
            out.append(w)
            out.extend(p for p in w.split("_") if len(p) > 2 and p != w)
    return out


@dataclass(frozen=True)
class CompressionResult:
    text: str
    tokens_before: int
    tokens_after: int
    strategy: str
    duration_ms: float
    preserved: int  # protected lines kept
    quality: float

    @property
    def ratio(self) -> float:
        return self.tokens_before / self.tokens_after if self.tokens_after else math.inf


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant | tool
    content: str


class ContextCompressor:
    def __init__(self, target_tokens: int = 2000, auto_threshold_tokens: int = 5000,
                 keep_last_user: int = 3, *, summarizer: Callable[[str, int], str] | None = None,
                 instrumentation: Instrumentation | None = None, encoding: str = DEFAULT_ENCODING):
        if target_tokens < 1:
            raise ValueError(f"target_tokens must be >= 1, got {target_tokens!r}")
        if keep_last_user < 0:
            raise ValueError(f"keep_last_user must be >= 0, got {keep_last_user!r}")
        self.target_tokens = target_tokens
        self.auto_threshold_tokens = auto_threshold_tokens
        self.keep_last_user = keep_last_user
        self.summarizer = summarizer
        self._instr = instrumentation
        self._enc = encoding
        count_tokens("", encoding)  # fail now, clearly, if the encoding is not installed

    def count(self, text: str) -> int:
        return count_tokens(text, self._enc)

    # --- conversations -----------------------------------------------------------------------
    def sliding_window(self, messages: Sequence[Message], budget_tokens: int | None = None
                       ) -> list[Message]:
        """Keep system prompts and the last ``keep_last_user`` user messages (with everything
        after the first of them), then older messages newest-first while they fit."""
        budget = self.target_tokens if budget_tokens is None else budget_tokens
        t0 = time.perf_counter()
        sizes = count_many([m.content for m in messages], self._enc)
        users = [i for i, m in enumerate(messages) if m.role == "user"]
        tail_from = users[-self.keep_last_user] if self.keep_last_user and users else len(messages)
        keep = {i for i, m in enumerate(messages) if m.role == "system"}
        keep |= set(range(min(tail_from, len(messages)), len(messages)))
        used = sum(sizes[i] for i in keep)
        for i in range(tail_from - 1, -1, -1):
            if i not in keep and used + sizes[i] <= budget:
                keep.add(i)
                used += sizes[i]
        out = [m for i, m in enumerate(messages) if i in keep]
        before = sum(sizes)
        self._emit("sliding_window", before, used, t0, preserved=len(out),
                   quality=round(used / before, 4) if before else 1.0)
        return out

    # --- tool outputs --------------------------------------------------------------------------
    def maybe_compress(self, text: str, query: str = "") -> str:
        """Compress automatically when ``text`` is over ``auto_threshold_tokens``."""
        if self.count(text) <= self.auto_threshold_tokens:
            return text
        return self.compress(text, query).text

    def compress(self, text: str, query: str = "", target_tokens: int | None = None
                 ) -> CompressionResult:
        t0 = time.perf_counter()
        target = self.target_tokens if target_tokens is None else target_tokens
        before = self.count(text)
        if before <= target:
            return CompressionResult(text, before, before, "none",
                                     (time.perf_counter() - t0) * 1000, 0, 1.0)
        out, preserved, quality = self._extractive(text, query, target)
        strategy = "extractive"
        after = self.count(out)
        if after > target and self.summarizer is not None:
            out = self.summarizer(out, target)
            after = self.count(out)
            strategy = "extractive+abstractive"
        ms = (time.perf_counter() - t0) * 1000
        self._emit(strategy, before, after, t0, preserved=preserved, quality=quality)
        return CompressionResult(out, before, after, strategy, ms, preserved, quality)

    def _extractive(self, text: str, query: str, target: int) -> tuple[str, int, float]:
        lines = text.splitlines()
        # 0. units: fenced code blocks whole, everything else line by line
        units: list[tuple[int, int, bool]] = []  # (start, end, protected_block)
        i = 0
        while i < len(lines):
            if lines[i].lstrip().startswith("```"):
                j = i + 1
                while j < len(lines) and not lines[j].lstrip().startswith("```"):
                    j += 1
                units.append((i, min(j, len(lines) - 1) + 1, True))
                i = j + 1
            else:
                units.append((i, i + 1, False))
                i += 1
        texts = ["\n".join(lines[a:b]) for a, b, _ in units]
        code_like = sum(bool(SIGNATURE_RE.match(t)) for t in texts) >= 3
        # 1. relevance to the query
        q_terms = set(_terms(query))
        unit_terms = [set(_terms(t)) for t in texts]
        df = Counter(w for ts in unit_terms for w in ts if w in q_terms)
        n = len(units) or 1
        idf = {w: math.log(1 + n / df[w]) for w in df}
        q_mass = sum(idf.values()) or 1.0
        scores = []
        for k, t in enumerate(texts):
            rel = sum(idf[w] for w in unit_terms[k] if w in idf) / q_mass if t.strip() else 0.0
            scores.append(rel + (0.05 if rel and FACT_RE.search(t) else 0.0))
        # 2. collapse lines repeating a template (numbers/ids changed) that the query does not need
        seen: dict[str, int] = {}
        repeats: Counter = Counter()
        dup = [False] * len(units)
        for k, t in enumerate(texts):
            if units[k][2] or not t.strip():
                continue
            tpl = TEMPLATE_RE.sub("#", t.strip())
            if (tpl in seen and scores[k] == 0 and not ERROR_RE.search(t)
                    and not TRACE_RE.match(t)):
                dup[k] = True
                repeats[seen[tpl]] += 1
            else:
                seen.setdefault(tpl, k)
        # 3. protected units
        protected = [u[2] or bool(ERROR_RE.search(t) or TRACE_RE.match(t) or PATH_RE.search(t)
                                  or (code_like and (SIGNATURE_RE.match(t) or RAISE_RE.search(t))))
                     for u, t in zip(units, texts)]
        sizes = count_many(texts, self._enc)
        keep = [p and not dup[k] for k, p in enumerate(protected)]
        used = sum(s for s, kp in zip(sizes, keep) if kp)
        for k in sorted(range(len(units)), key=lambda k: -scores[k]):
            if scores[k] <= 0:
                break
            if not keep[k] and used + sizes[k] <= target:
                keep[k] = True
                used += sizes[k]
        if not any(keep) and units:
            keep[0] = True
        # 4. render in order, marking gaps and collapsed repeats
        out: list[str] = []
        gap = 0
        for k, t in enumerate(texts):
            if keep[k]:
                if gap:
                    out.append(f"[... {gap} lines omitted ...]")
                    gap = 0
                out.append(t)
                if repeats[k]:
                    out.append(f"[{repeats[k]} similar lines omitted]")
            elif texts[k].strip():
                gap += 1
        if gap:
            out.append(f"[... {gap} lines omitted ...]")
        n_prot = sum(1 for k, p in enumerate(protected) if p and not dup[k])
        kept_prot = sum(1 for k, p in enumerate(protected) if p and keep[k])
        total_rel = sum(scores) or 1.0
        kept_rel = sum(s for s, kp in zip(scores, keep) if kp)
        quality = 0.5 * (kept_prot / n_prot if n_prot else 1.0) + 0.5 * min(1.0, kept_rel / total_rel)
        return "\n".join(out), kept_prot, round(quality, 4)

    def _emit(self, strategy: str, before: int, after: int, t0: float, *, preserved: int,
              quality: float) -> None:
        if self._instr is not None:
            self._instr.emit("context.compress", {
                "strategy": strategy, "tokens_before": before, "tokens_after": after,
                "duration_ms": round((time.perf_counter() - t0) * 1000, 3),
                "preserved": preserved, "quality": quality})
