"""Context compression: a sliding window for conversations, and two-stage compression of long
tool outputs (extractive, content-aware and query-aware; then an optional abstractive
summariser hook).

A terminal's decoration is left out first: colour codes (ANSI escapes: a third of a coloured
test run's tokens) and, in a log or prose, the length of rules drawn with characters that cost
up to three tokens each (Vitest's ``⎯⎯⎯⎯``, pip's ``━━━━``: three of them are left). A text
they alone put over the budget is returned without them (``plain``).

Extractive stage. :func:`agentflux.runtime.content.detect` names the kind of text (``log``:
logs and test reports, ``json``, ``yaml``, ``diff``, ``tree``, ``csv``, ``code``, ``prose``;
below a file view's or a search's line numbers, :func:`agentflux.runtime.content.line_numbers`,
written back before each kept line) and its
strategy cuts it into units (lines, sentences, JSON leaves, a table's records) with a value
(BM25 relevance to the query, :mod:`agentflux.runtime.relevance`, plus what the kind says
matters: the final exception of a traceback, error lines, signatures, headings, a table's
outstanding values; the best answers to each clause of a question in several parts,
:func:`clause_boost`) and dependencies (a code line's enclosing ``def``, a sentence's heading,
a JSON field's identifying keys, a diff line's file and hunk headers, a row's header).
:func:`pack` keeps units best first while they fit, with what they bring along (the best
units and every line with a block indented under it first lend worth to the lines around them,
:func:`lend_to_neighbours`: a line is read with its neighbours), fills what is
left with context around them (neighbouring lines, the head of the text; without a query, the
text's outline up to the budget: the least indented lines, a JSON document's shallowest
fields), renders them in their original order with the gaps marked (``[N omitted]``, a
short one ``…``; JSON stays valid JSON, its omissions summarised as counts and keys) and
checks the rendered text's tokens: **the output never exceeds ``target_tokens``, markers
included.** Protected material (errors, final exceptions) is ranked like the rest when it
alone exceeds the budget (the errors that match the query and the final exceptions first);
``hard_floor=True`` keeps all of it whatever the size (the older behaviour).

Abstractive stage. When protected material had to be dropped and a summariser is configured
(any callable ``(text, target_tokens) -> str``, e.g. an LLM call), it gets the extractive
result with every protected unit kept; its answer is used if it fits the budget.

Quality score (0..1, emitted with every compression): the mean of (a) the share of protected
units kept and (b) the share of the query's relevance (sum of unit scores) kept; below 1 when
the budget forced protected material out (``CompressionResult.protected_dropped`` says how
much). A heuristic, not a guarantee of task success.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from agentflux.runtime import content
from agentflux.runtime.content import Unit
from agentflux.runtime.instrument import Instrumentation
from agentflux.runtime.relevance import (BM25, clause_scores, identifiers, index, query_weights,
                                         terms)
from agentflux.runtime.relevance import scores as relevance
from agentflux.runtime.tokens import DEFAULT_ENCODING, count_many, count_tokens, encoding

GREEDY_SHARE = 0.92  # of the budget (in estimated sizes) spent best-first; then the fill; the
# rest is for markers until the render is counted (a refill may use what is left)
REFILL_BELOW = 0.95  # of the budget: a rendered text shorter than this is refilled
REFILL_TO = 0.97  # of the budget, what a refill aims at
REFILL_TRIES = 3
FILL_SHARE = 0.25  # of the budget that context around the selection may add
FILL_REACH = 3  # lines either side of a kept line that fill a budget left over
HEAD_LINES = 3  # and the text's first lines
COST_POWER = 0.4  # units are ranked by value per cost ** this (0.5 before: a long line that
# answers holds more of what is asked than the short ones it displaces)
# the best units lend worth to the lines around them, halved again per line of distance: a
# line is read with the lines next to it (a test's name above its failure, the key below a
# matching one, the frame under an exception); when the best alone fill a quarter of the
# budget (LEND_ROOM), there is no room for context and nothing is lent
LEND_FROM = 0.6  # of the best unit's value: the units that lend
LEND_SHARE = 0.5  # of a lender's value, to the line next to it (the next but one: a quarter)
LEND_REACH = 2  # lines either side
LEND_ROOM = 4  # the lenders' cost times this must fit the budget
# and every line lends to the first lines of the block indented under it (the frames under
# "freed by thread T0 here:", a test case's failure under its element)
LEND_CHILD = 0.5  # of the line's value
LEND_CHILDREN = 8  # the block's first lines


# a terminal's codes: colours and cursor moves (CSI, "\x1b[31m", "\x1b[38:5:208m"), hyperlinks
# and titles (OSC, GCC's "\x1b]8;;url\x07"), character sets ("\x1b(B")
ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|"
                     r"\x1b[()][0-9A-Za-z]")

# a rule drawn with a character a tokenizer spends one to three tokens on (dashes, box
# drawing, block elements, geometric shapes): in a log or prose its length says nothing
RULE_RE = re.compile(f"([{content.COSTLY_RULE_CHARS}])\\1{{3,}}")
RULE_KEPT = 3  # characters of such a rule
RULED_KINDS = ("log", "prose")  # not in data, code or a diff: a bar's or a literal's length


def plain_text(text: str, kind: str) -> str:
    """``text`` (of the ``kind`` :func:`content.detect` says) as a model should read it:
    without a terminal's colour codes, and a log's or prose's rules drawn :data:`RULE_KEPT`
    characters long (Vitest's ``⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯[2/13]⎯`` is 94 tokens with its
    timestamp; a Vitest job's log at 2,000 tokens had spent 850 on them); ``text`` itself when
    there is neither."""
    out = ANSI_RE.sub("", text) if "\x1b" in text else text
    if kind in RULED_KINDS and RULE_RE.search(out):
        return RULE_RE.sub(lambda m: m.group(1) * RULE_KEPT, out)
    return out


@dataclass(frozen=True)
class CompressionResult:
    text: str
    tokens_before: int
    tokens_after: int
    strategy: str
    duration_ms: float
    preserved: int  # protected units kept
    quality: float
    protected_dropped: int = 0  # protected units the budget forced out
    kind: str = ""  # what the text was detected as: log, json, code, prose

    @property
    def ratio(self) -> float:
        return self.tokens_before / self.tokens_after if self.tokens_after else math.inf


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant | tool
    content: str


def _text_and_query(text: object, query: object) -> tuple[str, str]:
    """``text`` and ``query`` as :meth:`ContextCompressor.compress` takes them, or an error
    saying what is wrong and how to pass them; ``query=None`` is no query."""
    if not isinstance(text, str):
        hint = (" (decode it first: data.decode('utf-8', errors='replace'))"
                if isinstance(text, (bytes, bytearray)) else "")
        raise TypeError(f"text must be a str, got {type(text).__name__}{hint}")
    if query is None:
        query = ""
    if not isinstance(query, str):
        raise TypeError(f"query must be a str (or None for no query), got {type(query).__name__}")
    return text, query


def _target(value: object) -> int:
    """A token budget, or an error saying what is wrong with it (a whole float is its int)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"target_tokens must be a whole number of tokens, got {value!r}")
    if value < 1:
        raise ValueError(f"target_tokens must be >= 1, got {value!r}")
    return value


class ContextCompressor:
    def __init__(self, target_tokens: int = 2000, auto_threshold_tokens: int = 5000,
                 keep_last_user: int = 3, *, summarizer: Callable[[str, int], str] | None = None,
                 instrumentation: Instrumentation | None = None, encoding: str = DEFAULT_ENCODING):
        target_tokens = _target(target_tokens)
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
        text, query = _text_and_query(text, query)
        if self.count(text) <= self.auto_threshold_tokens:
            return text
        return self.compress(text, query).text

    def compress(self, text: str, query: str = "", target_tokens: int | None = None, *,
                 hard_floor: bool = False) -> CompressionResult:
        """``text`` within ``target_tokens`` (markers included), keeping what answers
        ``query``; ``hard_floor`` keeps every protected unit even past the budget."""
        t0 = time.perf_counter()
        target = self.target_tokens if target_tokens is None else _target(target_tokens)
        text, query = _text_and_query(text, query)
        before = self.count(text)
        if before <= target:
            return CompressionResult(text, before, before, "none",
                                     (time.perf_counter() - t0) * 1000, 0, 1.0)
        coloured = "\x1b" in text
        if coloured:  # what the text is is read without its colours
            text = ANSI_RE.sub("", text)
        # a file's lines with their numbers, or a search's: what it is is read past them
        numbered = content.line_numbers(text)
        kind = content.detect(numbered.body if numbered else text)
        if kind == "html" and numbered:  # a page's source to edit by its lines, not its text
            kind = "code"
        plain = plain_text(text, kind)
        if coloured or plain is not text:  # the decoration costs tokens and says nothing
            text = plain
            numbered = numbered and content.line_numbers(text)
            after = self.count(text)
            if after <= target:
                self._emit("plain", before, after, t0, preserved=0, quality=1.0)
                return CompressionResult(text, before, after, "plain",
                                         (time.perf_counter() - t0) * 1000, 0, 1.0)
        if kind == "html":  # a page: its text (the markup is 40-60 % of its tokens), as prose
            from agentflux.runtime.compress_html import html_text
            page = html_text(text)
            if not page.strip():  # nothing a reader sees (all script): its markup, as prose
                kind = "prose"
            else:
                text = page
            if kind == "html" and self.count(text) <= target:
                after = self.count(text)
                self._emit("html:text", before, after, t0, preserved=0, quality=1.0)
                return CompressionResult(text, before, after, "html:text",
                                         (time.perf_counter() - t0) * 1000, 0, 1.0, 0, kind)
        try:
            out = self._extractive(text, query, target, kind, hard_floor, numbered)
        except RecursionError:  # JSON nested deeper than Python's stack walks: its lines
            kind = "log"
            out = self._extractive(text, query, target, kind, hard_floor, numbered)
        strategy = f"extractive:{kind}"
        if out.protected_dropped and self.summarizer is not None:
            floor = out if hard_floor else self._extractive(text, query, target, kind, True,
                                                            numbered)
            summary = self.summarizer(floor.text, target)
            if self.count(summary) <= target:
                out = Packed(summary, out.kept_protected, out.protected_dropped, out.quality)
                strategy += "+abstractive"
        after = self.count(out.text)
        ms = (time.perf_counter() - t0) * 1000
        self._emit(strategy, before, after, t0, preserved=out.kept_protected,
                   quality=out.quality)
        return CompressionResult(out.text, before, after, strategy, ms, out.kept_protected,
                                 out.quality, out.protected_dropped, kind)

    def _extractive(self, text: str, query: str, target: int, kind: str,
                    hard_floor: bool, numbered: content.Numbered | None = None) -> "Packed":
        count = self.count
        if numbered:
            text = numbered.body
        asked = bool(query_weights(query))  # else the budget left shows the text's outline
        if kind == "html":
            kind = "prose"  # its text, from compress()
        if kind == "json":
            from agentflux.runtime.compress_json import (JsonDoc, fill_order, loads,
                                                         outline_order, separators)
            doc = JsonDoc(loads(text), query, separators(text))
            clause_boost(doc.units, query, doc.index)
            content.extremes(doc.units, doc.rel, query)
            # a view of a one-line document: the digest written after its line's number
            first = numbered.prefixes[0] if numbered and numbered.prefixes else ""
            return pack(doc.units, doc.rel, target,
                        (lambda kept: first + doc.render(kept)) if first else doc.render,
                        count, self._enc,
                        fill=fill_order(doc), hard_floor=hard_floor,
                        spread=None if asked else lambda kept: outline_order(doc, kept))
        lines = text.splitlines()
        if kind == "csv":  # records (a quoted field may hold a line break), by their words
            units, fields = content.csv_records(lines)
            texts = [u.text for u in units]
            bm = index(texts)
            rel = relevance(texts, query, bm)
            units = content.csv_units(units, fields, rel, query)
        elif kind == "tree":  # a directory's entries, each under its directories
            units, rel, depth = content.tree_units(lines, query, relevance)
            bm = None
        elif kind == "prose":
            # prose_units scores its units first: that index and those scores are kept
            scored: list[tuple[BM25, list[float]]] = []

            def rel_of(texts: list[str]) -> list[float]:
                bm = index(texts)
                scored.append((bm, relevance(texts, query, bm)))
                return scored[-1][1]
            units = content.prose_units(lines, rel_of, identifiers(query))
            bm, rel = scored[0] if scored else (None, relevance([u.text for u in units], query))
        else:
            # a unit per line: one index for the query and its clauses; a line of code is
            # read in its function (scored with its signature's words, as prose under its
            # heading), a JSON field in the object whose key opens it
            if kind in ("diff", "yaml"):
                scored = (content.diff_context if kind == "diff" else content.yaml_context)(lines)
            else:
                scored = content.in_context(lines, json=kind == "json_lines") if kind in (
                    "code", "json_lines") else lines
            if numbered and any(numbered.paths):  # a search's results: of which file, too
                scored = [f"{t} {p}" if p else t for t, p in zip(scored, numbered.paths)]
            bm = index(scored)
            rel = relevance(scored, query, bm)
            if kind == "code":
                units = content.code_units(lines, rel, query)
            elif kind == "yaml":
                units = content.json_line_units(lines, rel, yaml=True)
            elif kind == "diff":
                units = content.diff_units(lines, rel, query)
            elif kind == "json_lines":
                units = content.json_line_units(
                    lines, rel, score=lambda texts: relevance(texts, query))
            else:
                units = content.log_units(lines, rel)
                content.asked_frames(units, query)
                content.table_extremes(lines, units, query)
                content.table_thresholds(lines, units, query)
                content.duration_extremes(lines, units, query)
                content.keyed_extremes(lines, units, query)
                content.severity_extremes(lines, units, query)
                content.position_extremes(units, query, lambda q: relevance(scored, q, bm))
        split, rel = content.split_long(units, rel, query, relevance)
        if split is not units:  # lines too long were split: the clauses are scored on pieces
            units, bm = split, None
        clause_boost(units, query, bm, distinct=kind in ("log", "prose"))
        if kind in ("log", "prose"):
            content.version_lines(units, query)
        if kind in ("json_lines", "yaml", "log"):
            content.extremes(units, rel, query)
        if numbered:
            content.write_numbers(units, numbered)
        counted = target >= COUNT_BUDGET
        if kind == "tree":  # what is left shows its levels, the first first, question or none
            spread = outline_fill(units, [depth[u.line] for u in units])
        else:
            spread = outline_fill(units) if not asked else (
                weak_fill(units, query) if kind == "log" else None)
        # (a tree without a question: its levels, not its first lines and their neighbours)
        fill = () if kind == "tree" and not asked else neighbour_fill(units)
        return pack(units, rel, target, lambda kept: render_lines(units, kept, counted), count,
                    self._enc, fill=fill, spread=spread, hard_floor=hard_floor)

    def _emit(self, strategy: str, before: int, after: int, t0: float, *, preserved: int,
              quality: float) -> None:
        if self._instr is not None:
            self._instr.emit("context.compress", {
                "strategy": strategy, "tokens_before": before, "tokens_after": after,
                "duration_ms": round((time.perf_counter() - t0) * 1000, 3),
                "preserved": preserved, "quality": quality})


CLAUSE_TOP = 3  # units per clause of the query that are lifted
CLAUSE_BOOST = 1.0  # the best unit's lift; the second gets half, the third a third
CLAUSE_MIN = 0.5  # of the clause's best score, for a unit to be lifted


def clause_boost(units: Sequence[Unit], query: str, bm: BM25 | None = None, *,
                 distinct: bool = False) -> None:
    """Each part of a question gets its best answers (:func:`relevance.clause_scores`, on the
    units' index ``bm`` when the caller has it): the :data:`CLAUSE_TOP` units that match a
    clause best gain value, so no part of the question is left with nothing because another
    part matches more lines; with ``distinct`` (a log's or prose's lines), the best distinct
    texts: a line repeated word for word is one answer."""
    for r in clause_scores([u.text for u in units], query, bm):
        best: list[int] = []
        seen: set[object] = set()
        for k in sorted((k for k in range(len(units)) if r[k] >= CLAUSE_MIN), key=lambda k: -r[k]):
            answer = units[k].text.strip() if distinct else k
            if answer not in seen:
                seen.add(answer)
                best.append(k)
                if len(best) == CLAUSE_TOP:
                    break
        for rank, k in enumerate(best):
            units[k].value += CLAUSE_BOOST / (1 + rank)


# -- packing ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Packed:
    text: str
    kept_protected: int
    protected_dropped: int
    quality: float


def pack(units: Sequence[Unit], rel: Sequence[float], budget: int,
         render: Callable[[set[int]], str], count: Callable[[str], int], enc: str, *,
         fill: Sequence[int] | Callable[[set[int]], Sequence[int]] = (),
         spread: Callable[[set[int]], Sequence[int]] | None = None,
         hard_floor: bool = False) -> Packed:
    """Keep units best first (with their dependencies) while they fit ``budget``, then
    ``fill`` (unit indexes in the order to try) with what is left; render; drop the least
    valuable units chosen for themselves, with what only they brought along, until the
    rendered text fits (a last resort cuts it at the budget's token, marked); a rendered text
    well under the budget (:data:`REFILL_BELOW`: trimmed too far, or sizes that counted what
    the render folds away) takes more of what is left while it fits. ``spread`` (when there
    is no query: nothing was selected for a question; a directory tree's levels whatever the
    query) orders what fills the rest of the budget after ``fill``. See the module docstring."""
    n = len(units)
    sizes = [s + 1 for s in count_many([u.numbers + (u.short or u.text) for u in units], enc)
             ] if n else []
    kept: set[int] = set()
    # the units chosen for themselves, each with what it brings along; a unit stays kept while
    # a chosen unit holds it (``holders``), so dropping one drops what only it brought
    chosen: dict[int, set[int]] = {}
    holders: dict[int, int] = {}
    used = 0

    def needs(k: int) -> set[int]:
        """What keeping ``k`` adds: itself and what it brings along not kept yet."""
        return {k} | {d for d in units[k].deps if d not in kept and 0 <= d < n}

    def cost(k: int) -> int:
        return sum(sizes[d] for d in needs(k))

    def choose(k: int) -> None:
        if k not in chosen:
            chosen[k] = {k} | {d for d in units[k].deps if 0 <= d < n}
            for d in chosen[k]:
                holders[d] = holders.get(d, 0) + 1

    def take(k: int, limit: float) -> bool:
        nonlocal used
        if k in kept:
            choose(k)  # kept as another's dependency, wanted for itself too
            return False
        add = needs(k)
        c = sum(sizes[d] for d in add)
        if used + c > limit:
            return False
        kept.update(add)
        choose(k)
        used += c
        return True

    if hard_floor:
        for k in range(n):
            if units[k].critical:
                take(k, math.inf)
    lend_to_neighbours(units, sizes, budget)
    order = sorted((k for k in range(n) if units[k].value > 0), key=lambda k: -units[k].value)

    # value per cost ** COST_POWER (tokens, with what a unit brings along): the budgeted
    # selection's rule (value per cost) softened so that a long line that matters still beats
    # short ones that matter little; costs are read when the units are ranked (deps kept
    # later are free)
    ranked = sorted(order, key=lambda k: -units[k].value / cost(k) ** COST_POWER)
    limit = budget * GREEDY_SHARE
    for k in ranked:
        if used >= limit:
            break
        take(k, limit)
    fill_limit = min(budget * GREEDY_SHARE, used + budget * FILL_SHARE)
    for k in (fill(kept) if callable(fill) else fill):
        if used >= fill_limit:
            break
        if units[k].filler:
            take(k, fill_limit)
    if spread is not None:  # the rest of the budget shows more of the text's outline
        for k in spread(kept):
            if used >= limit:
                break
            take(k, limit)
    text = render(kept)
    tokens = count(text)
    floor = {k for k in kept if units[k].critical} if hard_floor else set()
    rounds = 0
    while tokens > budget and rounds < 40:
        rounds += 1
        # estimated sizes leave out markers and syntax: scale the overflow to the estimates
        estimate = sum(sizes[k] for k in kept) or 1
        over = (tokens - budget) * estimate / tokens
        # the least valuable chosen units go, with what only they brought along (of equal
        # worth, the last chosen: the fill's and the outline's last, a tree's deepest)
        at = {k: i for i, k in enumerate(chosen)}
        removable = sorted((k for k in chosen if k not in floor),
                           key=lambda k: (units[k].value, -at[k]))
        if not removable:
            break
        freed = 0
        for k in removable:
            for d in chosen.pop(k):
                holders[d] -= 1
                if not holders[d]:
                    del holders[d]
                    if d in kept and d not in floor:
                        kept.discard(d)
                        freed += sizes[d]
            if freed >= over * 1.1 + 2:
                break
        text = render(kept)
        tokens = count(text)
    tries = 0
    while tokens < budget * REFILL_BELOW and tries < REFILL_TRIES:
        # room left (trimmed too far, or the estimates overcounted what the render folds: a
        # CI log's timestamps): refill with what is left, less each time it does not fit,
        # again from what fitted while it is still short
        estimate = sum(sizes[k] for k in kept) or 1
        before = set(kept)
        before_chosen = {k: set(v) for k, v in chosen.items()}
        before_holders = dict(holders)
        extra = (budget * REFILL_TO - tokens) * estimate / max(tokens, 1)
        while tries < REFILL_TRIES:
            tries += 1
            used = estimate
            for k in (order if spread is None else [*order, *spread(kept)]):
                take(k, estimate + extra)
            if kept == before:
                tries = REFILL_TRIES
                break
            again = render(kept)
            n_again = count(again)
            if n_again <= budget:
                text, tokens = again, n_again
                break
            kept.clear()
            kept.update(before)
            chosen.clear()
            chosen.update({k: set(v) for k, v in before_chosen.items()})
            holders.clear()
            holders.update(before_holders)
            extra /= 2
    if tokens > budget and not hard_floor:  # a last resort: cut at the budget's token, marked
        marker = "\n[... cut at the token budget ...]"
        if count(marker) >= budget:  # a budget smaller than the marker: the text's first tokens
            marker = ""
        ids = encoding(enc).encode_ordinary(text)
        room = max(0, budget - count(marker))
        text = encoding(enc).decode(ids[:room]) + marker
        while count(text) > budget and room > 0:
            room -= max(1, count(text) - budget)
            text = encoding(enc).decode(ids[:room]) + marker
    protected = [k for k in range(n) if units[k].critical]
    kept_p = sum(1 for k in protected if k in kept)
    total_rel = sum(max(0.0, r) for r in rel)  # what the query excludes is no share of it
    kept_rel = sum(max(0.0, rel[k]) for k in kept if k < len(rel))
    quality = 0.5 * (kept_p / len(protected) if protected else 1.0) + 0.5 * (
        min(1.0, kept_rel / total_rel) if total_rel else 1.0)
    return Packed(text, kept_p, len(protected) - kept_p, round(quality, 4))


def lend_to_neighbours(units: Sequence[Unit], sizes: Sequence[int], budget: int) -> None:
    """The units worth at least :data:`LEND_FROM` of the best one's value raise the lines
    around them (up to :data:`LEND_REACH` away; not blank lines, not repeats of a template,
    not rules) to :data:`LEND_SHARE` of their own value per line of distance, when their cost
    times :data:`LEND_ROOM` fits ``budget``. A line that answers is read with its neighbours: the
    test's name above an assertion, the fields next to a matching one, the next frames of a
    trace. Every line worth anything lends :data:`LEND_CHILD` of its value to the first
    :data:`LEND_CHILDREN` lines of the block indented under it, whatever the budget. A line
    lent worth is ranked by it like any other in the budgeted selection."""
    values = [u.value for u in units]
    best = max(values, default=0.0)
    if best <= 0:
        return
    indent = [len(u.text) - len(u.text.lstrip()) for u in units]
    for k, v in enumerate(values):
        if v <= 0 or not units[k].text.strip():
            continue
        for j in range(k + 1, min(k + 1 + LEND_CHILDREN, len(units))):
            u = units[j]
            if not u.text.strip() or indent[j] <= indent[k]:
                break
            if not u.similar and not u.rule:
                u.value = max(u.value, v * LEND_CHILD)
    lenders = [k for k, v in enumerate(values) if v >= LEND_FROM * best]
    if sum(sizes[k] for k in lenders) * LEND_ROOM > budget:
        return
    for k in lenders:
        for step in (-1, 1):
            for d in range(1, LEND_REACH + 1):
                j = k + step * d
                if not 0 <= j < len(units):
                    break
                u = units[j]
                if u.text.strip() and not u.similar and not u.rule:
                    u.value = max(u.value, values[k] * LEND_SHARE ** d)


def _distances(n: int, kept: set[int]) -> list[int]:
    """Per unit, how far the nearest kept unit is (``n`` or more: none is kept)."""
    dist = [n] * n
    last = -n
    for k in range(n):
        if k in kept:
            last = k
        dist[k] = k - last
    last = 2 * n
    for k in range(n - 1, -1, -1):
        if k in kept:
            last = k
        dist[k] = min(dist[k], last - k)
    return dist


def neighbour_fill(units: Sequence[Unit]) -> Callable[[set[int]], list[int]]:
    """The order in which line units fill a budget left over (up to :data:`FILL_SHARE` of
    it), from what was kept: the first :data:`HEAD_LINES` lines (a title, a command line, a
    test session's header), the lines next to kept ones, nearest first, up to
    :data:`FILL_REACH` away, then the outline (units marked ``outline``: signatures, headings).
    Not the rest: the budget is a ceiling, and lines nothing selected are not worth their
    tokens (with a query: :func:`outline_fill` is for when there is none)."""
    def order(kept: set[int]) -> list[int]:
        n = len(units)
        dist = _distances(n, kept)
        near = sorted((k for k in range(n) if 0 < dist[k] <= FILL_REACH),
                      key=lambda k: (dist[k], k))
        outline = [k for k in range(n) if units[k].outline]
        return list(range(min(HEAD_LINES, n))) + near + outline
    return order


def weak_fill(units: Sequence[Unit], query: str) -> Callable[[set[int]], list[int]]:
    """With a query, what is left of the budget once every unit that matches it is kept (and
    their context) takes the units that share only its common words (scored as noise: a
    GPU monitor's "WARNING ... Clock: 765 MHz" on every other line, for "which GPU clock
    warnings"), those sharing most of its words first."""
    asked = {t for t, w in query_weights(query).items() if w > 0}
    weak = []
    for k, u in enumerate(units):
        if u.value == 0 and u.text.strip():
            hits = len(asked.intersection(terms(u.text)))
            if hits:
                weak.append((-hits, k))
    weak.sort()

    def order(kept: set[int]) -> list[int]:
        return [k for _, k in weak if k not in kept]
    return order


def outline_fill(units: Sequence[Unit], depths: Sequence[int] | None = None
                 ) -> Callable[[set[int]], list[int]]:
    """Without a query nothing is selected for the question, so what is left of the budget
    shows the text's outline: the lines least indented first (a file's top-level
    definitions before their bodies, a document's top-level keys before their children; or
    least deep by ``depths``: a directory tree's levels), the nearest to a kept line first
    among those (a section's first sentences, a function's first lines); never a blank line."""
    def order(kept: set[int]) -> list[int]:
        n = len(units)
        dist = _distances(n, kept)
        depth = list(depths) if depths is not None else [
            len(u.text) - len(u.text.lstrip()) for u in units]
        return sorted((k for k in range(n) if dist[k] > 0 and units[k].filler
                       and units[k].text.strip()),
                      key=lambda k: (not units[k].outline, depth[k], dist[k], k))
    return order


FOLDED = content.FOLDED  # a log line written without the timestamp prefix of the line above's


def render_lines(units: Sequence[Unit], kept: set[int], counted: bool = True) -> str:
    """Kept units in order; a gap of omitted lines as one marker (``similar`` when every
    omitted line repeats a kept template; with its size when ``counted`` and long), or the
    one line omitted when it is shorter than a marker (not a rule); sentences of one line
    joined, gaps inside a line as ``[...]``; a log line after one (a gap's marker between them
    or not) with a timestamp prefix of the same form (digits aside) and the same minute is
    written without it (:data:`FOLDED`): in CI logs the prefix is half the tokens; a JSON
    record after another (a gap's marker between them or not) without the fields equal to that
    one's, and its time when right below it (:func:`content.folded`, marked the same): in ``go
    test -json`` they are half its tokens."""
    out: list[str] = []
    gap = 0
    gap_similar = True
    gap_units: list[int] = []
    last_line = -1
    last_part = -2
    prev_key = None  # the timestamp prefix form of the line just written
    above = None  # the JSON record written last (a gap's marker between them aside)
    next_to = False  # and no line left out since

    def close_gap() -> None:
        lone = units[gap_units[0]] if len(gap_units) == 1 and gap == 1 else None
        if (lone is not None and lone.part < 0 and len(lone.numbers) + len(lone.text) <= SHORT_GAP
                and not lone.rule):
            out.append(lone.numbers + lone.text)  # cheaper than its marker
        else:
            out.append(marker(gap, gap_similar, counted))

    for k, u in enumerate(units):
        if k in kept:
            if gap:
                close_gap()
                gap, gap_similar, gap_units = 0, True, []
                next_to = False
            # a line's pieces on its line (one not next to the last, under line numbers, on a
            # line of its own after the number of the line it starts on: a CSV record's lines)
            if u.part >= 0 and u.line == last_line and out and (
                    not u.numbers or u.part == last_part + 1):
                out[-1] += (u.glue if u.part == last_part + 1 else " [...] ") + u.text
            elif u.fold and u.fold_key == prev_key:  # the same prefix form as the line above
                out.append(u.numbers + FOLDED + u.text[u.fold:])
            elif u.record is not None and above is not None and (
                    f := content.folded(u.record, above, next_to)) is not None:
                out.append(u.numbers + FOLDED + f)
            else:
                if u.part > 0:
                    out.append(u.numbers + "[...] " + u.text)
                else:
                    out.append(u.numbers + u.text)
            prev_key = u.fold_key if u.fold else None
            above = u.record if u.part < 0 else None
            next_to = True
            last_line, last_part = u.line, u.part
        elif u.text.strip() and u.line != last_line:
            if u.part <= 0:
                gap += u.end - u.line
                gap_similar = gap_similar and u.similar
                gap_units.append(k)
    if gap:
        close_gap()
    return "\n".join(out)


SHORT_GAP = 12  # characters: a single omitted line this short is written, not marked


MARKER_RE = re.compile(r"^(\[\d+ (similar )?omitted\]|…)$")  # a line that is a marker


COUNT_FROM = 10  # omitted lines: a gap this long is marked with its count, a shorter one ``…``
COUNT_BUDGET = 1000  # tokens: under this budget no gap is counted


def marker(lines: int, similar: bool = False, counted: bool = True) -> str:
    """What stands for ``lines`` omitted lines: ``[25 omitted]`` (four tokens) from
    :data:`COUNT_FROM` lines when ``counted``, ``…`` (one token) otherwise; ``[5 similar
    omitted]`` when every one repeats a kept line's template (two lines or more; when
    ``counted``: under :data:`COUNT_BUDGET` tokens it is ``…`` too). Markers are
    a tenth of a compressed text (a fifth of code's) and the budget counts them: with the five
    tokens of ``[3 lines omitted]`` (and of one line's) ~2 % fewer facts were kept; with ``…``
    for gaps under ten lines 15 more of 5,000 (development sets and probes 13-20; none fewer
    at 2,000 tokens), and with no count under :data:`COUNT_BUDGET` tokens 18 more (none
    fewer; at 150 and 500 tokens, a handful of lines: a count costs a fact). Only a long
    gap's size says something to a reader: how much of the text is not there."""
    if similar and lines > 1 and counted:
        return f"[{lines} similar omitted]"
    return f"[{lines} omitted]" if counted and lines >= COUNT_FROM else "…"
