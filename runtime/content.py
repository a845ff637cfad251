"""What a tool output is, and its units: the compressor's content-aware strategies.

:func:`detect` names the kind of a text by counting line shapes: ``json`` (it parses, on one
line), ``json_lines`` (pretty-printed JSON, or a fragment of it), ``diff`` (unified), ``tree``
(a directory's), ``yaml``,
``csv`` (or TSV: a header and rows of as many fields), ``code`` (source), ``log``
(log lines, test reports, access logs, records one per line: timestamps, levels, tracebacks,
test outcomes; records of a timestamped line and lines indented under it) or ``prose`` (docs,
Markdown, reStructuredText); whatever is unclear is treated as ``log`` (line by line, the
general case).

Each line strategy turns the text into :class:`Unit` s (a line, or a sentence of a long prose
line) with a *value* (the query's relevance plus what the kind says matters) and *dependencies*
(units a kept unit brings along), which :mod:`agentflux.runtime.compress` packs into the
budget:

* ``log``: an error line is recognised whatever its prefix (a logger's timestamp and task, a
  test runner's ``E   ``) by its level or exception name (``NameError``,
  ``StreamIDTooLowError``: any CamelCase ``...Error``/``...Exception``), an access log's line
  by its 4xx/5xx status; the final exception of each traceback (Python's last line after the
  frames, Java's and Go's first; the line above a bare ``Stack trace:``; pytest's
  ``file.py:LINE: Error`` line, which brings the exception it names) ranks highest; the first
  and last lines of each error block next; the first frame of a trace in the application's code
  (below the framework's or the runtime's frames) next; frames and paths are kept when there is
  room; lines repeating a template (Drain-style groups, :func:`templates`) count once, the first
  and the last of a group kept (an error repeated word for word too; a line among the query's
  best answers whose template's first answers nothing is no repeat); the last lines say how it
  ended; an indented line brings the line it is under (a JUnit testcase); a table's row brings
  its header (:func:`table_headers`); a timestamp prefix may be folded (:attr:`Unit.fold`), and
  a structured log's JSON record written after another leaves out the fields equal to that
  record's (:func:`folded`: a package, a service, a level said once), and its time when right
  below it.
* ``json_lines``: a kept line brings the lines opening its objects and its object's
  identifying fields (``id``, ``name``, ``status``, ...), an error's line its object's message
  (:data:`MESSAGE_KEYS`); the fields of an object with a
  matching field count more. (One-line JSON: :mod:`agentflux.runtime.compress_json`.)
* ``yaml``: as pretty-printed JSON (a kept line brings the lines opening its mappings and its
  mapping's identifying fields); a line is scored with its document's ``kind:`` and ``name:``
  in a stream of Kubernetes objects, and a document is known by them.
* ``diff``: a hunk's lines are counted from its header; a kept line brings its file's header
  (``+++ b/path``) and its hunk's (``@@ ... @@ function``), an added line the removed one it
  replaces; changed lines count more than context, a changed definition more still; lines are
  scored with their file's path and their hunk's function; a test file's lines count less
  unless the query asks of tests, a change repeated word for word once (:func:`diff_units`).
* ``csv``: records (a quoted field may hold a line break), each bringing the header; scored by
  the query's words and by what stands out in their columns: extremes, outliers, changes of a
  rarely changing value, rare categories, a query's "more than N" (:func:`csv_units`).
* ``code``: a kept line brings the chain of lines enclosing it (its ``def``/``class``/``func``
  lines, by indentation) and, when it opens a branch, the branch's first lines; a function that
  matches as a whole lifts its lines; a line giving a name a literal value counts more (where
  code says what a setting is); a comment repeated word for word counts once; signatures fill
  what is left as an outline.
* ``prose``: long lines are split into sentences; headings are anchors (a kept sentence brings
  its section's heading chain; a reStructuredText directive that documents one thing,
  ``.. confval:: name``, heads its description the same way, and brings its ``:type:`` and
  ``:default:`` fields); a section that matches as a whole lifts its sentences; a list item
  is read under the sentence that introduces it (``... in this order:``), which it brings and
  whose relevance it shares; a fenced code block's lines bring its fences, so fences stay
  balanced, and a small block is kept whole.
* ``html``: a page is read as its text, as prose (:mod:`agentflux.runtime.compress_html`:
  headings as Markdown headings, preformatted blocks fenced; no scripts or styles).
* ``tree``: a directory's tree as `tree` draws it: an entry is scored with the names of the
  directories it is in and brings them (:func:`tree_units`).

A file shown with its line numbers (`cat -n`, an agent's view) or a search's results (`grep
-rn`, `rg -n`) is read below its numbers (:func:`line_numbers`): what it is is detected there,
and each kept line is written after its own number and file (:func:`write_numbers`).
"""

from __future__ import annotations

import bisect
import collections
import csv
import math
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import orjson

from agentflux.runtime.compress_html import htmlish

# -- detection ---------------------------------------------------------------------------------

TIMESTAMP_RE = re.compile(r"^\W{0,3}(\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\d\d:\d\d:\d\d|\d{6,8}\s+\d{6}|"
                          r"[A-Z][a-z]{2}\s+\d{1,2}\s+\d\d:\d\d|\d{10,13}\b|"
                          r"\d{1,3}(\.\d{1,3}){3}\s|"
                          # the kernel's and Xorg's seconds since boot: "[    0.000000]"
                          r"\s*\d+\.\d{3,9}\])")
LEVEL_RE = re.compile(r"\b(TRACE|DEBUG|INFO|NOTICE|WARN(ING)?|ERROR|ERR|FATAL|CRITICAL|SEVERE|"
                      r"PANIC)\b")
# a compiler's or build tool's diagnostic: "error MSB3021:", "warning CS0618:", "error[E0425]:",
# "main.c:12:5: error:", "error TS2304:"
DIAG_RE = re.compile(r"\b(error|warning)(\[[A-Z]+\d+\]| [A-Z]{1,5}\d{3,5})\s*:|"
                     r":\d+(:\d+)?:\s+(fatal )?(error|warning|note):|"
                     r"^(error|warning)(\[\w+\])?: |^\s*--> \S+:\d+:\d+")  # rustc's
CODE_LINE_RE = re.compile(
    r"^\s*+(import\s|from\s+\S+\s+import\s|#include\b|package\s|using\s|(async\s+)?def\s|class\s|"
    r"func\s|fn\s|pub(\([^)]*\))?\s|impl\b|struct\s|enum\s|interface\s|type\s+\w+\s|const\s|let\s|"
    r"var\s|function\b|export\s|return\b|if\s*\(|if\s.*:\s*$|for\s*\(|for\s.*:\s*$|while\b|"
    r"else\b|elif\s|try\s*[:{]|except\b|catch\b|switch\b|case\s|@\w+|//|/\*|\*/|\}|#\[|"
    r"[\w.\[\]'\"]+\s*(=|\+=|-=|:=|\|=|\?=)\s*\S|[\w.]+\(.*\)\s*;?\s*$|\"\"\"|'''|"
    # a shell script's (and a Makefile's conditionals)
    r"(if|while|until)\s+!?\s*\[|(then|fi|do|done|esac)\s*(;|$|#)|local\s|unset\s|"
    r"[\w-]+\s*\(\)\s*\{?\s*$|(ifeq|ifneq|ifdef|ifndef)\s|endif\s*$|\.PHONY\s*:|"
    # a Dockerfile's instructions
    r"(FROM|RUN|ARG|ENV|COPY|ADD|WORKDIR|ENTRYPOINT|CMD|EXPOSE|LABEL|USER|VOLUME|SHELL|"
    r"HEALTHCHECK|ONBUILD|STOPSIGNAL)\s+\S|"
    # Ruby's
    r"end\s*$|unless\s|elsif\s|module\s|require(_relative)?\s|raise\b|rescue\b|ensure\s*$|"
    r"attr_(reader|writer|accessor)\s|(?:.*\s|(?<=\s))do(\s*\|[^|]*\|)?\s*$)")
# a numbered log line with a level in lower case: npm's npm-debug.log ("38 error publish
# Failed PUT 403", "5 silly cache add ...")
NUMBERED_LEVEL_RE = re.compile(r"^\d+ (silly|verbose|info|http|warn|error|timing|debug|notice|"
                               r"trace)\s")
CODE_END_RE = re.compile(r"[;{}:,(\[]\s*$|^\s*[)\]}]|\s\\$")  # (and a continued line: " \")
HEADING_MD_RE = re.compile(r"^\s{0,3}#{1,6}\s+\S")
SECTION_MD_RE = re.compile(r"^#{2,6}\s+\S")  # a Markdown heading no program's comment looks like
# reStructuredText: a directive that documents one thing (``.. confval:: junit_family``) heads
# its indented description like a heading; field lines (``:default: ...``) are docs too
RST_ENTITY_RE = re.compile(r"^\.\. (confval|option|envvar|setting|describe|object|function|"
                           r"method|class|attribute|data|exception|decorator|module|program|"
                           r"py:\w+|c:\w+|js:\w+|std:\w+)::\s*\S")
RST_RE = re.compile(r"^\s*(\.\. [\w:-]+::|:[\w -]+:(\s|$))")
UNDERLINE_RE = re.compile(r"^\s*([=\-~^*+#\"'`:.])\1{2,}\s*$")
TEST_RE = re.compile(r"^(=+ .*(FAILURES|ERRORS|test session|short test summary|passed|failed).*=+"
                     r"|_{3,} .* _{3,}|(FAILED|PASSED|ERROR|SKIPPED|XFAIL)\b|E {2,}\S|--- (FAIL|PASS)"
                     r"|=== RUN|(not )?ok \d+|\s*(✓|✗|✕|×|√)\s|\s*at .*\(.*:\d+(:\d+)?\)$|\s*\d+\) )")
RECORD_RE = re.compile(r"^\s*(\{.*\}|<[\w?!/].*>)\s*,?\s*$")
TEST_RUN_RE = re.compile(r"^=+ (test session starts|FAILURES|ERRORS) =+$|^--- FAIL: |^=== RUN |"
                         r"<testsuites?\b|<test-run\b|^FAIL\s+\S+\s+\(?\d|^Tests run: \d+|"
                         r"^\s*\d+ (passing|failing)\b|^Test Suites: |"
                         # PHPUnit's banner and summary, RSpec's and Minitest's summaries,
                         # cargo test's, Vitest's, dotnet test's
                         r"^PHPUnit \d+\.\d+\S* by |^Tests: \d+, Assertions: \d+|"
                         r"^\d+ examples?, \d+ failures?|^\d+ runs, \d+ assertions, |"
                         r"^test result: (ok|FAILED)\. \d+ passed|^Test Files\s+\d+ (passed|failed)|"
                         r"^(Passed|Failed)!\s+- Failed:\s+\d+|^Total tests: \d+")


# a traceback as a program writes it: its header at the start of a line, its first frame
# right below (a document's example has ">>>" and "..." around it, or sits indented)
TRACE_HEAD_RE = re.compile(r"(Traceback \(most recent call last\):|Exception in thread |"
                           r"panic: |goroutine \d+ \[)")
TRACE_FRAME_RE = re.compile(r'\s+(File "[^"]+", line \d+|at [\w$.<>/]+\(|\S+\.go:\d+)|[\w./*()]+\(')


def _program_trace(lines: list[str]) -> bool:
    """Whether a program's traceback is in ``lines`` (its output, however wordy the rest):
    its header, indented or not (a build backend's, nested in a tool's output), with a frame
    indented deeper right below, not after an interpreter prompt (a doctest's example)."""
    for i, ln in enumerate(lines[:-1]):
        head = ln.lstrip()
        if head[:1] in "TEpg" and TRACE_HEAD_RE.match(head):
            below, indent = lines[i + 1], len(ln) - len(head)
            if (TRACE_FRAME_RE.match(below[indent:])
                    and len(below) - len(below.lstrip()) >= indent
                    and not (i and lines[i - 1].lstrip().startswith((">>>", "...")))):
                return True
    return False


# a linter's finding, one per line, after the file it is in: "src/a.cc(824):  Tab found
# [whitespace/tab] [1]", "/lib/x.pl: Code is not tidy at line 1" (a path with an extension)
FINDING_RE = re.compile(r"^(?:[A-Za-z]:)?[\w.~/\\-]*[\w-]\.[A-Za-z]\w{0,5}(?:\(\d+\)|:\d+)?:\s")


# a source excerpt's margin ("   |", " 36 | code"); its blanks read once (a line of 100,000
# tabs had taken 8 s: "\s*" and "\s+" split the run every way)
GUTTER_RE = re.compile(r"^\s*+(?:(?:\d+|LL|\.\.\.)\s+|(?<=\s))\|(\s|$)")
GUTTER_SHARE = 0.3  # of its relevance, a source excerpt's line under a diagnostic
LOCATION_RE = re.compile(r"\.\w{1,6}(?::\d+|\(\d+)")  # a file's line: "a.cpp:62", "a.cs(12"
TABLE_RULE_RE = re.compile(r"^\s*-+(?:\+-+)+\s*$")  # psql's "----+-------"


def detect(text: str) -> str:
    """``html`` (a page: read as its text, :mod:`agentflux.runtime.compress_html`), ``json``
    (one line: rewritten as valid JSON), ``json_lines`` (pretty-printed, or a fragment of it:
    a digest of its own lines), ``diff`` (unified), ``tree`` (a directory's, `tree`'s),
    ``yaml``, ``csv`` (or TSV), ``code``, ``log`` or ``prose`` (see the module docstring)."""
    s = text.lstrip()
    if s[:1] == "<" and htmlish(s):
        return "html"
    if s[:1] in "{[" and _parses(s):
        return "json" if s.count("\n") < 3 else "json_lines"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if jsonish(lines):
        return "json_lines"
    if not lines:
        return "log"
    if diffish(lines):
        return "diff"
    if tree_depths(lines) is not None:
        return "tree"
    if yamlish(lines):
        return "yaml"
    if csv_delimiter(lines):
        return "csv"
    # a Markdown document's fenced examples are the document's, not code to read as code
    # (but a program's traceback pasted in one is what a bug report is about: below)
    whole, fence, unfenced = lines, False, []
    for ln in lines:
        if FENCE_RE.match(ln):
            fence = not fence
        elif not fence:
            unfenced.append(ln)
    if (len(unfenced) < len(lines) and not fence
            and any(HEADING_MD_RE.match(ln) for ln in unfenced)):
        lines = unfenced
    step = max(1, len(lines) // 2000)  # a sample of long texts: detection stays cheap
    sample = lines[::step]
    n = len(sample)
    diag = [bool(DIAG_RE.search(ln[:300])) for ln in sample]
    logish = sum(bool(d or TIMESTAMP_RE.match(ln) or LEVEL_RE.search(ln[:60])
                      or NUMBERED_LEVEL_RE.match(ln)
                      or TEST_RE.match(ln.strip()) or FINDING_RE.match(ln))
                 for d, ln in zip(diag, sample))
    codeish = sum(bool(CODE_LINE_RE.match(ln) or CODE_END_RE.search(ln)) for ln in sample)
    proseish = sum(bool(HEADING_MD_RE.match(ln) or UNDERLINE_RE.match(ln) or RST_RE.match(ln)
                        or _wordy(ln)) for ln in sample)
    # records one per line (JSON lines, XML elements such as JUnit reports) and test runs are
    # read line by line whatever else they look like
    records = sum(bool(RECORD_RE.match(ln)) for ln in sample)
    if records >= 0.5 * n or any(TEST_RUN_RE.search(ln.strip()) for ln in sample[:400]):
        return "log"
    if _program_trace(whole):  # a script's output that ends in a traceback
        return "log"
    if logish >= 0.3 * n and logish >= codeish * 0.5:
        return "log"
    if record_lines(lines[:2000]) >= RECORDS_SHARE:
        return "log"
    # a build's output: a compiler's diagnostics on one line in ten or more (with the source
    # excerpts rustc and GCC write under them: "   |", "36 |     user_alias.field(...)")
    # (or on one line in twenty, ten of them at least: pip's log of a failed build, wordy
    # with its "Skipping link ..." lines)
    gutters = sum(bool(GUTTER_RE.match(ln)) for ln in sample) if sum(diag) >= 3 else 0
    if sum(diag) + gutters >= 0.1 * n or sum(diag) >= max(DIAG_MIN, 0.05 * n):
        return "log"
    if codeish >= 0.35 * n and codeish > proseish:
        # unless most lines begin as many others do: a program's records, whatever code they
        # hold (a slow query log's statements, an Ant build's [cpd] duplicates)
        return "log" if skeleton_share(sample) >= SKELETON_SHARE else "code"
    if proseish >= 0.25 * n:
        # unless two lines in three begin as many others do and most lines differ: a program's
        # records written in words, their values changing (a solver's "Solving for p, Initial
        # residual = ..." every iteration); a higher bar than code's, as documentation repeats
        # its phrasing more ("Default: ...")
        # (not a Markdown document in sections, "## [14.3.3]" and "### Fixed" over its bullets:
        # a changelog)
        records = (skeleton_share(sample) >= PROSE_SKELETON_SHARE
                   and len(set(sample)) >= PROSE_DISTINCT * n
                   and sum(bool(SECTION_MD_RE.match(ln)) for ln in sample) < 3)
        return "log" if records else "prose"
    return "log"


DIAG_MIN = 10  # compiler diagnostics that make a text a build's output at one line in twenty
RECORDS_SHARE = 0.6  # of the lines: records of several lines, a log (record_lines)
RECORDS_MIN = 0.05  # of the lines: those that open a record


def record_lines(lines: list[str]) -> float:
    """The share of ``lines`` that are a timestamped log line or indented under one: a log
    whose records run over several lines (Postgres' autovacuum report under its ``LOG:`` line,
    ``pages: 5 removed, 303 remain, ...``) reads as prose line by line; 0 when fewer than
    :data:`RECORDS_MIN` of the lines open a record."""
    opened = covered = 0
    inside = False
    for ln in lines:
        if TIMESTAMP_RE.match(ln):
            opened += 1
            inside = True
        elif not (inside and ln[:1] in (" ", "\t")):
            inside = False
            continue
        covered += 1
    n = max(1, len(lines))
    return covered / n if opened >= RECORDS_MIN * n else 0.0


SKELETON_SHARE = 0.35
PROSE_SKELETON_SHARE = 0.65  # of text read as prose (see detect)
# and this share of its lines differ: a record's values change (a MySQL slow log's "SET
# timestamp=...;" and "use db;" repeat word for word in every record: near half its lines)
PROSE_DISTINCT = 0.45
SKELETON_MIN = 0.03  # of the lines: a head this common is a template's
_DIGITS_RE = re.compile(r"\d+")
_PUNCT_RE = re.compile(r"^[\W_]+$")
_VALUE_RE = re.compile(r"(?<=\w)=.+$")


def skeleton_share(lines: list[str]) -> float:
    """The share of ``lines`` that begin as many others do: a program writes its records from
    a few templates (``# Query_time:``, ``[javac]``, ``[403/891] Building``), a person writes
    code and text from many. A line's head is its first two words, digits masked, or its first
    when that is a bracketed tag; heads of punctuation (``}``, ``* @param``'s ``*``) are code's
    and markup's, not a template's."""
    heads: collections.Counter[str] = collections.Counter()
    for ln in lines:
        # (a key=value word by its key: audit.log's "node=tom.example.com type=AVC")
        toks = [_VALUE_RE.sub("=", t)
                for t in _DIGITS_RE.sub("0", ln.strip()).split(maxsplit=2)[:2]]
        if len(toks) >= 2 and toks[0][:1] == "[" and toks[0][-1:] == "]":
            heads[toks[0]] += 1
        elif len(toks) >= 2 and not _PUNCT_RE.match(toks[1]):
            heads[toks[0] + " " + toks[1]] += 1
    least = max(3, SKELETON_MIN * len(lines))
    return sum(v for v in heads.values() if v >= least) / max(1, len(lines))


# the rest of a YAML key: words without quotes, colons or "#", spaces only between them (spaces
# before the colon are the colon's), possessive so that a long run of spaces is read once (as
# "[^"':#]*?" it was read again from each of its spaces: quadratic time)
_YAML_KEY_REST = r"""[^"':#\s]*+(?:\s++[^"':#\s]++)*+"""
YAML_LINE_RE = re.compile(r"""^\s*(-\s+)?["']?[\w.$@/]""" + _YAML_KEY_REST
                          + r"""\s*+["']?\s*:(\s|$)|^\s*-(\s|$)|^\s*#|^---(\s|$)|^\.\.\.\s*$""")
_BLOCK_SCALAR_RE = re.compile(r":\s*[|>][+-]?\d*\s*$")  # "description: |": text lines follow
_DIFF_LINE_RE = re.compile(r"^([ +\-\\]|@@ )")


def diffish(lines: list[str]) -> bool:
    """A unified diff: hunk headers, and most lines a hunk's or a file header's (a commit
    message and a diffstat around them)."""
    hunks = sum(1 for ln in lines[:20000] if HUNK_RE.match(ln))
    if hunks < 2 and not (hunks and any(ln.startswith("diff --git ") for ln in lines[:200])):
        return False
    inside = sum(1 for ln in lines if _DIFF_LINE_RE.match(ln) or DIFF_HEADER_RE.match(ln))
    return inside >= 0.7 * len(lines)


YAML_MAPPED = 0.2  # of a YAML text's lines, "key:" lines at least
# Python's compound statements end in a colon as a YAML key does ("def get(self, url):", a
# search's results for "def " are all of them)
PY_BLOCK_RE = re.compile(r"\s*(?:(?:async\s+)?def|class|elif|if|for|while|with|except)[\s(].*:\s*$"
                         r"|\s*(?:else|try|finally):\s*$")


def yamlish(lines: list[str]) -> bool:
    """YAML: most lines a mapping's ``key:`` (or a list's ``- ``, a comment, ``---``), some of
    them indented (a structure, not a list of ``Name: value`` lines)."""
    sample = lines[:20000]
    keyed = nested = code_ends = fences = mapped = 0
    block = -1  # the indentation of a block scalar's key ("description: |"): text below it
    for ln in sample:
        ind = len(ln) - len(ln.lstrip(" "))
        if block >= 0 and ind > block:
            keyed += 1  # a line of the block's text
            continue
        block = -1
        key = YAML_KEY_RE.match(ln)
        if key and key.group(1).isdigit():  # a backtrace's "  0: 0x7f2e..." is no mapping
            continue
        if YAML_LINE_RE.match(ln):
            keyed += 1
            mapped += bool(key)
            nested += ln[:1] == " " or ln.startswith("- ")
            if _BLOCK_SCALAR_RE.search(ln):
                block = ind
        code_ends += ln.rstrip().endswith((";", "{", ")")) or bool(PY_BLOCK_RE.match(ln))
        fences += ln.startswith("```")  # Markdown's (a bulleted list is YAML's too)
    n = len(sample)
    # and some of it a mapping's keys: headings and bulleted lines alone are Markdown's (a
    # changelog's "## [14.3.3]", "### Fixed", "- Fixed ...")
    return (keyed >= 0.7 * n and nested >= 0.2 * n and code_ends < 0.05 * n and not fences
            and mapped >= YAML_MAPPED * n)


def _wordy(line: str) -> bool:
    """A line of running text: six words or more, most of them plain words."""
    words = line.split()
    return (len(words) >= 6 and sum(w.strip(".,;:()`*'\"").isalpha() for w in words)
            >= 0.6 * len(words) and not CODE_END_RE.search(line))


def _parses(s: str) -> bool:
    import orjson
    try:
        orjson.loads(s)
        return True
    except orjson.JSONDecodeError:
        import json
        try:  # integers beyond 64 bits: the standard parser takes them
            json.loads(s)
            return True
        except (ValueError, RecursionError):  # or nested deeper than its stack
            return False


# -- units ------------------------------------------------------------------------------------

@dataclass
class Unit:
    """One piece of a text the compressor keeps or drops whole: lines ``[line, end)`` (or a
    sentence ``part`` of line ``line``)."""
    line: int
    end: int
    text: str
    value: float = 0.0  # what keeping it is worth (relevance + what its kind says)
    deps: list[int] = field(default_factory=list)  # units a kept one brings along
    critical: bool = False  # protected: an error, a final exception, a fence
    part: int = -1  # >= 0: a sentence of a split line
    similar: bool = False  # repeats an earlier line's template
    filler: bool = True  # may fill the budget left over
    fold: int = 0  # length of a timestamp prefix that may be left out after a line of its form
    fold_key: str = ""  # that prefix's form (digits masked)
    base: float = 0.0  # value before relevance (a strategy's own)
    outline: bool = False  # part of the text's outline (a signature, a heading): fill material
    glue: str = " "  # what joins it to the part before it when both are kept
    # a log line that opens a record of several lines (its template recurs at a regular
    # distance): the line after its record's last (:func:`record_blocks`); else -1
    record_end: int = -1
    # a JSON record on one line (a structured log's): its fields, as (key, text, is a time)
    record: tuple[tuple[str, str, bool], ...] | None = None
    short: str = ""  # what it costs written folded (:func:`folded`), when it may be
    rule: bool = False  # a line drawn as a rule (:func:`is_rule`): no line's context
    frame: int = -1  # a trace's frame: its place from the innermost (0); else -1
    numbers: str = ""  # its line's number written before it (:func:`line_numbers`)


def line_units(lines: list[str]) -> list[Unit]:
    return [Unit(i, i + 1, ln) for i, ln in enumerate(lines)]


# -- logs and test reports --------------------------------------------------------------------

EXC_NAME_RE = re.compile(r"\b([A-Z][A-Za-z0-9]*(Error|Exception|Failure|Fault|Panic|Warning)|"
                         r"(?<!\.)[a-z][\w.]*\.[A-Z]\w*(Error|Exception))\b")
ERROR_WORD_RE = re.compile(r"\b(error|errors|exception|traceback|fatal|panic|panicked|failed|"
                           r"failure|failures|failing|critical|severe|denied|refused|timeout|"
                           r"timed out|segfault|segmentation fault|errno|assert\w*|abort(ed)?|"
                           r"killed|oomkilled|unhandled|uncaught|cannot|can't|could not|"
                           r"unable to|unsuccessful|non-zero|exit (code|status):? ?[1-9]\d*|"
                           r"incompatible|conflicts?|conflicting)\b", re.I)
ERROR_LEVEL_RE = re.compile(r"\b(ERROR|ERR|FATAL|CRITICAL|SEVERE|PANIC|FAIL(ED)?|EMERG|ALERT)\b")
FRAME_RE = re.compile(r'^\s*(File "[^"]+", line \d+|at [\w$.<>/]+\(.*\)$|at .+:\d+(:\d+)?\)?$|'
                      r"#\d+\s+0x[0-9a-f]+|\S+\.(go|rs|py|js|ts|java|kt|c|cc|cpp):\d+|"
                      r"\S+\(\S*\)$|[\w/.-]+:\d+: in \w+|\.\.\. \d+ more$|"
                      r"\d+\s+[\w.+-]+![\w:~<>]+|"  # a minidump's module!function
                      # the Linux kernel's ("[<ffffffff83a7b4b7>] rtnl_lock+0x17/0x20", newer
                      # kernels without the address, "? " before a guessed frame)
                      r"(\[<[0-9a-f]+>\]\s+|\?\s+)?[\w.]+\+0x[0-9a-f]+/0x[0-9a-f]+)")
TRACEBACK_RE = re.compile(r"^\s*\W{0,4}(Traceback \(most recent call last\)|Exception in thread|"
                          r"goroutine \d+ \[|panic:|thread '.*' panicked|Caused by:|"
                          r"Stack trace:|stack backtrace:)")
PYTHON_FRAME_RE = re.compile(r'^\s*(File "[^"]+", line \d+|[\w/.-]+\.py:\d+: in \w)')
BARE_HEADER_RE = re.compile(r"^\s*\W{0,4}(Stack trace|stack backtrace|Caused by):?\s*$", re.I)
# frames of a language's runtime, test frameworks and installed packages
LIBRARY_FRAME_RE = re.compile(
    r"\b(at |File \")?(java|javax|jdk|sun|com\.sun|kotlin|kotlinx|scala|org\.junit|junit|"
    r"org\.testng|org\.apache\.maven|org\.gradle|org\.springframework|System|Microsoft|"
    r"NUnit|Xunit|Castle|OpenQA)\.|site-packages/|dist-packages/|/lib/python\d|<frozen |"
    r"node_modules/|node:internal|\(internal/|/usr/lib/|/vendor/|\.cargo/registry|/rustc/|"
    r"/go/src/runtime/|testing/testing\.go|\[native code\]|\(Native Method\)|"
    # Go's standard library (GOROOT's src/ where Go installs it: /usr/local/go, Debian's
    # /usr/lib/go-1.x, Homebrew's libexec, golang.org/dl's ~/sdk/go1.x) and modules (the
    # module cache, where toolchains are too); not any "/go/src/": a program built under
    # /go/src/app (the golang image's old WORKDIR) or a GOPATH is the program
    r"/usr/local/go/src/|/usr/lib/go[\w.-]*/src/|/sdk/go[\d.]+/src/|/libexec/src/|/pkg/mod/")
# (one optional group after the package: a repeated one, its class holding dots as the
# package's does, tried every split of a line that fails: exponential)
GO_FUNC_RE = re.compile(r"^[\w.\-/]+(\.\(\*?[\w.\[\], ]+\))?(\.[\w\[\],. ]+)?\(.*\)$")
GO_FILE_RE = re.compile(r"^\t\S+\.go:\d+( \+0x[0-9a-f]+)?$")
IN_APP_VALUE = 1.0  # added to such a frame's value
LIBRARY_FRAME_VALUE = 0.1  # a library's frame inside a trace (not its first or last)
PYTEST_E_RE = re.compile(r"^\s*E {2,}\S")
RSPEC_FAILURE_RE = re.compile(r"(^|\s)(\d+(\.\d+)*\)\s+)?Failure/Error:")  # "1.1) Failure/Error: x"
PYTEST_WHERE_RE = re.compile(r"^\s*[\w./\\-]+:\d+: [\w.]+\s*$")  # "failure_demo.py:185: NameError"
# PATH_RE reads a run of name characters again from each of its "." and "-" ("a.a.a..."): time
# quadratic in the run's length. A line with a run as long as _LONG_RUN_RE's is read only as far
# as PATH_HEAD (no real path is such a run; a minified script or a dump may hold one). A path
# has at most 32 directories and names of 255 characters: "a/b-a/b-..." was read to its end from
# each "-" (100,000 characters took 70 s; now 0.06; no line of the sets, probes and samples is
# read otherwise)
PATH_HEAD = 1200
_LONG_RUN_RE = re.compile(r"[\w.-]{300}")
PATH_RE = re.compile(r"(?<![\w@/:])(?:\.{0,2}/)?(?:[\w.-]{1,255}/){1,32}[\w.-]{1,255}\.\w{1,6}"
                     r"(?::\d+(?::\d+)?)?|"
                     r"\b[\w-]+\.(?:py|js|ts|tsx|go|rs|java|kt|c|cc|cpp|h|hpp|rb|php|cs|json|"
                     r"ya?ml|toml|ini|cfg|md|sql|sh)(?::\d+)?\b")


def has_path(line: str) -> bool:
    """Whether ``line`` names a file (:data:`PATH_RE`), in time linear in its length."""
    if len(line) > PATH_HEAD and _LONG_RUN_RE.search(line):
        line = line[:PATH_HEAD]
    return bool(PATH_RE.search(line))


TEMPLATE_RE = re.compile(r"0x[0-9a-fA-F]+|\b[0-9a-fA-F]{8,}\b|\d+(\.\d+)*|\"[^\"]{0,80}\"|"
                         r"'[^']{0,80}'")
JEST_FILE_RE = re.compile(r"^(PASS|FAIL) \S")
SUMMARY_RE = re.compile(r"^=+ .*\b(\d+ (failed|passed|errors?)|no tests ran)\b.*=+$|"
                        r"^(FAILED|ERROR) \S+::|"
                        r"^(Tests?|Test Suites):\s+\d+|^FAIL\s+\S|^--- FAIL:|^not ok \d+|"
                        r"^\s*\d+ (failing|passing)\b|^(BUILD|Build) (FAILED|FAILURE)|"
                        # Maven's and Gradle's end of a build, and Surefire's count of all tests
                        r"^(\[\w+\] )?(BUILD (SUCCESS|SUCCESSFUL|FAILURE|FAILED)\b|Total time:|"
                        r"Tests run: \d+, Failures: \d+, Errors: \d+, Skipped: \d+$)|"
                        # a linter's or type checker's count (ruff, mypy, tsc, Biome; ESLint's)
                        r"^Found \d+ (errors?|warnings?|problems?|issues?)\b|"
                        r"^\W{0,2}\d+ problems? \(\d+ errors?, \d+ warnings?\)")


# an HTTP exchange's status: an access log's request line and status, a recorded API
# response's "status": 404 / "code": 301
ACCESS_RE = re.compile(r'"(?:GET|POST|PUT|DELETE|HEAD|PATCH|OPTIONS|CONNECT|TRACE) [^"]*" (\d{3})\b')
STATUS_FIELD_RE = re.compile(r'"(?:status|status_?code|statusCode|code)"\s*:\s*"?(\d{3})\b', re.I)


# a client's or a server's response line: curl's "< HTTP/1.1 403 Forbidden", npm's "http 403
# https://registry...", "statusCode 403", "status: 503"
# a server's line for the response to a request logged above it: Rails' "Completed 401
# Unauthorized in 1ms", Phoenix's "Sent 404 in"
SERVER_RESPONSE_RE = re.compile(r"(?:^|\s)(?:Completed|Sent) (\d{3}) (?:[A-Z][\w -]*? )?in \d")
RESPONSE_RE = re.compile(r"\bHTTP/\d(?:\.\d)? (\d{3})\b|^\d+ http (\d{3}) |"
                         r"\bstatus(?:Code|_code)?:? (\d{3})\b|" + SERVER_RESPONSE_RE.pattern)
# the request a server logs when it starts on it (Rails' 'Started GET "/domains" for ...',
# Phoenix's "GET /domains"), its response's status logged lines below
REQUEST_LINE_RE = re.compile(r"(?:^|\s)(?:Started )?(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) "
                             r"\"?/")
REQUEST_REACH = 40  # lines up from a response's status to its request
_PID_RE = re.compile(r"#\d+\]")  # Rails' "[2014-06-16T17:07:10.900658 #31321]"


# Jest's and Vitest's diff of a failed assertion: "- Expected" (and "+ Received") over the
# values, "-" and "+" lines among them; ANSI colours aside
_EXPECTED_RE = re.compile(r"^\s*- Expected\b")  # (colour codes are left out before: compress)
_RECEIVED_RE = re.compile(r"^\s*\+ Received\b")
DIFF_LINES = 24  # of an assertion's diff that come with its "- Expected" line, at most
DIFF_VALUE = 2.5  # an assertion's diff's header (its lines: half): as much as a final exception


def assertion_diffs(lines: list[str]) -> dict[int, list[int]]:
    """Each "- Expected" line of a test runner's failed assertion (Jest's, Vitest's) mapped to
    the lines of its diff: down to the first blank line after the values that follow "+
    Received" (Jest writes the headers, a blank line, then the diff; Vitest's
    ``toMatchObject`` the expected value, a blank line, "+ Received:" and the received one),
    :data:`DIFF_LINES` at most: what was expected and what came is the failure."""
    out: dict[int, list[int]] = {}
    n = len(lines)
    for i, ln in enumerate(lines):
        if not _EXPECTED_RE.match(ln):
            continue
        block: list[int] = []
        received = values = False
        j = i + 1
        while j < n and len(block) < DIFF_LINES:
            t = lines[j].strip()
            if not t:
                if received and values:
                    break
            elif _RECEIVED_RE.match(lines[j]):
                received, values = True, False
            else:
                values = True
            block.append(j)
            j += 1
        if received:
            out[i] = [k for k in block if lines[k].strip()]
    return out


def requests_of(lines: list[str], err: Sequence[bool]) -> dict[int, int]:
    """Each server line reporting a response's status of 400 or more without its request
    (Rails' "Completed 401 Unauthorized in 1ms") mapped to the line that started that request,
    the nearest above it (of the same process, where the lines name one): which request
    failed is little without it. ``err``: which lines report an error (such a status does).
    Only such server lines: an access log's line holds its request."""
    out: dict[int, int] = {}
    for i, ln in enumerate(lines):
        m = SERVER_RESPONSE_RE.search(ln) if err[i] else None
        if m is None or int(m.group(1)) < 400:
            continue
        pid = _PID_RE.search(ln[:120])
        for j in range(i - 1, max(-1, i - REQUEST_REACH), -1):
            if REQUEST_LINE_RE.search(lines[j]) and (
                    pid is None or pid.group() in lines[j][:120]):
                out[i] = j
                break
    return out


# rustc's (and clippy's) diagnostic: its message on one line, where on the next
RUST_DIAG_RE = re.compile(r"^(error|warning)(\[\w+\])?: \S")
RUST_AT_RE = re.compile(r"^\s*--> \S+:\d+(:\d+)?\s*$")


def diagnostic_locations(lines: list[str]) -> dict[int, int]:
    """Each diagnostic's message line mapped to its location line below it (rustc's
    ``warning: this function has too many lines (104/100)`` over ``--> src/a.rs:65:1``):
    neither says much without the other."""
    out = {}
    for i in range(len(lines) - 1):
        if RUST_DIAG_RE.match(lines[i]) and RUST_AT_RE.match(lines[i + 1]):
            out[i] = i + 1
    return out


def http_status(line: str) -> int:
    """The HTTP status a line reports (an access log entry, a recorded response, a client's
    response line), else 0."""
    m = ACCESS_RE.search(line) or STATUS_FIELD_RE.search(line)
    if m is None and (r := RESPONSE_RE.search(line)):
        return int(next(g for g in r.groups() if g))
    return int(m.group(1)) if m else 0


# a level written as one letter: Android's logcat ("03-17 16:13:46.764  2227  2794 E Tag: ...",
# "E/Tag( 2227): ..."), glog's and klog's ("E0317 16:13:46.764123   12345 file.go:123] ...")
LETTER_ERROR_RE = re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[EF]\s|"
                             r"^[EF]/[^\s(]+\(\s*\d+\)|"
                             r"(^|\s)[EF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [\w.-]+:\d+\]")


# a test runner's mark of a failed test: Jest's ✕, Vitest's ×, Playwright's ✘, tap's ✖ and ✗
FAILED_MARK_RE = re.compile(r"^\s*(?:\x1b\[[\d;]*m)*[✕×✘✖✗](?:\x1b\[[\d;]*m)*\s+\S")


def is_error(line: str) -> bool:
    head = line[:200]
    if http_status(line) >= 400 or FAILED_MARK_RE.match(head):
        return True
    return bool(ERROR_LEVEL_RE.search(head) or EXC_NAME_RE.search(head)
                or LETTER_ERROR_RE.search(head)
                or PYTEST_E_RE.match(line)
                # "Stack trace:" alone says nothing: the line above it does (log_units)
                or (TRACEBACK_RE.match(line) and not BARE_HEADER_RE.match(line))
                or SUMMARY_RE.match(line.strip()) or ERROR_WORD_RE.search(head))


XML_OPEN_RE = re.compile(r"^\s*<([\w:.-]+)\b[^<>]*[^/<>]>\s*$")  # <error id="x" ...>
XML_EMPTY_RE = re.compile(r"^\s*<[\w:.-]+\b[^<>]*/>\s*$")  # <location file="a.c" line="7"/>
XML_CHILDREN = 3


def _xml_children(body: list[str]) -> dict[int, list[int]]:
    """Each XML element written over a few lines whose children are all empty elements
    (cppcheck's ``<error ...>`` and its ``<location file= line=/>``), mapped to them: a
    finding is little without where it is."""
    out: dict[int, list[int]] = {}
    for i, ln in enumerate(body):
        m = XML_OPEN_RE.match(ln) if ln.lstrip().startswith("<") else None
        if not m:
            continue
        j = i + 1
        while (j < len(body) and j - i <= XML_CHILDREN and XML_EMPTY_RE.match(body[j])
               and _indent(body[j]) > _indent(ln)):
            j += 1
        if j > i + 1 and j < len(body) and body[j].strip() == f"</{m.group(1)}>":
            out[i] = list(range(i + 1, j))
    return out


# a "Key: value" line of a block of fields (erl_crash.dump's "Memory: 163880", `pip show`,
# Debian's control files)
FIELD_LINE_RE = re.compile(r"^\s*([A-Za-z][\w .+/()-]{0,40}?):\s+\S")
FIELD_ID_KEYS = frozenset({"name", "id", "uid", "uuid", "pid", "package", "title", "hostname",
                           "node", "pod"})
FIELD_BLOCK_MIN = 3  # fields in a block


def field_blocks(lines: list[str]) -> dict[int, list[int]]:
    """Each line of a block of ``Key: value`` fields (at least :data:`FIELD_BLOCK_MIN`,
    between blank lines or lines that are no field) that has identifying fields (``Name:
    kernel_sup``, ``Package: ...``), mapped to them: a process's ``Memory: 163880`` says
    little without whose it is."""
    out: dict[int, list[int]] = {}
    n = len(lines)
    key = [m.group(1).strip().lower() if (m := FIELD_LINE_RE.match(ln)) else None
           for ln in lines]
    i = 0
    while i < n:
        if key[i] is None:
            i += 1
            continue
        j = i
        while j < n and lines[j].strip() and (key[j] is not None
                                               or _indent(lines[j]) > _indent(lines[i])):
            j += 1
        fields = [k for k in range(i, j) if key[k] is not None]
        ids = [k for k in fields if key[k] in FIELD_ID_KEYS][:2]
        if len(fields) >= FIELD_BLOCK_MIN and ids:
            for k in range(i, j):
                if k not in ids:
                    out[k] = ids
        i = max(j, i + 1)
    return out


# a line of numbers and nothing else once its XML tags are gone: "<counter>5894</counter>",
# ip -s link's "118451931881 163297856 0 0 0 5039072" under its "RX: bytes packets ..."
# (a digit looked ahead for, the line read once: "\d" between two runs of the same class
# had tried every split of a line of digits and blanks, 19 s at 40,000 characters)
_VALUES_RE = re.compile(r"^(?=\D*+\d)[\s\d.,:;%/|+-]*+$")
_TAG_RE = re.compile(r"</?[\w:.-]+/?>")


def log_units(lines: list[str], rel: list[float]) -> list[Unit]:
    units = line_units(lines)
    n = len(lines)
    # what each line says, a CI runner's timestamp before it aside (GitHub Actions stamps
    # every line): indentation, frames and exceptions are read there
    # (and an XML-escaped carriage return after it: JUnit reports' "&#13;")
    tag = mux_tag(lines)
    body = [_unstamped(ln, tag).removesuffix("&#13;") for ln in lines]
    err = [is_error(ln) if ln.strip() else False for ln in lines]
    # Jest: a failed test ("● Suite › test") in a file that FAILed is an error and counts as a
    # summary does (not systemd's "● nginx.service"); what a file's tests logged, indented
    # under "● Console" (a passing test's console.error of the failure it provoked), is none
    jest_failed: set[int] = set()
    failing, console = False, -1  # (the "● Console" line's indentation, in its block)
    for i, ln in enumerate(body):
        st = ln.strip()
        if not st:
            continue
        # (its own indentation: a logged line's time is no CI runner's stamp before it)
        ind = _indent(lines[i] if lines[i][:1].isspace() else ln)
        if 0 <= console < ind:
            err[i] = False
            continue
        console = -1
        if JEST_FILE_RE.match(st):
            failing = st.startswith("FAIL")
        elif st == "\u25cf Console":
            console = ind
        elif failing and st.startswith("\u25cf "):
            jest_failed.add(i)
            err[i] = True
    # a compiler's excerpt of the source under a diagnostic ("  62 |   std::cerr << ...",
    # "     |   ^~~~"): the code it quotes is no error, and its words say little of its own.
    # It starts within three lines of a file's line (gcc's "rag.cpp:62:64: error: ...",
    # rustc's "--> src/x.rs:3:5", Ruff's finding) and goes on while its lines do; not across a
    # table's rule (psql's " 1 | ERROR | disk full" under "psql:jobs.sql:3: ERROR: ...")
    gutter = [False] * n
    for i, ln in enumerate(body):
        if not GUTTER_RE.match(ln):
            continue
        if i and gutter[i - 1]:
            gutter[i] = True
        else:
            for j in range(i - 1, max(-1, i - 4), -1):
                if TABLE_RULE_RE.match(body[j]):
                    break
                if RUST_AT_RE.match(body[j]) or (
                        LOCATION_RE.search(body[j][:PATH_HEAD]) and has_path(body[j])):
                    gutter[i] = True
                    break
        if gutter[i]:
            err[i] = False
    frame = [bool(FRAME_RE.match(ln)) for ln in body]
    # Go's frames are two lines: the function, then its file and line indented by a tab
    go_func = [i + 1 < n and bool(GO_FILE_RE.match(body[i + 1])) and bool(GO_FUNC_RE.match(ln))
               for i, ln in enumerate(body)]
    for i in range(n):
        frame[i] = frame[i] or go_func[i]
    final = [False] * n
    raised: dict[int, int] = {}  # pytest's "file.py:LINE: Error" line -> the exception's line
    # the final exception of each traceback: Python's first line after the frames that is not
    # indented (or pytest's last "E" line of a block); Java's/Go's header line itself
    for i, ln in enumerate(body):
        if TRACEBACK_RE.match(ln):
            if "Traceback" in ln:  # indented as a whole in some outputs: relative to it
                base = _indent(ln)
                j = i + 1
                while j < n and (_indent(body[j]) > base or not body[j].strip()):
                    j += 1
                if j < n:
                    final[j] = err[j] = True
            elif BARE_HEADER_RE.match(ln):  # "Stack trace:" says nothing: the line above does
                j = i - 1
                while j >= 0 and not body[j].strip():
                    j -= 1
                if j >= 0:
                    final[j] = err[j] = True
            else:
                final[i] = err[i] = True
        if PYTEST_E_RE.match(ln) and (i + 1 >= n or not PYTEST_E_RE.match(body[i + 1])):
            final[i] = True
            # the first "E" line of the block (the assertion) matters as much
            j = i
            while j > 0 and PYTEST_E_RE.match(body[j - 1]):
                j -= 1
            final[j] = True
            # and the block's last line, where pytest says which line raised what (it brings
            # the exception it names: one is little without the other)
            j = i + 1
            while j < n and j <= i + 2 and not body[j].strip():
                j += 1
            if j < n and PYTEST_WHERE_RE.match(body[j]):
                final[j] = err[j] = True
                raised[j] = i
        if EXC_NAME_RE.match(ln.strip()) and ":" in ln:  # "ValueError: ..." on a line of its own
            final[i] = err[i] = True
        if RSPEC_FAILURE_RE.search(ln):  # RSpec: the exception's class, then its message
            j = i + 1  # (a CI runner's timestamp before each line aside)
            while j < n and not body[j].strip():
                j += 1
            if j < n:
                final[j] = err[j] = True
                if j + 1 < n and _indent(body[j + 1]) > _indent(body[j]):
                    final[j + 1] = err[j + 1] = True
    # the first frame of a trace in the application's code, not a library's or the runtime's
    # (Sentry's "in app" frame): where the user's code failed
    in_app = [False] * n
    inner = [False] * n  # a library's frame between a trace's first and last: says least
    i = 0
    while i < n:
        if frame[i]:
            j = i
            while j < n and (frame[j] or not body[j].strip()
                             or (_indent(body[j]) > _indent(body[i]) and not err[j])):
                j += 1
            frames = [k for k in range(i, j) if frame[k]]
            app = [k for k in frames  # (a Go function: by its file, below it)
                   if not LIBRARY_FRAME_RE.search(lines[k + 1] if go_func[k] else lines[k])]
            top = _package(body[i]) if app[:1] == [i] else ""
            if top:  # a library no list names (org.hibernate) is the top frame's package
                app = [k for k in app if _package(body[k]) not in ("", top)]
            for k in set(frames[1:-1]) - set(app):
                inner[k] = True
            # Python's frames, innermost last: "File ..., line N, in f", pytest's short
            # "path.py:N: in f"
            python = bool(PYTHON_FRAME_RE.match(body[i]))
            # the frames a reader counts: Python's (not the source under them), Go's functions
            # (not the file and line under each)
            counted = [k for k in frames if (bool(PYTHON_FRAME_RE.match(body[k])) if python
                                             else not (k > 0 and go_func[k - 1]))]
            # a trace: two frames or more right under (a line or two) an error, a trace's header,
            # a line that says what follows (ASan's "freed by thread T0 here:"), or right above its
            # final exception (a run of findings or warnings, "a.py:3: Warning", and a line
            # alone, pytest's "utils.py:1795: RuntimeError", are none)
            above = []  # the two lines above, up to a blank line
            for h in (i - 1, i - 2):
                if h < 0 or not body[h].strip():
                    break
                above.append(h)
            if len(counted) > 1 and (
                    any(err[h] or TRACEBACK_RE.match(body[h]) for h in above)
                    or (i > 0 and body[i - 1].rstrip().endswith(":"))
                    or any(final[h] for h in range(j, min(n, j + 3)))):
                for rank, k in enumerate(reversed(counted) if python else counted):
                    units[k].frame = rank
            if body[i].lstrip().startswith("File \"") and app and app[-1] < frames[-1]:
                in_app[app[-1]] = True  # Python's, innermost last: the last before a library's
            elif app and app[0] > i:  # Java's, innermost first: the first below the libraries'
                in_app[app[0]] = True
            i = j
        else:
            i += 1
    # error blocks: runs of error and frame lines (with the indented source lines of frames)
    edge = [False] * n
    i = 0
    while i < n:
        if err[i] or frame[i]:
            j = i
            while j + 1 < n and (err[j + 1] or frame[j + 1]
                                 or (frame[j] and body[j + 1].strip()
                                     and _indent(body[j + 1]) > _indent(body[j]))):
                j += 1
            edge[i] = edge[j] = True
            i = j + 1
        else:
            i += 1
    xml_children = _xml_children(body)
    # GitHub Actions: the step each line is in, by its "##[group]Run <command>" line
    step, at = [-1] * n, -1
    for i, ln in enumerate(body):
        if ln.startswith("##[group]Run "):
            at = i
        step[i] = at if i != at else -1
    failed_steps = {step[i] for i in range(n) if err[i] and step[i] >= 0}
    group = templates(lines, err)
    last_of: dict[int, int] = {}
    size: dict[int, int] = {}
    for i, g in enumerate(group):
        if g >= 0:
            last_of[g] = i
            size[g] = size.get(g, 0) + 1
    tail = [i for i in range(n) if body[i].strip()][-TAIL_LINES:]
    # the two best relevances in each template: a line stands out of its template when the
    # template's first line answers nothing, or when it answers far better than all the others
    # (jstack's "- locked <0xd5bada80>" among "- locked <...>" lines of other addresses)
    best2: dict[int, tuple[float, float]] = {}
    for i, g in enumerate(group):
        if g >= 0:
            a, b = best2.get(g, (0.0, 0.0))
            best2[g] = (rel[i], a) if rel[i] > a else (a, max(b, rel[i]))
    odd = {i for i, g in enumerate(group)
           if g >= 0 and rel[i] >= STANDS_OUT and (
               rel[g] <= 1.0 - STANDS_OUT
               or (rel[i] == best2[g][0] and rel[i] - best2[g][1] >= STANDS_OUT_BY))}
    odd_in: dict[int, int] = {}
    for i in odd:
        odd_in[group[i]] = odd_in.get(group[i], 0) + 1
    # a flood: the lines that match the query mostly repeat a few templates (a brute force's
    # failed logins); a matching line of a template of its own is what differs (the login
    # that was accepted)
    matching = [i for i in range(n) if rel[i] > 0 and group[i] >= 0]
    flooded = len(matching) >= FLOOD_MIN and sum(
        size[group[i]] >= FLOOD_REPEATS for i in matching) >= FLOOD_SHARE * len(matching)
    lone = {i for i in matching if size[group[i]] == 1} if flooded else set()
    if len(lone) > LONE_MAX:  # many lines differ: none stands out
        lone = set()
    for u in units:
        # its timestamp (with `gh run view --log`'s job and step before it: the same job's and
        # step's lines fold as one prefix), its form and its time to the minute: a line logged
        # minutes after the one above keeps its time (when the donor finished, not only that
        # it did); the prefix and one space after it (the line's own indentation stays)
        job, time, end = stamp(u.text, tag)
        if time and end - len(job) >= 12 and end < len(u.text):
            minute = _MINUTE_RE.search(time)
            u.fold = end
            u.fold_key = job + re.sub(r"\d", "#", time) + (
                "|" + time[:minute.end()] if minute else "")
    parent = indent_parents([_indent(ln) for ln in body], reach=PARENT_REACH)
    under: dict[tuple[int, int], int] = {}  # a template's first line under each header
    for i, u in enumerate(units):
        ln = u.text
        if not ln.strip():
            u.value, u.filler = 0.0, True
            continue
        g = group[i]
        first_or_last = g < 0 or g == i or last_of[g] == i
        # a line among the query's best answers whose template's first line answers nothing is
        # no repeat when it is one of few such: its differing words are what is asked for
        # (the one pod in CrashLoopBackOff among 400 Running)
        u.similar = not first_or_last and not (i in odd and odd_in[g] <= STANDS_OUT_MAX)
        r = rel[i] * (GUTTER_SHARE if gutter[i] else 1.0)
        v = 2.0 * r
        if err[i] and r >= 0:  # an error the query excludes ("rather than 404") is none
            v += 1.2 + 1.5 * r
        if final[i]:
            v += 2.5
        if edge[i] and err[i]:
            v += 0.6
        if frame[i]:
            v += (LIBRARY_FRAME_VALUE if inner[i] else 0.35) + (IN_APP_VALUE if in_app[i] else 0.0)
        if has_path(ln) and not inner[i]:
            v += 0.25
        if (SUMMARY_RE.match(ln.strip()) or SUMMARY_RE.match(body[i].strip())
                or i in jest_failed):
            v += 1.5
        if 300 <= http_status(ln) < 400:  # a redirect: worth more than a plain 200
            v += 0.6
        if i in tail:  # how it ended
            v += 0.8
        if i in lone:
            v += LONE_VALUE
        if i in failed_steps:  # the command of a CI step that failed
            v += STEP_VALUE
        # a final exception is worth its own value unless it repeats its template's first
        # word for word (numbers and ids aside): the same error again, every minute; and a
        # line that matches, repeating its template under a header of its own, is no repeat
        # in a short list (<= LIST_MAX): "<skipped />" says which test only with its header,
        # jstack's 'which is held by "DeadlockThread-C"' whose lock each thread waits on
        # (the first of its template under that header: the same line again under it, an
        # ESLint file's nine "'X' is already declared" at other lines, repeats)
        if u.similar and not (final[i] and _masked(ln) != _masked(lines[g])) and not (
                parent[i] >= 0 and r > 0 and size[g] <= LIST_MAX
                and (parent[g] < 0 or body[parent[i]].strip() != body[parent[g]].strip())
                and under.setdefault((g, parent[i]), i) == i):
            v *= 0.25
        u.value = v
        # protected: what the query excludes is not (r < 0: "an exception other than X")
        u.critical = (final[i] or (err[i] and r > 0)) and not u.similar and r >= 0
        u.filler = not u.similar
        if (frame[i] and i + 1 < n and not frame[i + 1] and body[i + 1].strip()
                and _indent(body[i + 1]) > _indent(body[i])):
            u.deps = [i + 1]  # a Python frame's source line (indented under it)
        if go_func[i]:
            u.deps = [i + 1]  # a Go function's file and line
        # an indented line brings the lines it is under (a JUnit testcase; shellcheck's "In x
        # line 855:" over the code line a finding's "^-- SC2054" marks)
        p, up = parent[i], 0
        while p >= 0 and up < PARENT_DEPTH and (up == 0 or len(body[p]) <= PARENT_SHORT):
            u.deps = u.deps + [p]
            p, up = parent[p], up + 1
        if i in raised:
            u.deps = u.deps + [raised[i]]
        if i in xml_children:  # an XML element brings its few empty child elements
            u.deps = u.deps + xml_children[i]
    for i, block in assertion_diffs(body).items():  # "- Expected" brings the diff under it
        units[i].deps = units[i].deps + block
        units[i].value += DIFF_VALUE
        for k in block:
            units[k].value += DIFF_VALUE * 0.5
    for i, j in requests_of(body, err).items():  # a failed response brings its request
        units[i].deps = units[i].deps + [j]
    for i, j in diagnostic_locations(body).items():  # rustc's "warning: ..." and its "--> at"
        units[i].deps = units[i].deps + [j]
        units[j].deps = units[j].deps + [i]
    for i, ids in field_blocks(body).items():  # a field brings whose field it is
        units[i].deps = units[i].deps + ids
    for i, h in table_headers(lines).items():  # a table's row brings its header line
        units[i].deps = units[i].deps + [h]
        units[h].outline = True
    record_blocks(units, group, size, rel)
    id_spans(body, units)
    values = [bool(_VALUES_RE.match(_TAG_RE.sub(" ", b))) for b in body]
    for i in range(1, n):  # a line of values only is what the line above it names
        if values[i] and not values[i - 1] and body[i - 1].strip():
            units[i - 1].deps = units[i - 1].deps + [i]
    before = None
    for u in units:  # structured logs: a record written after another leaves out what repeats
        u.record = record_fields(u.text)
        if u.record is not None and before is not None:
            # its size when written: after a gap its time stays (and it may be written whole)
            u.short = FOLDED + (folded(u.record, before, next_to=False) or u.text)
        before = u.record
    kinds: set[str] = set()
    for i in range(n):  # the first diagnostic of each code: its kind's example (not a repeat:
        # an id in a message repeated is no kind of its own)
        m = DIAG_CODE_RE.search(body[i]) if err[i] and not units[i].similar else None
        if m and m.group() not in kinds:
            kinds.add(m.group())
            units[i].value += KIND_VALUE
    rules = {i for i in range(n) if is_rule(body[i])}
    if rules:  # a rule is no line's context (Vitest's "⎯⎯⎯[1/1]⎯" over its summary)
        for u in units:
            if u.deps:
                u.deps = [d for d in u.deps if d not in rules]
        for i in rules:
            units[i].rule, units[i].filler = True, False
    return units


# a diagnostic's code: tsc's TS2307, rustc's E0255, Ruff's E501, ShellCheck's SC2086, mypy's
# [attr-defined] at the end of its line
DIAG_CODE_RE = re.compile(r"\b[A-Z]{1,4}\d{3,5}\b|\[[a-z]+(?:-[a-z]+)*\]\s*$")
# what the first error of each code gains: a compiler's or linter's list is read by its kinds
# (a tsc run's 239 errors, 60 of them one missing module in scripts; "what kinds of errors")
KIND_VALUE = 1.0
_RULE_STRIP = re.compile(r"[\s\d\[\]()/|+:%]")
# what a rule is drawn with: ASCII's dashes, equals, stars...; and dashes, box drawing, block
# elements and geometric shapes, which a tokenizer spends one to three tokens on each
COSTLY_RULE_CHARS = "\u2010-\u2015\u2022\u23af\u2500-\u259f\u25a0-\u25ff"
_RULE_CHAR = re.compile(f"[-=_*~#.{COSTLY_RULE_CHARS}]")


def is_rule(line: str) -> bool:
    """A rule: one character repeated, three times in a row at least (``=====``,
    ``+-----+----+``, ``⎯⎯⎯[2/13]⎯``: a counter, brackets, bars and crosses aside), drawn
    between the lines that say something (not ``10.0.0.1``: its dots are no run)."""
    t = _RULE_STRIP.sub("", line)
    return (len(t) >= 3 and t == t[0] * len(t) and bool(_RULE_CHAR.match(t))
            and t[0] * 3 in line)


# -- JSON records, one per line ----------------------------------------------------------------

# a field holding a time: an ISO 8601 timestamp, or seconds/milliseconds since the epoch under
# a key that says so
_TIME_VALUE_RE = re.compile(r'^"\d{4}-\d\d-\d\d[T ]\d\d:\d\d')
_TIME_KEY_RE = re.compile(r'^"@?(time|timestamp|ts|date|datetime)"$', re.I)
FOLDED = "  ↳ "  # a line written without what repeats the line above: a log line's timestamp
# prefix of the same form, a JSON record's fields equal to the record above's (:func:`folded`)


def record_fields(line: str) -> tuple[tuple[str, str, bool], ...] | None:
    """The top-level fields of a JSON object written on one line, each as its key, its text
    as written (``"Package":"gotest.tools/x"``) and whether it holds a time; None when the
    line is no such object (or has fewer than three fields)."""
    s = line.strip()
    if len(s) < 16 or s[0] != "{" or s[-1] != "}" or '":' not in s[:200]:
        return None
    try:
        if not isinstance(orjson.loads(s), dict):
            return None
    except orjson.JSONDecodeError:
        return None
    fields: list[tuple[str, str, bool] | None] = []
    depth, start = 0, 1
    for m in _STRUCTURE_RE.finditer(s):  # strings whole, so their commas and braces are text
        c = m.group()
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0 and m.end() != len(s):
                return None
        elif c == "," and depth == 1:
            fields.append(_field(s[start:m.start()]))
            start = m.end()
    if depth != 0:
        return None
    fields.append(_field(s[start:-1]))
    if len(fields) < 3 or any(f is None for f in fields):
        return None
    return tuple(fields)  # type: ignore[arg-type]


_STRUCTURE_RE = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],]')
_KEY_RE = re.compile(r'\s*("(?:[^"\\]|\\.)*")\s*:\s*')


def _field(text: str) -> tuple[str, str, bool] | None:
    m = _KEY_RE.match(text)
    if not m:
        return None
    value = text[m.end():].rstrip()
    time = bool(_TIME_VALUE_RE.match(value)) or (
        bool(_TIME_KEY_RE.match(m.group(1))) and value.replace(".", "", 1).isdigit())
    return m.group(1), text.strip(), time


def folded(record: tuple[tuple[str, str, bool], ...],
           above: tuple[tuple[str, str, bool], ...], next_to: bool = True) -> str | None:
    """``record`` written without what it repeats of the record written above it: the
    fields equal to that record's, and, ``next_to`` it (no lines left out between them), its
    time (a moment later; after a gap, the time says when). None when it lacks one of that
    record's fields (a reader would take it to have the one above's)."""
    keys = {k for k, _, _ in record}
    if any(k not in keys for k, _, _ in above):
        return None
    same = {text for _, text, _ in above}
    above_times = {k for k, _, t in above if t}
    kept = [text for k, text, t in record
            if text not in same and not (t and next_to and k in above_times)]
    return "{" + ",".join(kept) + "}"


TABLE_MIN_ROWS = 3  # rows following a header line that make it a table's
_COLUMN_RE = re.compile(r"\S+")
# the time of day a header line may begin with, as each of its rows does (sar, pidstat, iostat)
_TIME_FIRST_RE = re.compile(r"\s*\d{1,2}:\d{2}(?::\d{2})?(?:\s?[AP]M)?(?=\s)")


_RULE_RE = re.compile(r"^\s*+(?=[-=+|: ]*?[-=]{3})[-=+|: ]*+$")  # (read once, as above)


def table_headers(lines: list[str]) -> dict[int, int]:
    """The rows of tables in ``lines`` (``ps aux``, ``kubectl get pods``, ``df -h``, CSV), each
    mapped to its header line: a row kept without it is a line of numbers nobody can read.
    A header is a line without digits (but a time of day it begins with, as its rows do:
    ``sar``), of three or more columns set apart by two spaces
    somewhere, or by two or more commas or tabs, whose columns the next
    :data:`TABLE_MIN_ROWS` lines or more follow: 70 % of the header's words start or end where a
    field of the row does (left- and right-aligned columns), or, delimited, the row has as many
    commas or tabs. The table ends at the first line that does not follow."""
    out: dict[int, int] = {}
    n = len(lines)
    i = 0
    while i < n:
        h = lines[i]
        cols = [(m.start(), m.end()) for m in _COLUMN_RE.finditer(h)]
        inner = h.strip()
        delim = next((d for d in ("\t", ",") if inner.count(d) >= 2), "")
        # aligned columns are set apart by two spaces somewhere (a sentence's words are not)
        t = _TIME_FIRST_RE.match(h)
        header = ((delim or (3 <= len(cols) <= 40 and "  " in inner)) and len(h) <= 400
                  and not any(c.isdigit() for c in h[t.end() if t else 0:])
                  and not h.rstrip().endswith(":"))
        if not header:
            i += 1
            continue

        def follows(row: str) -> bool:
            if delim:
                return row.strip().count(delim) == inner.count(delim)
            if not row.strip():
                return False
            starts, ends = set(), set()
            for m in _COLUMN_RE.finditer(row):
                starts.add(m.start())
                ends.add(m.end())
            hit = sum(1 for a, b in cols if a in starts or b in ends)
            return hit >= max(3, 0.7 * len(cols))

        j = i + 1
        if j < n and _RULE_RE.match(lines[j]):  # a rule under the header ("-----  ----")
            j += 1
        first = j
        while j < n and follows(lines[j]):
            j += 1
        if j - first >= TABLE_MIN_ROWS:
            for k in range(first, j):
                out[k] = i
            i = j
        else:
            i += 1
    return out


TAIL_LINES = 8  # a log's last lines say how it ended
STEP_VALUE = 1.2  # a failed CI step's command line ("##[group]Run pytest ..."), as an error
RECORD_MIN = 0.3  # relevance of a line that opens the record the question names
RECORD_HEADS = 3  # at most this many lines of a template may: else the template is asked for
RECORD_MAX = 12  # lines after it, to the next line of its template: a record, not a section
RECORD_VALUE = 2.0  # times its relevance, each line of its record (as a matching line)
RECORD_REGULAR = 0.5  # of a template's lines at its usual distance from the next: records


# a UUID, or a hex id of 12-40 digits (with a letter and a digit: not a number, not a word)
_ID_TOKEN_RE = re.compile(r"\b[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\b|\b[0-9a-f]{12,40}\b")
SPAN_MAX = 40  # lines from a task's first line to its last (its id on both)
SPAN_SHARE = 0.5  # of the best value inside a span, its first and last lines'


def id_spans(body: list[str], units: Sequence[Unit]) -> None:
    """A task, job or request a log writes an id on when it begins and when it ends
    (Celery's ``Task x[e26dcb9d-...] received`` ... ``Task x[e26dcb9d-...] succeeded in
    6.19s``) spans the lines between: what happens there happens in it, so its first and last
    lines (which task, how long, what it returned) gain a share of the best value inside."""
    at: dict[str, list[int]] = {}
    for i, ln in enumerate(body):
        for m in _ID_TOKEN_RE.finditer(ln[:400]):
            t = m.group()
            if "-" in t or (not t.isdigit() and not t.isalpha()):
                at.setdefault(t, []).append(i)
    for seen in at.values():
        a, b = seen[0], seen[-1]
        if len(seen) > 6 or b - a < 2 or b - a > SPAN_MAX:
            continue
        best = max(units[k].value for k in range(a + 1, b))
        for k in (a, b):
            units[k].value = max(units[k].value, SPAN_SHARE * best)


def record_blocks(units: list[Unit], group: list[int], size: dict[int, int],
                  rel: Sequence[float]) -> None:
    """A program that writes a record of several lines per iteration opens each with a line of
    one template ("Time = 4930", GROMACS' "700  700.00000" under "Step  Time"): when the question
    names one or a few of them (they match it, the template's other lines do not), the lines
    of those records are what it asks about (the residuals of that time step, the energies of
    that step), to the template's next line, when that is near (``group``: each line's
    template, by its first line; ``size``: each template's lines)."""
    n = len(units)
    heads: dict[int, list[int]] = {}
    nxt = [n] * n  # the next line of each line's template
    last: dict[int, int] = {}
    for i, g in enumerate(group):
        if g < 0:
            continue
        if g in last:
            nxt[last[g]] = i
        last[g] = i
        if rel[i] >= RECORD_MIN:
            heads.setdefault(g, []).append(i)
    gaps: dict[int, list[int]] = {}
    for i, g in enumerate(group):
        if g >= 0 and size[g] >= 3 and nxt[i] < n:
            gaps.setdefault(g, []).append(nxt[i] - i)
    regular: dict[int, int] = {}  # a template whose lines open records: their usual length
    for g, between in gaps.items():
        # records: the template's lines come every few lines, most at the same distance (an
        # access log's lines of one form come at random among others: no record between)
        typical, times = collections.Counter(between).most_common(1)[0]
        if typical >= 2 and times >= max(3, RECORD_REGULAR * len(between)):
            regular[g] = typical
    for i, g in enumerate(group):
        if g in regular:
            end = nxt[i] if nxt[i] < n else min(n, i + regular[g])  # the last: as most
            if end - i - 1 <= RECORD_MAX and end - i <= 2 * regular[g]:
                units[i].record_end = end
    for g, opened in heads.items():
        if len(opened) > RECORD_HEADS:
            continue
        for i in opened:
            for k in range(i + 1, max(i + 1, units[i].record_end)):
                if units[k].text.strip():
                    units[k].value = max(units[k].value, RECORD_VALUE * rel[i])


STANDS_OUT = 0.8  # relevance (0..1) of a line standing out of its template (see log_units)
STANDS_OUT_MAX = 2  # lines of one template that may stand out of it
STANDS_OUT_BY = 0.4  # or by how much it answers better than all the others of its template
FLOOD_MIN = 30  # lines matching the query, of which FLOOD_SHARE repeat a template at least
FLOOD_SHARE = 0.95  # FLOOD_REPEATS times: a flood, where a line of a template of its own
FLOOD_REPEATS = 5  # stands out by LONE_VALUE, if at most LONE_MAX do
LONE_VALUE = 1.5
LONE_MAX = 3
LIST_MAX = 20  # matching lines of one template under different headers: a list, read whole
# a log line's timestamp prefix: bracketed stamps ("[task 2025-02-13T21:47:57.553Z]"), bare
# dates and times, with their separators; levels and messages are not part of it
PREFIX_RE = re.compile(r"^(\s*(\[[^\]]{0,48}\d[^\]]{0,48}\]|\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?"
                       r"([.,]\d+)?(Z|[+-]\d\d:?\d\d)?|\d\d:\d\d:\d\d([.,]\d+)?)[ \t]*)+")
_MINUTE_RE = re.compile(r"\d\d:\d\d")  # a time's hours and minutes
PARENT_DEPTH = 2  # enclosing lines an indented line brings, the nearest first; beyond the
PARENT_SHORT = 100  # nearest, only a line this short (a header, not a test suite's attributes)
PARENT_REACH = 30  # lines above where an indented line's enclosing line is looked for
_TOKEN_RE = re.compile(r"[^\s:=,;()\[\]{}<>\"']+")
SIMILAR_SHARE = 0.7  # of a line's tokens equal (position by position) to its group's first


_PACKAGE_RE = re.compile(r"^\s*at ([a-z]\w*\.[a-z]\w*)\.[^(\s]*\(")  # Java's, .NET's


def _package(line: str) -> str:
    """The package a Java-style frame (``at org.hibernate.impl.SessionImpl.get(...)``) is in,
    by its first two names (``org.hibernate``), or ""."""
    m = _PACKAGE_RE.match(line)
    return m.group(1) if m else ""


# `gh run view --log`: each line's job and step, tab-separated, before the runner's timestamp
GH_RUN_LOG_RE = re.compile(r"^[^\t]{1,200}\t[^\t]{0,300}\t(?=\d{4}-\d\d-\d\dT\d\d:\d\d)")


# a multiplexed output's source before each line: docker compose's service ("web-1  | ", a
# name, not a compiler's "143 |" gutter), a process's tag ("(EngineCore pid=2181) ", Ray's
# "(pid=4242, ip=10.0.0.3) ")
MUX_TAG_RES = (re.compile(r"[A-Za-z][\w.-]{0,63} *+\| "),
               re.compile(r"\([^()\n]{0,48}\bpid=\d++[^()\n]{0,48}\) "))
MUX_SHARE = 0.3  # of a log's non-blank lines (of its first MUX_LINES) so tagged: multiplexed
MUX_LINES = 2000
# of the tagged lines, those with the same tag as the tagged line before: a program writes
# several lines in a row (psql's expanded records, "created_at | 2024-05-01 14:30:34+00", and
# other "key | value" lists change their key every line: no tags)
MUX_RUNS = 0.3


def mux_tag(lines: Sequence[str]) -> re.Pattern[str] | None:
    """The tag a multiplexed output writes before its lines (:data:`MUX_TAG_RES`), when at
    least :data:`MUX_SHARE` of them have it, and :data:`MUX_RUNS` of those the tag of the
    tagged line before; else None. Below it, a line says what it says (a frame, a traceback,
    its indentation, its timestamp) as in one program's output."""
    written = [ln for ln in lines[:MUX_LINES] if ln.strip()]
    for r in MUX_TAG_RES:
        tags = [m.group() for ln in written if (m := r.match(ln))]
        if (written and len(tags) >= MUX_SHARE * len(written)
                and sum(a == b for a, b in zip(tags, tags[1:])) >= MUX_RUNS * (len(tags) - 1)):
            return r
    return None


# A line-number gutter: a file shown with its line numbers (`cat -n` and `nl`: "    12\t", an
# agent's file view: "    12→") or the lines a search found (`grep -n`, `rg -n`: "12:" for a
# match, "12-" for context; `grep -rn`, `rg`: the file first, "src/app.py:12:"). Below it is the
# file's own text: what it is (code, a log, JSON, ...) is read there, and the gutter is written
# back before each kept line (an agent edits by those numbers).
NUMBERS_RES = (re.compile(r"(?=[ \d]{6,}\t) {0,8}(\d{1,9})\t"),  # right-aligned, six wide
               re.compile(r" {0,8}(\d{1,9})→"),
               re.compile(r"(\d{1,9})[:-]"),
               # a match's "path:12:" (a column after it: "path:12:5:"), a context line's
               # "path-12-" (its path the longest that is followed by one: "2024-05-01-a.md")
               re.compile(r"((?:[A-Za-z]:)?[^\s:]{1,250}?):(\d{1,9}):(\d{1,6}:)?|"
                          r"((?:[A-Za-z]:)?[^\s:]{1,250})-(\d{1,9})-"))
NUMBERED_SHARE = 0.9  # of the lines with a text (a search's "--" and file headings aside)
NUMBERED_MIN = 5  # numbered lines
NUMBERED_LINES = 2000  # read to decide
# a linter's or a compiler's findings ("src/a.py:12: error: ...", "x.py:1:80: E501 ...", tsc's
# "a.ts:3:5 - error"): a log of findings, each after its place, not a file's lines; most of
# them name a column; a list's "201: Step 201" or `ip -o link`'s "2: eth0: <...>" write a
# blank after the colon (a file's lines have their own indentation, rarely one blank: a diff's)
FINDING_WORD_RE = re.compile(r"(?:\d+[:-])?\s*(?:(?:fatal )?error|warning|note|info|hint|"
                             r"[A-Z]{1,4}\d{2,5})\b")
COLUMN_RE = re.compile(r"\d{1,6}(?::| - )")
_ONE_BLANK_RE = re.compile(r" [^\s*]")  # (" * @param": a doc comment's line)
_NUMBERS_ONLY_RE = re.compile(r"\s*[.,:;/+-]*\d[\d.,:;/+-]*\s*$")  # kafka's "topic:3:590526"
_PATHISH = frozenset("./\\")
_CONTEXT_AT_RE = re.compile(r"-(\d{1,9})-")


@dataclass
class Numbered:
    """A text's line numbers (:data:`NUMBERS_RES`): ``body`` is the text without them (a
    search's ``--`` between its groups a blank line), ``prefixes`` each line's gutter (or its
    ``--``; "" where a line has none), ``paths`` the file each line is of (a search's results),
    "" where none is named; in a search's results, ``runs`` the run of consecutive lines of one
    file each line is in (a line brings no line of another run along; None in a file's view:
    one run) and ``headings`` the line naming the file of each line (`rg --heading`'s; -1)."""
    body: str
    prefixes: list[str]
    paths: list[str]
    runs: list[int] | None = None
    headings: list[int] | None = None


def _numbered_at(line: str, form: int, known: set[str]) -> tuple[int, str, int, bool] | None:
    """Where ``line``'s gutter of ``form`` (:data:`NUMBERS_RES`) ends, the file it names (a
    search's), its line number and whether a column follows it; None without one. A context
    line's file is one of the ``known`` files of the search's matches when one fits."""
    m = NUMBERS_RES[form].match(line[:300])
    if m is None:
        return None
    if form < 2:
        return m.end(), "", int(m.group(1)), False
    if form == 2:
        return m.end(), "", int(m.group(1)), bool(COLUMN_RE.match(line, m.end()))
    if m.group(1) is not None:
        return (m.end(), m.group(1), int(m.group(2)),
                m.group(3) is not None or bool(COLUMN_RE.match(line, m.end())))
    for c in _CONTEXT_AT_RE.finditer(line, 0, 300):  # "data.csv-12-2024-05-01,...": data.csv
        if line[:c.start()] in known:
            return c.end(), line[:c.start()], int(c.group(1)), False
    return m.end(), m.group(4), int(m.group(5)), False


def line_numbers(text: str) -> Numbered | None:
    """The line-number gutter before ``text``'s lines (:data:`NUMBERS_RES`), when at least
    :data:`NUMBERED_SHARE` of its lines with a text have one and the numbers go up (one by one
    in a file's view; within each file in a search's results); else None. Findings (most with
    a column, or a blank after the colon), a table's id column and numbers alone are none."""
    lines = text.splitlines()
    head = lines[:NUMBERED_LINES]
    for form in range(len(NUMBERS_RES)):
        known = {m.group(1) for ln in head if form == 3
                 and (m := NUMBERS_RES[3].match(ln[:300])) and m.group(1) is not None}
        found = [_numbered_at(ln, form, known) for ln in head]
        counted = numbered = up = pairs = odd = padded = 0
        last: tuple[str, int] | None = None
        for i, (ln, at) in enumerate(zip(head, found)):
            if not ln.strip() or ln == "--":  # a search's groups, in order within a file
                continue
            if at is None:
                # a file's heading above its results (rg's): after a blank line or first
                heading = form == 2 and (i == 0 or not head[i - 1].strip()) and (
                    i + 1 < len(found) and found[i + 1] is not None)
                counted += not heading
                last = None if heading else last
                continue
            cut, path, n, column = at
            counted += 1
            numbered += 1
            padded += ln[:1] == " "
            body = ln[cut:]
            # not a file's line: a finding (its column, its word), "N: text", numbers alone,
            # a "path" that names no file ("orders-v2:3:")
            odd += (form >= 2 and (column or bool(FINDING_WORD_RE.match(body))
                                   or (form == 2 and bool(_ONE_BLANK_RE.match(body)))
                                   or bool(_NUMBERS_ONLY_RE.match(body))
                                   or (form == 3 and not _PATHISH.intersection(path))))
            if last is not None and last[0] == path:
                pairs += 1
                up += n == last[1] + 1 if form < 2 else n > last[1]
            last = (path, n)
        runs = (numbered >= NUMBERED_MIN and numbered >= NUMBERED_SHARE * counted and pairs
                and up >= NUMBERED_SHARE * pairs)
        # a file of a line or a few, every one of them numbered from where the view starts
        whole = form < 2 and 0 < numbered == counted < NUMBERED_MIN and up == pairs
        if ((runs or whole) and odd <= (1 - NUMBERED_SHARE) * numbered
                and (form != 0 or padded)):  # cat -n pads; a table's id column does not
            return _numbered(lines, form, known)
    return None


def _numbered(lines: list[str], form: int, known: set[str]) -> Numbered:
    prefixes, paths, body, runs, headings = [], [], [], [], []
    last = None
    heading = -1
    for i, ln in enumerate(lines):
        at = _numbered_at(ln, form, known)
        cut = len(ln) if ln == "--" and form >= 2 else at[0] if at else 0
        prefixes.append(ln[:cut])
        body.append(ln[cut:])
        paths.append(at[1] if at else "")
        if at is None and form == 2 and ln.strip() and ln != "--":
            heading = i  # rg --heading's file (or a line of other output)
        elif not ln.strip():
            heading = -1
        headings.append(heading if at else -1)
        if at is None or last is None or at[1] != last[1] or at[2] != last[2] + 1:
            runs.append(len(runs))  # a new run (a line without a number: its own)
        else:
            runs.append(runs[-1])
        last = at
    search = form >= 2
    return Numbered("\n".join(body), prefixes, paths, runs if search else None,
                    headings if search and any(h >= 0 for h in headings) else None)


def write_numbers(units: Sequence[Unit], numbered: Numbered) -> None:
    """Each unit written after its line's gutter (:func:`line_numbers`), a unit of several lines
    (a CSV record; a piece of one, :func:`split_long`) each of them after its own; in a search's
    results, a unit brings along no line of another run (its enclosing block there is another
    place's line) but the heading naming its file."""
    prefixes, runs, headings = numbered.prefixes, numbered.runs, numbered.headings
    n = len(prefixes)
    first = {}  # line -> its (first) unit
    for k, u in enumerate(units):
        if u.part <= 0:
            first.setdefault(u.line, k)
    offset = 0  # lines of a split record before this piece
    for k, u in enumerate(units):
        if u.part <= 0:
            offset = 0
        start = u.line + offset
        if u.part >= 0:
            offset += u.text.count("\n")
        if not 0 <= start < n:
            continue
        if runs is not None and u.deps:
            u.deps = [d for d in u.deps if 0 <= d < len(units)
                      and runs[min(units[d].line, n - 1)] == runs[start]]
        if headings is not None and headings[start] >= 0 and headings[start] in first:
            u.deps = [*u.deps, first[headings[start]]]
        u.numbers = prefixes[start]
        if runs is not None and u.numbers == "--":  # a separator: written only between
            u.filler, u.value = False, 0.0          # two kept lines, for their gap
        if "\n" in u.text:
            first_line, *rest = u.text.split("\n")
            u.text = "\n".join([first_line, *(prefixes[start + 1 + i] + t if start + 1 + i < n
                                               else t for i, t in enumerate(rest))])


def stamp(line: str, tag: re.Pattern[str] | None = None) -> tuple[str, str, int]:
    """A line's prefix: the job and step `gh run view --log` writes, or a multiplexed
    output's ``tag`` (:func:`mux_tag`; or ""), its timestamp (:data:`PREFIX_RE`, blanks after
    it aside; "" when there is none) and where the line's own text starts (after the one space
    or tab following them: the indentation after that is the line's own)."""
    g = GH_RUN_LOG_RE.match(line) if "\t" in line[:201] else None
    if g is None and tag is not None:
        g = tag.match(line)
    job = g.group() if g else ""
    m = PREFIX_RE.match(line[len(job):])
    if not m:
        return job, "", len(job)
    time = m.group().rstrip(" \t")
    end = len(job) + len(time)
    return job, time, end + (line[end:end + 1] in (" ", "\t"))


def _unstamped(line: str, tag: re.Pattern[str] | None = None) -> str:
    """``line`` without its prefix (:func:`stamp`)."""
    return line[stamp(line, tag)[2]:]


def _masked(line: str) -> str:
    m = PREFIX_RE.match(line)
    return TEMPLATE_RE.sub("#", line[m.end():] if m else line)


# "which Maven version", "the version of numpy": the name a question asks the version of
_VERSION_OF_RE = re.compile(r"\b([A-Za-z][\w.+-]*)\s+versions?\b|\bversions?\s+of\s+"
                            r"(?:the\s+)?([A-Za-z][\w.+-]*)", re.I)
_NOT_NAMES = frozenset("""which what the its a an latest new minimum maximum fixed current
plugin package library tool same other exact""".split())
VERSION_VALUE = 0.6  # a line naming what the question asks the version of, with a version
VERSION_TOP = 3  # such lines lifted (the first)


# a question for a trace's frames: "its key frames", "the call chain", "the frame that raised
# it", "the stack trace", "the innermost managed frame", "backtrace"
# (not "stack" alone: a CloudFormation stack, a technology stack)
FRAMES_ASKED_RE = re.compile(r"\b(frames?|stack\s*traces?|backtraces?|tracebacks?|call\s*"
                             r"(?:chain|stack)s?)\b", re.I)
# what is no question for a trace's frames: a time frame, a video's frames, a frame rate, and
# a trace the question does not want ("I do not need the traceback")
NOT_FRAMES_RE = re.compile(
    r"\b(time\s*frames?|frames?\s*(?:rates?|per\s+second|drops?|dropped)|fps|video|animation|"
    r"dropped\s+frames?|(?:not?|without|skip|don't|never)\W+(?:\w+\W+){0,3}?(?:the\W+)?"
    r"(?:frames?|stack\s*traces?|backtraces?|tracebacks?|call\s*(?:chain|stack)s?))\b", re.I)
FRAME_ASKED = 2.0  # what the innermost frame of each trace gains; the next less (FRAME_DECAY)
FRAME_DECAY = 5.0
FRAME_TOP = 3  # frames of each trace that gain, from the innermost


def asked_frames(units: Sequence[Unit], query: str) -> None:
    """A question for a trace's frames ("what was the crashed thread doing: its key frames")
    is answered by the frames from the innermost out: the :data:`FRAME_TOP` innermost of each
    trace (:attr:`Unit.frame`) gain :data:`FRAME_ASKED`, less the further out (a repeat of a
    template a quarter of it: the same trace again). Not more: every frame of every trace
    crowded out the exceptions, test names and summaries a reader needs with them."""
    if not FRAMES_ASKED_RE.search(query) or NOT_FRAMES_RE.search(query):
        return
    for u in units:
        if 0 <= u.frame < FRAME_TOP:
            u.value += FRAME_ASKED / (1 + u.frame / FRAME_DECAY) * (0.25 if u.similar else 1.0)


def version_lines(units: Sequence[Unit], query: str) -> None:
    """A question for the version of something ("which Maven version ran") is answered by a
    line that writes the name with a version after it (``Apache Maven 2.2.1 (r801777; ...)``,
    ``ruby 3.0.4p208``, ``Nextflow 23.10.1``): the first :data:`VERSION_TOP` such lines gain
    :data:`VERSION_VALUE`."""
    names = {n for m in _VERSION_OF_RE.finditer(query) for n in m.groups()
             if n and n.lower() not in _NOT_NAMES}
    if not names:
        return
    pat = re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, sorted(names))) +
                     r")(?![\w-])[\s:/=-]{0,3}\(?v?\d+\.\d+", re.I)
    found = 0
    for u in units:
        if pat.search(u.text[:400]):
            u.value += VERSION_VALUE
            found += 1
            if found == VERSION_TOP:
                return


def templates(lines: list[str], err: Sequence[bool] | None = None) -> list[int]:
    """Per line, the index of the first line of its template group (-1: blank), in the manner
    of the Drain log parser (He et al., ICWS 2017): lines with the same number of tokens whose
    tokens agree in at least :data:`SIMILAR_SHARE` of the positions, once numbers, hex ids and
    quoted strings are masked, repeat one template (``undefined symbol: A`` and ``undefined
    symbol: B``; heartbeats with other counters). A line that reports an error (``err``) does
    not repeat one that does not: ``Failed password for root from # port #`` and ``Accepted
    password for root from # port #`` differ in one word, the one that matters."""
    out = [-1] * len(lines)
    groups: dict[tuple, list[tuple[int, list[str]]]] = {}
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        toks = _TOKEN_RE.findall(TEMPLATE_RE.sub("#", ln))
        status = http_status(ln)  # requests that failed do not repeat the ones that did not
        key = (len(toks), toks[0] if toks else "", status // 100, bool(err and err[i]))
        cands = groups.setdefault(key, [])
        for first, rep in cands:
            same = sum(a == b for a, b in zip(rep, toks))
            if toks and same >= SIMILAR_SHARE * len(toks):
                out[i] = first
                break
        else:
            out[i] = i
            if len(cands) < 8:
                cands.append((i, toks))
    return out


# -- source code ------------------------------------------------------------------------------

SIGNATURE_RE = re.compile(r"^\s*((async\s+)?def|class|func|fn|pub(\([^)]*\))?\s+(async\s+)?fn|"
                          r"impl|interface|struct|enum|trait|type\s+\w+\s+(struct|interface)|"
                          r"(public|private|protected|static|export|abstract|final|override)\b.*"
                          r"[({]\s*$|function\b|fun\b|"
                          r"export\s+(default\s+)?(function|class|const))\b|"
                          # JavaScript's functions given to a name (res.send = function send(...)
                          # {, const f = async (a) => {)
                          r"^\s*((const|let|var)\s+)?[\w.$]+\s*=\s*(async\s+)?"
                          r"(function\b|(\([^)]*\)|[\w$]+)\s*=>\s*\{?\s*$)")
OPENER_RE = re.compile(r"^\s*(if|elif|else|for|while|try|except|catch|finally|with|switch|case|"
                       r"match|when|loop|select|default)\b|[:{]\s*$")
# a line that raises: raise, throw, an assertion (``assert!`` panics), panic, Go's error return
RAISE_RE = re.compile(r"^\s*(raise|throw|assert|debug_assert)\b|\bpanic!?\(|"
                      r"\breturn\s+(nil, )?(err|Err|fmt\.Errorf)")
BODY_LINES = 6  # an opener's immediate body brought along
# a name given a literal (``const EVENT_INTERVAL: u32 = 61;``, ``max_blocking_threads: 512,``,
# ``var status = 302;``): where code says what a setting is by default
LITERAL_RE = re.compile(r"""[\w\]\)]\s*(?::\s*[\w:<>&\[\] ]+?\s*)?(?<![=!<>])(=|:)(?!=)\s*"""
                        r"""(-?\d[\w.]*|"[^"]*"|'[^']*'|true|false|True|False|None|null|nil)"""
                        r"""\s*[,;]?\s*(//.*|#.*)?$""")
# a named constant given any value (``CONNECTION_TIMEOUT = SECONDS.toMillis(30);``,
# ``DEFAULT_REDIRECT_LIMIT = 30``): counts as a literal does
CONSTANT_RE = re.compile(r"\b[A-Z][A-Z0-9]*(_[A-Z0-9]+)+\s*(:\s*[\w:<>&\[\] ]+?\s*)?=(?!=)"
                         r"|\b[A-Z]{3,}[A-Z0-9]*\s*(:\s*[\w:<>&\[\] ]+?\s*)?=(?!=)")
LITERAL_VALUE = 2.0  # times the line's relevance, added


def _indent(ln: str) -> int:
    return len(ln) - len(ln.lstrip(" \t")) if ln.strip() else -1


def indent_parents(ind: list[int], reach: int | None = None) -> list[int]:
    """Per line (``ind``: its indentation, -1 for a blank line), the nearest line above it with
    less indentation (its enclosing header: a def, an object's opening brace, a test case), or
    -1: none, a blank line, or (with ``reach``) further up than ``reach`` lines."""
    parent = [-1] * len(ind)
    stack: list[int] = []  # lines of strictly increasing indentation, the nearest last
    for i, d in enumerate(ind):
        if d < 0:
            continue
        while stack and ind[stack[-1]] >= d:
            stack.pop()
        if stack and (reach is None or i - stack[-1] < reach):
            parent[i] = stack[-1]
        stack.append(i)
    return parent


# -- a directory's tree (`tree`) ---------------------------------------------------------------

# `tree`'s drawing before each entry: GNU tree's "├── " and "└── " under "│   " (its blanks
# no-break spaces in a UTF-8 locale) or four blanks per level; `tree --charset ascii`'s "|-- ",
# "`-- " and "|   "
TREE_RE = re.compile(r"((?:[│|][ \xa0]{3}|[ \xa0]{4})*+)(?:[├└]── |[|`]-- )")
TREE_SHARE = 0.9  # of the lines with a text after the first (the root) drawn so
TREE_COUNT_RE = re.compile(r"\d+ director(?:y|ies)(?:, \d+ files?)?$")  # its last line
TREE_LINES = 2000  # read to decide (detection runs on every text: a long log's are not all read)


def _tree_drawn(lines: Sequence[str]) -> list[re.Match[str] | None] | None:
    """Each line's drawing (:data:`TREE_RE`), when :data:`TREE_SHARE` of the lines with a text
    after the first, of the first :data:`TREE_LINES`, are entries (five or more); else None."""
    head = lines[:TREE_LINES]
    drawn = [TREE_RE.match(ln) for ln in head]
    written = [i for i, ln in enumerate(head) if ln.strip()]
    entries = sum(drawn[i] is not None for i in written)
    others = sum(drawn[i] is None and not TREE_COUNT_RE.match(head[i]) for i in written[1:])
    if entries < 5 or entries < TREE_SHARE * (entries + others):
        return None
    return drawn + [TREE_RE.match(ln) for ln in lines[TREE_LINES:]]


def tree_depths(lines: Sequence[str], drawn: Sequence[re.Match[str] | None] | None = None
                ) -> list[int] | None:
    """Each line's depth in `tree`'s drawing (``drawn``, or :func:`_tree_drawn`'s: None when
    the text is no tree). A line without the drawing is a root (0) when it is the first, the
    closing count, or a line opening entries of the first level; any other (an error tree
    wrote, a note) is under no directory and over none (-1, as a blank line)."""
    if drawn is None and (drawn := _tree_drawn(lines)) is None:
        return None
    written = [i for i, ln in enumerate(lines) if ln.strip()]
    depth = [len(m.group(1)) // 4 + 1 if m else -1 for m in drawn]
    for k, i in enumerate(written):
        if drawn[i] is None and (k == 0 or TREE_COUNT_RE.match(lines[i]) or (
                k + 1 < len(written) and depth[written[k + 1]] == 1)):
            depth[i] = 0
    return depth


TREE_NAME_CHARS = 200  # of each directory's name, TREE_SCORED_CHARS of them, score an entry
TREE_SCORED_CHARS = 2000
TREE_ERROR_VALUE = 1.2  # added to a line tree wrote about an error ("[error opening dir]")
TREE_NOTE_RE = re.compile(r"\s\[error\b[^\]]*\]\s*$")  # tree's note after an entry


def tree_units(lines: list[str], query: str, relevance
               ) -> tuple[list[Unit], list[float], list[int]]:
    """A directory's tree: each entry scored with the names of the directories it is in
    (``test_sshkey.c`` under ``regress/unittests/sshkey/``; the first :data:`TREE_NAME_CHARS`
    characters of each, up to :data:`TREE_SCORED_CHARS`) and kept with all of them, as a path
    is read; the top two levels are its outline; an error tree wrote (a line of its own, an
    entry's ``[error opening dir]``; not an entry named ``ValidationException.java``) is
    protected as in a log.
    ``relevance``: texts and query -> scores. Returns the units, their relevance and each
    line's depth (for the outline, breadth first)."""
    drawn = _tree_drawn(lines)
    if drawn is None:  # (detection said tree: a text read as one anyway, each line a root)
        drawn = [None] * len(lines)
        depth = [0 if ln.strip() else -1 for ln in lines]
    else:
        depth = tree_depths(lines, drawn)
    parent = indent_parents(depth)
    names = [(ln[m.end():] if m else ln)[:TREE_NAME_CHARS] for ln, m in zip(lines, drawn)]
    chains: list[list[int]] = []
    for i in range(len(lines)):
        chain, p = [], parent[i]
        while p >= 0 and len(chain) < 32:
            chain.append(p)
            p = parent[p]
        chains.append(chain)
    scored = []
    for i in range(len(lines)):
        text = lines[i][:TREE_SCORED_CHARS]
        for p in chains[i]:
            if len(text) >= TREE_SCORED_CHARS:
                break
            text += " " + names[p]
        scored.append(text)
    rel = relevance(scored, query)
    units = line_units(lines)
    for i, u in enumerate(units):
        u.deps = chains[i]
        u.value = 2.0 * rel[i]
        entry = depth[i] > 0 and drawn[i] is not None
        if rel[i] >= 0 and (TREE_NOTE_RE.search(lines[i]) if entry else is_error(lines[i])):
            u.value += TREE_ERROR_VALUE
            u.critical = True
        u.outline = 0 <= depth[i] <= 2
        u.filler = depth[i] >= 0  # a blank line says nothing between two gaps
    return units, rel, depth


def _allman(lines: list[str], ind: list[int], i: int) -> bool:
    """Line ``i`` is a brace on a line of its own (Allman style: C#, Java, C) opening the
    header above it (not an item of a list: "}," then "{")."""
    return (i > 0 and lines[i].strip() == "{" and ind[i - 1] == ind[i]
            and not lines[i - 1].rstrip().endswith((",", ";", "{", "}", "[", "]")))


def code_parents(lines: list[str], ind: list[int]) -> list[int]:
    """:func:`indent_parents` for code: a brace on a line of its own belongs to the header
    above it, so what is indented under the brace is under that header."""
    parent = indent_parents(ind)
    for i in range(1, len(lines)):
        if _allman(lines, ind, i):
            parent[i] = i - 1
    return parent


def in_context(lines: list[str], json: bool = False) -> list[str]:
    """Each line with the signature of the function (or class) it is in, for scoring:
    ``return strings.EqualFold(s, t)`` is how ``commandNameMatches`` matches names; with
    ``json``, each field with the line that opens its object (``"status": {``)."""
    ind = [_indent(ln) for ln in lines]
    parent = indent_parents(ind) if json else code_parents(lines, ind)
    sig = [bool(ind[i] >= 0 and (json or SIGNATURE_RE.match(ln))) for i, ln in enumerate(lines)]
    owner = [-1] * len(lines)
    for i in range(len(lines)):
        p = parent[i]
        if p >= 0:
            owner[i] = p if sig[p] else owner[p]
    return [ln if owner[i] < 0 or (sig[i] and not json) else ln + "\n" + lines[owner[i]]
            for i, ln in enumerate(lines)]


def code_units(lines: list[str], rel: list[float], query: str = "") -> list[Unit]:
    units = line_units(lines)
    n = len(lines)
    ind = [_indent(ln) for ln in lines]
    parent = code_parents(lines, ind)  # the enclosing header of each line
    opener = _bracket_openers(lines, ind)
    described = _described(lines, ind)
    for i, u in enumerate(units):
        ln = u.text
        if ind[i] < 0:
            u.filler = True
            continue
        # the enclosing chain (decorators stay with their def: the chain is the def line); a
        # header that closes a bracket (") -> Response:") brings the line that opened it
        p, chain = parent[i], []
        while p >= 0 and len(chain) < 8:
            chain.append(p)
            if p in opener:
                chain.append(opener[p])
            p = parent[p]
        u.deps = chain
        sig = bool(SIGNATURE_RE.match(ln))
        if OPENER_RE.search(ln) and not sig:  # a branch brings its first lines
            body = []
            j = i + 1
            while j < n and len(body) < BODY_LINES and (ind[j] < 0 or ind[j] > ind[i]):
                if ind[j] >= 0:
                    body.append(j)
                j += 1
            u.deps = chain + body
        if described.get(i, -1) >= 0:  # a comment brings what it describes
            u.deps = u.deps + [described[i]]
        r = rel[i]
        u.value = (2.0 * r + (0.3 * r if sig else 0.0)
                   + (0.3 if RAISE_RE.search(ln) and r > 0 else 0.0))
        if r > 0 and (LITERAL_RE.search(ln) or CONSTANT_RE.search(ln)) and not sig:
            # a name given a value: what it is
            u.value += LITERAL_VALUE * r
        u.critical = r > 0 and sig
        u.outline = sig
    if query:  # a function that matches as a whole: its lines count, in order (whole blocks)
        for block, b in _blocks(lines, ind, query):
            for i in block:
                if ind[i] >= 0:  # not its blank lines: kept alone, each costs a marker more
                    units[i].value += BLOCK_WEIGHT * b
    damp_repeats(units)
    return units


COMMENT_RE = re.compile(r"(//|#(?![!\[])|/?\*|--|;|<!--)")
# a statement, not a docstring's or comment's sentence (a message written in three places,
# raise ValueError("..."), says three things: where it is raised)
STATEMENT_RE = re.compile(r"(return|raise|throw|yield|assert|await)\b|"
                          r"[\w.$]+\s*(\(|[-+*/]?=[^=])")
REPEAT_SHARE = 0.2  # of its value a line keeps when the same line, better placed, says it too
ATTRIBUTE_RE = re.compile(r"^\s*(#\[|@\w)")  # Rust's #[...], decorators and annotations
COMMENT_REACH = 3  # lines of a comment that say what the code line after them is


def _described(lines: list[str], ind: list[int]) -> dict[int, int]:
    """Each line of a short comment (:data:`COMMENT_REACH` lines or fewer, on lines of
    their own) mapped to the code line it is written above (attributes and decorators
    passed over): ``// Default thread name`` says what ``thread_name: ...`` is, and is little
    without it."""
    out: dict[int, int] = {}
    n = len(lines)
    i = 0
    while i < n:
        if ind[i] < 0 or not COMMENT_RE.match(lines[i].lstrip()):
            i += 1
            continue
        j = i
        while j < n and ind[j] >= 0 and COMMENT_RE.match(lines[j].lstrip()):
            j += 1
        k = j
        while k < n and ind[k] >= 0 and ATTRIBUTE_RE.match(lines[k]):
            k += 1
        if j - i <= COMMENT_REACH and j < n and k < n and ind[k] >= 0:
            for c in range(i, j):
                out[c] = k
        i = j
    return out



def damp_repeats(units: Sequence[Unit], keys: Sequence[str | None] | None = None) -> None:
    """What is repeated word for word tells a reader something once: each repeat but the most
    valuable keeps a :data:`REPEAT_SHARE` of its value. ``keys``: per unit, the text compared
    (None: not counted); by default a comment line's (``/// # use tokio::runtime;`` in every
    doc example), not statements: ``method = "GET"`` under three different conditions says
    three things."""
    if keys is None:  # (and a docstring's sentences: ":param partial: Whether to ignore
        # missing fields ..." in each of four functions taking it)
        keys = [t if len(t) >= 4 and (COMMENT_RE.match(t) or (_wordy(t)
                                                              and not STATEMENT_RE.match(t)))
                else None for t in (u.text.strip() for u in units)]
    best: dict[str, int] = {}
    for k, u in enumerate(units):
        key = keys[k]
        if key is None:
            continue
        b = best.get(key)
        if b is None:
            best[key] = k
        elif u.value > units[b].value:
            units[b].value *= REPEAT_SHARE
            best[key] = k
        else:
            u.value *= REPEAT_SHARE


_CLOSING_HEADER_RE = re.compile(r"^\s*[)\]}].*[:{]\s*$")
OPENER_REACH = 60  # lines above a closing header where its opening line is looked for


def _bracket_openers(lines: list[str], ind: list[int]) -> dict[int, int]:
    """Headers written over several lines: the line closing the bracket (``) -> Response:``,
    ``) {``) mapped to the line that opened it at the same indentation (``def request(``)."""
    out: dict[int, int] = {}
    for i, ln in enumerate(lines):
        if ind[i] >= 0 and _CLOSING_HEADER_RE.match(ln):
            for j in range(i - 1, max(-1, i - OPENER_REACH), -1):
                if ind[j] == ind[i]:
                    if lines[j].rstrip().endswith(("(", "[", "{")):
                        out[i] = j
                    break
    return out


BLOCK_WEIGHT = 0.8  # of a block's (function's, section's) relevance given to each of its lines


def _block_end(lines: list[str], ind: list[int], i: int) -> int:
    """The line after the block that line ``i`` heads (the lines indented under it and a
    closing bracket at its level)."""
    j = i + 1
    while j < len(lines) and (ind[j] < 0 or ind[j] > ind[i] or lines[j].strip() in ("}", ");")):
        j += 1
    return j


def _blocks(lines: list[str], ind: list[int], query: str) -> list[tuple[list[int], float]]:
    """The innermost signature blocks (a def, the lines indented under it and the comment
    right above it) with their BM25 relevance to ``query`` as wholes, those at
    :data:`RECORD_MATCH` or more."""
    from agentflux.runtime.relevance import scores
    n = len(lines)
    spans = []
    for i in range(n):
        if ind[i] >= 0 and SIGNATURE_RE.match(lines[i]):
            j = _block_end(lines, ind, i)
            if j < n and ((ind[j] == ind[i] and lines[i].rstrip().endswith(("(", "[", "{"))
                           and _CLOSING_HEADER_RE.match(lines[j])) or _allman(lines, ind, j)):
                # a header over several lines (") -> None:"), a brace on a line of its own
                j = _block_end(lines, ind, j)
            spans.append(range(i, j))
    if not spans:
        return []
    # a block's comment (its doc comment, attributes, decorators: the lines right above its
    # signature) is part of it
    heads = []
    for r in spans:
        a = r.start
        while a > 0 and ind[a - 1] >= 0 and (COMMENT_RE.match(lines[a - 1].lstrip())
                                             or ATTRIBUTE_RE.match(lines[a - 1])):
            a -= 1
        heads.append(a)
    spans = [range(a, r.stop) for a, r in zip(heads, spans)]
    # innermost: a line takes the last (deepest) span that holds it; a span holding another
    # (a class, an impl) is scored by its members, not as a whole
    owner = [-1] * n
    container = [False] * len(spans)
    for k, r in enumerate(spans):
        for i in r:
            if owner[i] >= 0:
                container[owner[i]] = True
            owner[i] = k
    leaves = [k for k in range(len(spans)) if not container[k]]
    rel = [0.0] * len(spans)
    for k, v in zip(leaves, scores(["\n".join(lines[spans[k].start:spans[k].stop])
                                    for k in leaves], query)):
        rel[k] = v
    out: dict[int, list[int]] = {}
    for i, k in enumerate(owner):
        if k >= 0 and rel[k] >= RECORD_MATCH:
            out.setdefault(k, []).append(i)
    return [(v, rel[k]) for k, v in out.items()]


# -- pretty-printed JSON (and fragments of it) --------------------------------------------------

JSON_LINE_RE = re.compile(r'^\s*("(?:[^"\\]|\\.)*"\s*:|[\]\[{}](,)?\s*$|"(?:[^"\\]|\\.)*",?\s*$|'
                          r'-?\d[\d.eE+-]*,?\s*$|(true|false|null),?\s*$)')
JSON_KEY_RE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)"\s*:')
# a YAML mapping's key (a list item's first key too: "- name: web"), quoted or not
YAML_KEY_RE = re.compile(r"""^\s*(?:-\s+)?["']?([\w.$@/]""" + _YAML_KEY_REST
                         + r""")\s*+["']?\s*:(?:\s|$)""")
YAML_DOC_RE = re.compile(r"^---(\s|$)")
# fields that say which object a field belongs to, in the order one-line JSON prefers them
# (agentflux.runtime.compress_json); pretty-printed lines also take a request's method and a
# Stripe-style "object"
ID_KEYS_ORDER = ("id", "uid", "uuid", "name", "key", "number", "title", "slug", "login", "sha",
                 "ref", "kind", "type", "state", "status", "phase", "code", "path", "url")
ID_KEYS = frozenset(ID_KEYS_ORDER) | {"method", "object"}
MAX_ID_SIBLINGS = 4
# the field of an error object that says what went wrong, beside its code or exception name
MESSAGE_KEYS = frozenset({"message", "msg", "detail", "details", "description", "reason",
                          "error_description", "errormessage", "error_message"})
ID_REACH = 3  # objects up where a field of an object without identifying fields finds some
# a finding's location is a file and a line, often written apart (Semgrep's "path" and its
# "start": {"line": 12}; SARIF's "artifactLocation": {"uri"} and "region": {"startLine"}; a
# crash report frame's "sourceFile" and "sourceLine"): the file brings the line, and a
# finding's message its file (json_line_units, compress_json)
FILE_KEYS = frozenset({"path", "file", "filename", "file_name", "filepath", "file_path", "uri",
                       "sourcefile", "source_file", "sourcepath", "source_path"})
LINE_KEYS = frozenset({"line", "startline", "start_line", "lineno", "line_no", "line_number",
                       "linenumber", "sourceline", "source_line", "beginline", "begin_line"})
RECORD_MATCH = 0.3  # an object's best field relevance (0..1) that makes its other fields count
COMMON_KEY = 3  # objects that have a key for it to be a field of every record (type, line)
KEY_ONLY = 0.25  # of a line's relevance from its key alone, in a record the query does not pick


_MOST = re.compile(r"\b(largest|most|highest|biggest|maximum|max|top|greatest|slowest|longest|"
                   r"heaviest)\b", re.I)
_LEAST = re.compile(r"\b(smallest|least|lowest|fewest|minimum|min|fastest|shortest|lightest)\b",
                    re.I)
_NUMBER_FIELD_RE = re.compile(r'^\s*(?:"((?:[^"\\]|\\.)*)"|(?:-\s+)?([\w.$@/][\w.$@/-]*))\s*:\s*'
                              r'(-?\d+(?:\.\d+)?)\s*,?\s*$')  # JSON's "key": 1, YAML's key: 1
EXTREME_VALUE = 1.5  # the largest value of a field the query asks the largest of; then /2, /3
EXTREME_TOP = 3


def _asks_for(query: str, more: re.Pattern, less: re.Pattern) -> bool | None:
    """True when ``query`` asks for the largest (``more``'s words), False for the smallest,
    None for neither or both."""
    most, least = bool(more.search(query)), bool(less.search(query))
    return None if most == least else most


def _lift(values: list[tuple[float, int]], units: Sequence[Unit], most: bool,
          value: float) -> None:
    """The :data:`EXTREME_TOP` units with the largest (smallest) of ``values`` ((value, unit
    index) pairs) gain ``value``, the second half of it, the third a third."""
    values.sort(reverse=most)
    for rank, (_, k) in enumerate(values[:EXTREME_TOP]):
        units[k].value += value / (1 + rank)
        # a line that opens a record of a log (a slow query's "# Query_time: 0.6") brings the
        # rest of its record (the statement): what was the slowest is said there
        for j in range(k + 1, max(k + 1, units[k].record_end)):
            if units[j].text.strip():
                units[j].value = max(units[j].value, value / (1 + rank))


def extremes(units: Sequence[Unit], rel: Sequence[float], query: str) -> None:
    """A question for the largest (or smallest) of something ("which pod uses the most CPU")
    is answered by comparing values, not words: among the numeric fields that match the query
    (``"usageNanoCores": 501884788`` under ``"cpu"``), per field name, the
    :data:`EXTREME_TOP` largest (smallest) values gain value."""
    most = _asks_for(query, _MOST, _LEAST)
    if most is None:
        return
    fields: dict[str, list[tuple[float, int]]] = {}
    for k, u in enumerate(units):
        if k < len(rel) and rel[k] > 0 and u.part < 0:
            m = _NUMBER_FIELD_RE.match(u.text)
            if m:
                fields.setdefault(m.group(1) or m.group(2), []).append((float(m.group(3)), k))
    for values in fields.values():
        if len(values) >= 2:
            _lift(values, units, most, EXTREME_VALUE)


_AMOUNT_RE = re.compile(r"^(\d+(?:\.\d+)?)(%|[KMGTP]i?B?|[kMGT]B|m)?$")
_AMOUNT_SCALE = {"": 1.0, "%": 1.0, "m": 1e-3}  # kubectl's millicores; K, Ki, KB: below
for _i, _p in enumerate("KMGTP", 1):
    _AMOUNT_SCALE.update({_p: 1e3 ** _i, _p + "B": 1e3 ** _i, _p + "i": 1024.0 ** _i,
                          _p + "iB": 1024.0 ** _i, _p.lower() + "B": 1e3 ** _i})


def _amount(field: str) -> float | None:
    """A table cell's number with its unit (``250m``, ``1.5Gi``, ``12%``), else None."""
    m = _AMOUNT_RE.match(field)
    return float(m.group(1)) * _AMOUNT_SCALE[m.group(2) or ""] if m else None


def table_extremes(lines: list[str], units: Sequence[Unit], query: str) -> None:
    """A question for the largest (or smallest) of a table's column (``ps aux``'s ``RSS``,
    ``kubectl get pods``' ``RESTARTS``, ``df``'s ``Avail``), named by the query, is answered
    by comparing the column's values (their units read: ``250m``, ``1.5Gi``): the
    :data:`EXTREME_TOP` rows with the largest (smallest) gain value, as :func:`extremes`
    does for JSON's fields."""
    most = _asks_for(query, _MOST, _LEAST)
    if most is None:
        return
    from agentflux.runtime.relevance import terms
    asked = set(terms(query))
    for cells in table_columns(lines, lambda name: bool(asked.intersection(terms(name)))):
        values = [(v, r) for cell, r in cells if (v := _amount(cell)) is not None]
        if len(values) >= 2:
            _lift(values, units, most, EXTREME_VALUE)


def table_columns(lines: list[str], named: Callable[[str], bool]
                  ) -> Iterator[list[tuple[str, int]]]:
    """The columns of the tables in ``lines`` whose header ``named`` accepts, each as its
    cells with their rows (the row's field under the column, left or right aligned)."""
    rows: dict[int, list[int]] = {}
    for row, header in table_headers(lines).items():
        rows.setdefault(header, []).append(row)
    for header, members in rows.items():
        for col in _COLUMN_RE.finditer(lines[header]):
            if named(col.group()):
                yield [(next((m.group() for m in _COLUMN_RE.finditer(lines[r])
                              if m.start() < col.end() and m.end() > col.start()), ""), r)
                       for r in members]


THRESHOLD_ROWS = 20  # rows of a table lifted by a threshold at most (else it picks little)


def table_thresholds(lines: list[str], units: Sequence[Unit], query: str) -> None:
    """A question for the rows past a threshold ("which modules are below 50% coverage",
    "pods with more than 5 restarts") is answered by comparing the values of the column it
    names (``Cover``, ``RESTARTS``; a percentage by a column of percentages): the rows that
    pass gain value, as :func:`table_extremes`' largest do, when they are few."""
    m = _THRESHOLD_RE.search(query)  # (csv_units' too)
    if not m:
        return
    how, limit = m.group(1).lower(), float(m.group(2))
    below = how in ("less than", "under", "below", "fewer than", "at most")
    percent = query[m.end():m.end() + 2].lstrip().startswith("%")
    from agentflux.runtime.relevance import terms
    asked = [a for a in terms(query) if len(a) >= 3]

    def named(name: str) -> bool:  # "Cover" for "coverage": a column's short name too
        return any(a.startswith(t) or t.startswith(a) for t in terms(name) if len(t) >= 3
                   for a in asked)
    for cells in table_columns(lines, named):
        passed = [r for cell, r in cells if (v := _amount(cell)) is not None
                  and cell.endswith("%") == percent
                  and ((v < limit or (how == "at most" and v == limit)) if below else
                       (v > limit or (how == "at least" and v == limit)))]
        if 0 < len(passed) <= THRESHOLD_ROWS:
            for r in passed:
                units[r].value += EXTREME_VALUE


_DURATION_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?) ?(ns|us|µs|ms|s|sec|secs|seconds|min|"
                          r"minutes|h)(?![\w/])")
_DURATION_SCALE = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0,
                   "secs": 1.0, "seconds": 1.0, "min": 60.0, "minutes": 60.0, "h": 3600.0}
DURATION_VALUE = 3.0  # the slowest line's lift (then /2, /3): above a log's last lines
_SLOWEST = re.compile(r"\b(slowest|longest|took the longest|most time|how long)\b", re.I)
_FASTEST = re.compile(r"\b(fastest|quickest|shortest|least time)\b", re.I)


def duration_extremes(lines: list[str], units: Sequence[Unit], query: str) -> None:
    """A question for the slowest (fastest) of something in a log ("which statement was the
    slowest", "how long did the steps take": postgres' ``duration: 470.688 ms``, a test's
    ``(0.51s)``, BuildKit's ``#26 DONE 56.8s``) compares the
    durations lines report, their units read: the :data:`EXTREME_TOP` lines with the longest
    (shortest) gain value, more than a log's last lines (the question is about them)."""
    slow = _asks_for(query, _SLOWEST, _FASTEST)
    if slow is None:
        return
    timed = []
    for k, ln in enumerate(lines):
        found = [float(m.group(1)) * _DURATION_SCALE[m.group(2)]
                 for m in _DURATION_RE.finditer(ln[:400])]
        if found:
            timed.append((max(found) if slow else min(found), k))
    if len(timed) >= 3:
        _lift(timed, units, slow, DURATION_VALUE)


# "Query_time: 0.039063", "rows=1200": a key's number (not a time's "12:05:03" or a path's);
# of a range, its end ("actual time=130.693..135231.371": EXPLAIN ANALYZE's last row's time)
_KEYED_NUMBER_RE = re.compile(r"(?<![\w.-])([A-Za-z][\w.-]*)\"?\s?[:=]\s*(-?\d+(?:\.\d+)?)"
                              r"(?:\.\.(\d+(?:\.\d+)?))?(?![\w.:/-])")
# a count and the words after it that say what it counts, to a punctuation mark: "1182 are
# dead but not yet removable", "3 failed"
_COUNTED_RE = re.compile(r"(?<![\w.:/-])(\d+)\s+([A-Za-z][a-z-]{2,}(?:\s+[A-Za-z][a-z-]*){0,4})")


KEYED_REACH = 4000  # characters of a line where its keys are read (a structured log's record)


def keyed_extremes(lines: list[str], units: Sequence[Unit], query: str) -> None:
    """A question for the largest (smallest, slowest) of a value a log's lines name
    (``# Query_time: 0.039063  Lock_time: 0.000000``, ``rows=1200``, or the words after a
    count: ``1182 are dead but not yet removable``) compares that key's values: of the keys
    that share the most words with the question (``Query_time``, not ``Lock_time``, for "what
    was its Query_time"), the :data:`EXTREME_TOP` lines with the largest (smallest) value gain
    value, as :func:`extremes` does for JSON's fields."""
    most = _asks_for(query, _MOST, _LEAST)
    if most is None:
        return
    from agentflux.runtime.relevance import terms
    asked = set(terms(query))
    keys: dict[str, list[tuple[float, int]]] = {}
    words: dict[str, int] = {}
    for k, ln in enumerate(lines):
        # key: number, key=number, and a number counting what the word after it says
        # ("1182 are dead but not yet removable", "3 failed")
        found = [(m.group(1), m.group(3) or m.group(2))
                 for m in _KEYED_NUMBER_RE.finditer(ln[:KEYED_REACH])] if (
            ":" in ln or "=" in ln) else []
        found += [(m.group(2), m.group(1)) for m in _COUNTED_RE.finditer(ln[:400])]
        for key, number in found:
            if key not in words:
                words[key] = len(asked.intersection(terms(key)))
            if words[key]:
                keys.setdefault(key, []).append((float(number), k))
    best = max((words[key] for key, v in keys.items() if len(v) >= 3), default=0)
    for key, values in keys.items():
        if words[key] == best and len(values) >= 3 and len({v for v, _ in values}) > 1:
            _lift(values, units, most, EXTREME_VALUE)


_SEVEREST = re.compile(r"\b(most (severe|serious|critical|dangerous)|severest|"
                       r"highest[- ](severity|risk))\b", re.I)
# a finding's severity as security scanners write it (npm audit, Trivy, Grype, Bandit, Snyk):
# a word of its own, capitalised ("Critical", "HIGH") or the value of a severity key
_LEVELS = {"critical": 5, "high": 4, "moderate": 3, "medium": 3, "low": 2,
           "info": 1, "informational": 1, "negligible": 1}
_SEVERITY_RE = re.compile(r"(?<![\w-])(Critical|CRITICAL|High|HIGH|Moderate|MODERATE|Medium|"
                          r"MEDIUM|Low|LOW|Info|INFO|Informational|Negligible)(?![\w-])"
                          r"|\bseverity\W{1,4}(critical|high|moderate|medium|low|info)\b",
                          re.I)
SEVERITY_REACH = 16  # lines after a finding's severity that may be its record


def severity_extremes(lines: list[str], units: Sequence[Unit], query: str) -> None:
    """A question for the most severe finding ("what is the most severe vulnerability") is
    answered by comparing severities, not words: the lines that write the highest severity
    found (npm audit's ``Critical`` row) gain value, as :func:`extremes`' largest do, with the
    lines after each up to the next severity (the finding's package, path, advisory)."""
    if not _SEVEREST.search(query):
        return
    rated = []
    for k, ln in enumerate(lines):
        m = _SEVERITY_RE.search(ln[:400])
        if m and (m.group(2) or not m.group(1).islower()):
            rated.append((_LEVELS[(m.group(2) or m.group(1)).lower()], k))
    if len(rated) < 3 or len({v for v, _ in rated}) < 2:
        return
    top = max(v for v, _ in rated)
    at = [k for v, k in rated]
    for n, (v, k) in enumerate(rated):
        if v != top:
            continue
        units[k].value += EXTREME_VALUE
        end = min(at[n + 1] if n + 1 < len(at) else len(lines), k + SEVERITY_REACH)
        for j in range(max(0, k - 2), end):  # its record: the line that names it, what follows
            if j != k and units[j].text.strip():
                units[j].value = max(units[j].value, EXTREME_VALUE / 2)


_FIRST = re.compile(r"\b(first|earliest|initial|initially)\b", re.I)
_LAST = re.compile(r"\b(last|latest|final|finally|most recent)\b", re.I)
POSITION_MATCH = 0.4  # of the question's best relevance: the lines that answer it, in order
POSITION_VALUE = 1.5  # the first (last) of them; then /2, /3


def position_extremes(units: Sequence[Unit], query: str,
                      score: Callable[[str], list[float]]) -> None:
    """A question for the first (last) of something ("which server first delivered an
    executable to 172.16.9.233") lifts the earliest (latest) of the lines that answer it
    (``score``: a text's relevance per line; the position's words are left out of the
    question): lines that answer it alike differ by when they were written. The whole question
    is scored, not the clause with the word: "first delivered a Windows executable
    (application/x-dosexec)" is split from its brackets by the clauses."""
    first = _asks_for(query, _FIRST, _LAST)
    if first is None:
        return
    r = score(_LAST.sub(" ", _FIRST.sub(" ", query)))
    answers = [k for k in range(len(units)) if r[k] >= POSITION_MATCH]
    if len(answers) >= 2:
        _lift([(float(k), k) for k in answers], units, not first, POSITION_VALUE)


def jsonish(lines: list[str]) -> bool:
    """Most lines look like pretty-printed JSON (keys, brackets, values)."""
    body = [ln for ln in lines if ln.strip()]
    step = max(1, len(body) // 2000)
    sample = body[::step]
    return bool(sample) and sum(bool(JSON_LINE_RE.match(ln)) for ln in sample) >= 0.8 * len(sample)


def _by_values(lines: list[str], rel: list[float], key_re: re.Pattern, parent: list[int],
               kids: dict[int, list[int]], score: Callable[[list[str]], list[float]]
               ) -> list[float] | None:
    """Per line, its relevance with the keys most records of its array have left out
    (``score``: the query's relevance of texts), when the query picks records of an array of
    objects by their values (``"type": "warning"`` of a linter's findings); None when it does
    not. A query's word that names such a key (type, line, symbol) says which fields of the
    records it picks to show, not which records: matched on every record's key it would pick
    them all."""
    records: dict[int, list[int]] = {}  # an array: its objects
    for i, ln in enumerate(lines):
        a = parent[i]
        if ln.strip() == "{" and a >= 0 and lines[a].rstrip().endswith("["):
            records.setdefault(a, []).append(i)
    common: list[int] = []  # fields of keys most records of their array have
    starts: dict[int, int] = {}  # a field's line: where its value starts
    for objs in records.values():
        if len(objs) < COMMON_KEY:
            continue
        fields: dict[str, list[int]] = {}
        for o in objs:
            for k in kids.get(o, ()):
                if m := key_re.match(lines[k]):
                    fields.setdefault(m.group(1).lower(), []).append(k)
                    starts[k] = m.end()
        for ks in fields.values():
            if len(ks) >= max(COMMON_KEY, len(objs) / 2):
                common.extend(ks)
    return picked_by_values(rel, common, [lines[i][starts[i]:] for i in common], score)


def picked_by_values(rel: list[float], common: list[int], values: list[str],
                     score: Callable[[list[str]], list[float]]) -> list[float] | None:
    """``rel`` with the units ``common`` (fields of keys most records have) scored on their
    ``values`` alone (``score``: the query's relevance of texts), or None when no value
    matches the query (:data:`RECORD_MATCH`): then the keys are what it asks for."""
    if not common:
        return None
    scored = score(values)
    if max(scored, default=0.0) < RECORD_MATCH:
        return None
    out = list(rel)
    for i, v in zip(common, scored):
        out[i] = min(rel[i], v)
    return out


def json_line_units(lines: list[str], rel: list[float], yaml: bool = False,
                    score: Callable[[list[str]], list[float]] | None = None) -> list[Unit]:
    """Pretty-printed JSON kept as its own lines (a digest with the omissions marked; the
    facts read as the input wrote them): a kept line brings the lines that open the objects and
    arrays around it and the identifying fields of its object (``id``, ``name``, ``status``,
    ...), and a line reporting an error its object's message (``"Code":
    "ValidationException"`` and what was invalid); the fields of an object with a matching
    field come before other objects' fields; identifying fields fill what is left (which
    objects there are). With ``yaml``, YAML's mappings the same way (unquoted keys, a key
    ending its line opens a mapping); a document of a stream (after ``---``) is known by its
    top-level identifying fields and its ``metadata``'s (a Kubernetes object's kind and name).
    With ``score`` (the query's relevance of texts), JSON's array of records the query picks by
    their values (:func:`_by_values`) has them picked so: a match on a key every record has
    counts in full only in the records picked (:data:`KEY_ONLY` of it elsewhere)."""
    units = code_units(lines, rel)
    n = len(lines)
    ind = [_indent(ln) for ln in lines]
    parent = indent_parents(ind)
    key_re = YAML_KEY_RE if yaml else JSON_KEY_RE
    opens = (":", "{", "[", "|", ">", "|-", ">-") if yaml else ("{", "[")
    if yaml:  # a document's top-level lines are under its "---"
        doc = -1
        for i, ln in enumerate(lines):
            if YAML_DOC_RE.match(ln):
                doc = i
            elif ind[i] == 0 and doc >= 0:
                parent[i] = doc
    children: dict[int, list[int]] = {}
    for i in range(n):
        if ind[i] >= 0:
            children.setdefault(parent[i], []).append(i)
    valued = _by_values(lines, rel, key_re, parent, children, score) if score else None
    pick = rel if valued is None else valued  # what picks the records
    id_lines: dict[int, list[int]] = {}
    best: dict[int, float] = {}
    message: dict[int, int] = {}  # an object's message field
    # each line's key (lowercase, "" for none) and whether it opens an object or an array,
    # read once for the identifying fields, the messages and the locations below
    names = [m.group(1).lower() if (m := key_re.match(ln)) else "" for ln in lines]
    opened = [ln.rstrip().endswith(opens) for ln in lines]
    for p, kids in children.items():
        id_lines[p] = [k for k in kids if names[k] in ID_KEYS and not opened[k]][:MAX_ID_SIBLINGS]
        best[p] = max(pick[k] for k in kids)
        said = [k for k in kids if names[k] in MESSAGE_KEYS and not opened[k]]
        if said:
            message[p] = said[0]
    if yaml:  # a Kubernetes object: its kind and its metadata's name
        for p, named in yaml_names(lines).items():
            id_lines[p] = list(dict.fromkeys(id_lines.get(p, []) + named))[:MAX_ID_SIBLINGS]
    for i, u in enumerate(units):
        if ind[i] < 0:
            continue
        p = parent[i]
        mine = [k for k in id_lines.get(p, []) if k != i]
        up, q = 0, p  # an object without identifying fields ("memory": {...}) is known by
        while not mine and q >= 0 and up < ID_REACH:  # the nearest object around it that has
            q, up = parent[q], up + 1
            mine = id_lines.get(q, [])
        # an object in an array of a record ("labels": [{"name": "bug"}] of an issue) is known
        # by that record too: which issue is labelled so
        a = parent[p] if p >= 0 else -1
        rec = parent[a] if a >= 0 and lines[a].rstrip().endswith("[") else -1
        if rec >= 0 and parent[rec] >= 0 and lines[parent[rec]].rstrip().endswith("["):
            mine = mine + id_lines.get(rec, [])  # (itself one of an array's records)
        u.deps = list(dict.fromkeys(u.deps + mine))
        r = rel[i]
        b = best.get(p, 0.0)
        if valued is not None and b < RECORD_MATCH:  # a record the query does not pick
            r = valued[i] + (r - valued[i]) * KEY_ONLY
        u.value = 2.0 * r + (0.6 * b * (1.0 if r == 0 else 0.5) if b >= RECORD_MATCH else 0.0)
        status = http_status(lines[i])
        if status >= 300 or ERROR_WORD_RE.search(lines[i]) or EXC_NAME_RE.search(lines[i]):
            u.value += 1.0 if status >= 400 or not status else 0.7
            if message.get(p, i) != i:
                u.deps = u.deps + [message[p]]  # an error's code brings what it says
        u.critical = r > 0.5
        u.outline = i in id_lines.get(p, ())
        u.filler = u.outline
    bring_locations(units, message_locations(lines, parent, children, names, opened))
    bring_locations(units, location_pairs(lines, parent, children, names, opened))
    return units


LOCATION_DEPTH = 4  # objects down from a finding to its location's file (SARIF's result:
# "locations": [{"physicalLocation": {"artifactLocation": {"uri"}}}])


def message_locations(lines: list[str], parent: list[int], children: dict[int, list[int]],
                      names: list[str], opened: list[bool]) -> dict[int, int]:
    """Each message of a finding (a :data:`MESSAGE_KEYS` field, or the ``text`` of a
    ``message`` object as SARIF writes it) mapped to its finding's file (:data:`FILE_KEYS`):
    the nearest in the finding's object, :data:`LOCATION_DEPTH` objects down at most, through
    the first element of an array (its first location) only. ``names``: each line's key
    (lowercase, "" for none); ``opened``: whether it opens an object or an array."""
    def key(k: int) -> str:
        return names[k]

    def opening(k: int) -> bool:
        return opened[k]

    def below(o: int) -> list[int]:
        """The fields of object line ``o`` (an array's: its first element's)."""
        t = lines[o].rstrip()
        kids = children.get(o, [])
        if t.endswith("[") and kids:  # the first element only
            first = kids[0]
            return children.get(first, []) if lines[first].strip() in ("{", "-") else [first]
        return [k for k in kids if not lines[k].lstrip().startswith("}")]  # "}, {": another

    found: dict[int, int] = {}
    out: dict[int, int] = {}
    for i in range(len(lines)):
        name = key(i)
        if opening(i) or not name:
            continue
        o = parent[i]
        if name in ("text", "markdown") and o >= 0 and key(o) in MESSAGE_KEYS:
            o = parent[o]
        elif name not in MESSAGE_KEYS:
            continue
        elif lines[i].lstrip().startswith("- "):  # YAML's "- message: ...": the item's line
            o = i
        if o < 0:
            continue
        if o not in found and lines[o].lstrip().startswith("- ") and key(o) in FILE_KEYS:
            found[o] = o  # YAML's "- path: a.py" opens the item its message is in
        if o not in found:
            found[o] = -1
            level = below(o)
            for _ in range(LOCATION_DEPTH + 1):
                hit = [k for k in level if not opening(k) and key(k) in FILE_KEYS]
                if hit:
                    found[o] = hit[0]
                    break
                level = [c for k in level if opening(k) for c in below(k)]
        if found[o] >= 0:
            out[i] = found[o]
    return out


def bring_locations(units: Sequence[Unit], pairs: dict[int, int]) -> None:
    """A unit in ``pairs`` (a file's field: its line number's unit; a finding's message: its
    file's), or bringing one along (an identifying ``path``; an object's opening line its
    message), brings its pair too: the pair's line alone, not the objects around it (a few
    tokens where the object's lines would cost a dozen)."""
    if not pairs:
        return
    for i, u in enumerate(units):
        for f in [i] + [d for d in u.deps if d in pairs]:
            k = pairs.get(f, -1)
            if k >= 0 and k != i:
                u.deps = list(dict.fromkeys(u.deps + [k]))


def nearest(hits: list[int], i: int) -> int:
    """Of ``hits`` (indexes in order, one at least), the one nearest ``i``."""
    at = bisect.bisect_left(hits, i)
    return min(hits[max(0, at - 1):at + 1], key=lambda k: abs(k - i))


def location_pairs(lines: list[str], parent: list[int], children: dict[int, list[int]],
                   names: list[str], opened: list[bool]) -> dict[int, int]:
    """Each line of a file's field (:data:`FILE_KEYS`) mapped to the line of its location's
    line number (:data:`LINE_KEYS`): found in the file's object, in an object of it, or in
    an object beside it (one object up, not past an array's element), nearest first; arrays
    are not looked into (a file's list of findings is not its location). ``names`` and
    ``opened`` as for :func:`message_locations`."""
    def key(k: int) -> str:
        return "" if opened[k] else names[k]

    def element(k: int) -> bool:  # an array's element opens here: {  }, {  [ {
        t = lines[k].rstrip()
        return t.endswith("{") and (t.lstrip().startswith(("{", "}", "-")) or t.endswith("[ {")
                                    or t.endswith("[{"))

    # per object: the line numbers' lines in it, and in its objects (not its arrays), in order
    # (read once per object: an object of thousands of fields is read once, not per field)
    found: dict[int, tuple[list[int], list[int]]] = {}

    def numbers(a: int) -> tuple[list[int], list[int]]:
        if a not in found:
            kids = children.get(a, [])
            # (not an object with a file of its own: another finding, beside this one)
            inner = [c for k in kids if opened[k] and not lines[k].rstrip().endswith("[")
                     and not any(key(f) in FILE_KEYS for f in children.get(k, []))
                     for c in children.get(k, [])]
            found[a] = ([k for k in kids if key(k) in LINE_KEYS],
                        sorted(c for c in inner if key(c) in LINE_KEYS))
        return found[a]

    def find(i: int) -> int:
        if lines[i].lstrip().startswith("- "):  # YAML's "- path: a.py": the item's own line
            return nearest(numbers(i)[0], i) if numbers(i)[0] else -1
        o = parent[i]
        if o < 0:  # a YAML document's top level is no finding's object
            return -1
        for a in [o] if element(o) or parent[o] < 0 else [o, parent[o]]:
            for hits in numbers(a):
                if hits:
                    return nearest(hits, i)
        return -1

    pairs: dict[int, int] = {}
    for i in range(len(lines)):
        if key(i) in FILE_KEYS:
            k = find(i)
            if k >= 0:
                pairs[i] = k
    return pairs


# -- prose and documentation ------------------------------------------------------------------

RST_ENTITY_LEVEL = 99
FIELD_RE = re.compile(r"^\s+:[\w -]+:(\s|$)")
MD_FIELD_RE = re.compile(r"^\s*([-*]\s+)?\*\*[^*\n]{1,40}(:\*\*|\*\*:)\s*\S")  # **Default:** 2
MAX_FIELDS = 4  # of an entity's field list that come with its heading
ANCHOR_VALUE = 1.0  # added to each line of a section whose heading names a query's identifier
SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[`*_])")
FENCE_RE = re.compile(r"^\s*(```|~~~)")
LONG_LINE = 240  # characters: longer prose lines are split into sentences
SMALL_BLOCK = 30  # lines: a fenced block this small is kept whole or not at all
EXAMPLE_VALUE = 0.05  # what a small fenced example is worth with no match at all


# a list item's marker (a long item split into sentences may leave it alone: "1.")
LIST_ITEM_RE = re.compile(r"^\s*([-*+\u2022]|\d{1,2}[.)]|[a-z][.)]|\(\w{1,3}\))(\s+\S|\s*$)")
LIST_UNITS = 8  # of a list (its items' lines and sentences) that its introduction brings


def list_items(units: Sequence[Unit], skip: set[int] | frozenset[int] = frozenset()
               ) -> dict[int, list[int]]:
    """Each unit ending with a colon (``... in the following locations (in this order):``)
    mapped to the list items right under it (blank lines passed over, an item's indented
    continuation and the other sentences of a long item included), :data:`LIST_UNITS` at most,
    when a list follows. Units in ``skip`` (headings, fenced code) neither introduce a list nor
    are items."""
    out: dict[int, list[int]] = {}
    for k, u in enumerate(units):
        if k in skip or not u.text.rstrip().endswith(":") or LIST_ITEM_RE.match(u.text):
            continue
        its: list[int] = []
        j = k + 1
        base = -1
        while j < len(units) and len(its) < LIST_UNITS and j not in skip:
            t = units[j].text
            if not t.strip():
                j += 1
                continue
            if its and units[j].part > 0 and units[j].line == units[its[-1]].line:
                its.append(j)  # the next sentence of a long item
                j += 1
                continue
            ind = len(t) - len(t.lstrip())
            if LIST_ITEM_RE.match(t) and (base < 0 or ind == base):
                base = ind
            elif not its and ind > (intro := len(u.text) - len(u.text.lstrip())):
                base = intro  # an indented block under it (reST's "::" literal block)
            elif not (its and ind > base):
                break
            its.append(j)
            j += 1
        if its:
            out[k] = its
    return out


def prose_units(lines: list[str], rel_of, anchors: frozenset[str] | set[str] = frozenset()
                ) -> list[Unit]:
    """``rel_of(texts)`` scores the units' texts (they are known only after splitting); its
    first call is on the returned units' texts, in order (the caller may keep that result).
    ``anchors``: identifiers the query names (:func:`agentflux.runtime.relevance.identifiers`);
    a section whose heading names one is what the query points at, and its lines count more
    (:data:`ANCHOR_VALUE`)."""
    units: list[Unit] = []
    heading_of: list[int] = []  # per unit: the unit index of its section's heading, -1 none
    heading_chain: dict[int, list[int]] = {}
    levels: list[tuple[int, int]] = []  # (level, unit index) of the open headings
    underline_levels: dict[str, int] = {}
    fence_open = -1
    fence_units: list[int] = []
    fenced: set[int] = set()  # the fences and the lines between them
    i, n = 0, len(lines)
    while i < n:
        ln = lines[i]
        level = 0
        if fence_open < 0 and HEADING_MD_RE.match(ln):
            level = len(ln.strip()) - len(ln.strip().lstrip("#"))
            span = 1
        elif fence_open < 0 and RST_ENTITY_RE.match(ln):
            level = RST_ENTITY_LEVEL  # under every titled section
            span = 1
        elif (fence_open < 0 and i + 1 < n and ln.strip() and UNDERLINE_RE.match(lines[i + 1])
              and len(lines[i + 1].strip()) >= min(len(ln.strip()), 3)
              and not UNDERLINE_RE.match(ln)):
            ch = lines[i + 1].strip()[0]
            level = underline_levels.setdefault(ch, 1 + len(underline_levels))
            span = 2
        if level:
            k = len(units)
            units.append(Unit(i, i + span, "\n".join(lines[i:i + span])))
            while levels and levels[-1][0] >= level:
                levels.pop()
            heading_chain[k] = [h for _, h in levels]
            levels.append((level, k))
            heading_of.append(-1)
            i += span
            continue
        if FENCE_RE.match(ln):
            k = len(units)
            units.append(Unit(i, i + 1, ln, critical=False))
            fenced.add(k)
            heading_of.append(levels[-1][1] if levels else -1)
            if fence_open < 0:
                fence_open, fence_units = k, []
            else:
                whole = len(fence_units) <= SMALL_BLOCK
                for f in fence_units:  # a fenced line brings both fences (a small block: all)
                    units[f].deps += [fence_open, k] + (fence_units if whole else [])
                if whole and fence_units:  # an example is worth keeping when there is room
                    units[fence_units[0]].base = EXAMPLE_VALUE
                fence_open = -1
            i += 1
            continue
        if fence_open < 0 and len(ln) > LONG_LINE:
            parts = SENTENCE_RE.split(ln)
            for p, sentence in enumerate(parts):
                units.append(Unit(i, i + 1, sentence, part=p if len(parts) > 1 else -1))
                heading_of.append(levels[-1][1] if levels else -1)
        else:
            k = len(units)
            units.append(Unit(i, i + 1, ln))
            heading_of.append(levels[-1][1] if levels else -1)
            if fence_open >= 0:
                fence_units.append(k)
                fenced.add(k)
        i += 1
    # a line is read under its heading: scored with the heading's words ("**Default:** `2048`"
    # under "### `backlog`" answers "the default listen backlog"), as BM25F scores a field
    rel = rel_of([u.text if heading_of[k] < 0 else u.text + "\n" + units[heading_of[k]].text
                  for k, u in enumerate(units)])
    # an entity's field list (":type:", ":default:" right under ".. confval:: name") is part of
    # its heading: whatever brings the heading brings what the entity is by default
    fields: dict[int, list[int]] = {}
    for h in heading_chain:
        if RST_ENTITY_RE.match(units[h].text):
            k = h + 1
            while k < len(units) and k - h <= MAX_FIELDS and FIELD_RE.match(units[k].text):
                fields.setdefault(h, []).append(k)
                k += 1
        else:  # Markdown's: "**Default:** `2048`" lines right under a setting's heading
            k = h + 1
            while k < len(units) and len(fields.get(h, ())) < MAX_FIELDS:
                if MD_FIELD_RE.match(units[k].text):
                    fields.setdefault(h, []).append(k)
                elif units[k].text.strip():
                    break
                k += 1
    # a sentence ending with a colon brings the short list it introduces (the files "in this
    # order" are the list under it)
    items = list_items(units, fenced | set(heading_chain))
    item_of = {j: k for k, its in items.items() for j in its}
    # a section that matches as a whole (its heading and text): its sentences count too
    sections: dict[int, list[int]] = {}
    for k, h in enumerate(heading_of):
        if h >= 0:
            sections.setdefault(h, []).append(k)
    heads = sorted(sections)
    srel = rel_of(["\n".join([units[h].text] + [units[k].text for k in sections[h]])
                   for h in heads]) if heads else []
    section_rel = {h: r for h, r in zip(heads, srel)}
    anchored = set()
    if anchors:
        from agentflux.runtime.relevance import terms
        anchored = {h for h in heads if anchors.intersection(terms(units[h].text))}
    for k, u in enumerate(units):
        if not u.text.strip():
            continue
        h = heading_of[k] if k < len(heading_of) else -1
        b = section_rel.get(h, 0.0)
        if b >= RECORD_MATCH:
            u.value += BLOCK_WEIGHT * b
        if h in anchored:
            u.value += ANCHOR_VALUE
        r = rel[k]
        if k in heading_chain:
            u.deps = list(heading_chain[k]) + fields.get(k, [])
            u.value = 2.0 * r
            u.outline = True
            continue
        h = heading_of[k]
        if h >= 0:
            u.deps = u.deps + [h] + heading_chain.get(h, []) + fields.get(h, [])
        u.value += u.base + 2.0 * r + (0.1 if r > 0 and re.search(r"\d|`", u.text) else 0.0)
        if k in item_of:  # a list item is read under the sentence introducing it
            u.deps = u.deps + [item_of[k]]
            u.value += BLOCK_WEIGHT * 2.0 * rel[item_of[k]]
    return units


# -- lines too long to keep or drop whole ---------------------------------------------------

LONG_CHARS = 1200  # a unit longer than this (some 300 tokens) is split into pieces
PIECE_CHARS = 160  # some 40 tokens a piece
_BREAK = re.compile(r"[\s;,>)\]}]+")


def pieces(text: str, size: int = PIECE_CHARS) -> list[str]:
    """``text`` in pieces of about ``size`` characters, each ending after a space or a
    delimiter (``;`` ``,`` ``>`` closing brackets) in its second half when there is one; the
    pieces joined are ``text``."""
    out: list[str] = []
    i, n = 0, len(text)
    while n - i > size * 3 // 2:
        j = i + size
        cut = j
        for m in _BREAK.finditer(text, i + size // 2, j):
            cut = m.end()
        out.append(text[i:cut])
        i = cut
    out.append(text[i:])
    return out


def split_long(units: list[Unit], rel: list[float], query: str,
               score) -> tuple[list[Unit], list[float]]:
    """Units longer than :data:`LONG_CHARS` (a minified script, an HTML page or a JSON payload
    on one line, a log line carrying a dump) as pieces of one line: a piece is kept or dropped
    on its own (those of one line kept are written together, a gap inside the line as
    ``[...]``), valued by the query's relevance to it (``score``: texts and query -> -1..1)
    within what its line was worth, and brings the line's first piece along (what the line is:
    a log line's time, level and logger). Kept whole, such a line cost more than most budgets,
    and was dropped whole."""
    if not any(len(u.text) > LONG_CHARS and u.part < 0 for u in units):
        return units, rel
    first: list[int] = []  # old index -> new index of its (first) unit
    out: list[Unit] = []
    out_rel: list[float] = []
    split: list[tuple[int, int]] = []  # (new index of a piece, new index of its line's first)
    for k, u in enumerate(units):
        first.append(len(out))
        r_line = rel[k] if k < len(rel) else 0.0
        if len(u.text) <= LONG_CHARS or u.part >= 0:
            out.append(u)
            out_rel.append(r_line)
            continue
        texts = pieces(u.text)
        r = [max(0.0, x) for x in score(texts, query)]
        lift = max(0.0, u.value - u.base)  # what the line's relevance added to it
        total = sum(r)
        err = [is_error(t) for t in texts] if u.critical else [False] * len(texts)
        if u.critical and not any(err):
            err[0] = True
        for p, t in enumerate(texts):
            out.append(Unit(u.line, u.end, t, value=u.base + lift * r[p] if lift else u.value,
                            deps=list(u.deps), critical=err[p], part=p, similar=u.similar,
                            filler=u.filler, fold=u.fold if p == 0 else 0,
                            fold_key=u.fold_key if p == 0 else "", base=u.base,
                            outline=u.outline and p == 0, glue=""))
            out_rel.append(r_line * r[p] / total if total else r_line / len(texts))
            if p:
                split.append((len(out) - 1, first[k]))
    for u in out:
        u.deps = [first[d] for d in u.deps if 0 <= d < len(first)]
        if u.record_end >= 0:  # (an index of a unit too)
            u.record_end = first[u.record_end] if u.record_end < len(first) else len(out)
    for k, head in split:
        out[k].deps.append(head)
    return out, out_rel


__all__ = ["Unit", "code_units", "detect", "is_error", "line_units", "log_units", "pieces",
           "prose_units", "split_long"]


# -- unified diffs -------------------------------------------------------------------------------

HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
DIFF_HEADER_RE = re.compile(r"^(diff --git |diff -|Index: |--- |\+\+\+ |index [0-9a-f]+\.\.|"
                            r"(new|deleted) file mode |similarity index |rename (from|to) |"
                            r"old mode |new mode |Binary files )")
CHANGE_VALUE = 0.4  # a changed line's own worth (what a diff says), beside its relevance
CONTEXT_SHARE = 0.5  # of its relevance a context line is worth
SIGNATURE_CHANGE = 0.6  # a changed line that defines a class, a function: added to its worth


def diff_lines(lines: list[str]) -> tuple[list[str], list[int], list[int]]:
    """Per line of a unified diff: what it is (``+``/``-``/`` `` in a hunk, ``@`` a hunk
    header, ``f`` a file header, ``t`` text around the diffs: a commit message, a diffstat),
    the line of its file's header (``+++ b/path``, else ``diff --git``; -1) and of its hunk's
    header (-1). A hunk's lines are counted from its header (``@@ -120,7 +120,9 @@``), so a
    removed line that reads ``--- x`` is no file header."""
    n = len(lines)
    what, file_of, hunk_of = ["t"] * n, [-1] * n, [-1] * n
    old = new = 0
    file = hunk = -1
    for i, ln in enumerate(lines):
        if old > 0 or new > 0:
            c = ln[:1]
            if c == "\\":  # "\ No newline at end of file"
                what[i] = " "
            elif c == "-":
                what[i], old = "-", old - 1
            elif c == "+":
                what[i], new = "+", new - 1
            else:  # context (a blank line is one whose space was trimmed)
                what[i], old, new = " ", old - 1, new - 1
            file_of[i], hunk_of[i] = file, hunk
            continue
        if ln.startswith("\\") and i and what[i - 1] in "+- ":  # after a hunk's last line
            what[i], file_of[i], hunk_of[i] = " ", file, hunk
            continue
        m = HUNK_RE.match(ln)
        if m:
            old = int(m.group(2)) if m.group(2) is not None else 1
            new = int(m.group(4)) if m.group(4) is not None else 1
            hunk = i
            what[i], file_of[i], hunk_of[i] = "@", file, i
        elif DIFF_HEADER_RE.match(ln):
            what[i] = "f"
            if ln.startswith(("diff ", "Index: ", "+++ ")):  # a file's first header, its path
                file = i
            file_of[i], hunk = file, -1
        elif ln.startswith("From ") or ln.startswith("commit "):
            file = hunk = -1  # another commit of a patch series, a log
    return what, file_of, hunk_of


def yaml_context(lines: list[str]) -> list[str]:
    """Each line of YAML with the line opening its mapping (:func:`in_context`) and its
    document's names (:func:`yaml_names`: a Kubernetes object's kind and name), for scoring:
    "the cilium-operator Deployment's image" finds the ``image:`` line of that object, not of
    every other."""
    scored = in_context(lines, json=True)
    # and the keys of the mappings further up: a workflow's step under "asan:" is the asan
    # job's ("which RUSTFLAGS does the asan job use")
    ind = [_indent(ln) for ln in lines]
    parent = indent_parents(ind)
    keys = [m.group(1) if (m := YAML_KEY_RE.match(ln)) else "" for ln in lines]
    path: list[str] = [""] * len(lines)  # the keys above each line's opening line
    for i in range(len(lines)):
        p = parent[i]
        if p >= 0:
            path[i] = (path[p] + " " + keys[parent[p]]).strip() if parent[p] >= 0 else ""
            if path[i]:
                scored[i] += "\n" + path[i]
    names = yaml_names(lines)
    starts = sorted(names)
    for a, b in zip(starts, starts[1:] + [len(lines)]):
        label = " ".join(lines[k].split(":", 1)[1].strip() for k in names[a] if k != a
                         and not lines[k].rstrip().endswith(":"))
        if label:
            for i in range(a + 1, b):
                scored[i] += "\n" + label
    return scored


def yaml_names(lines: list[str]) -> dict[int, list[int]]:
    """Per document of a YAML stream (from its ``---`` line, or -1 for the text before the
    first), the lines that name it: its top-level ``kind:``, and its top-level ``metadata:``
    with the ``name:`` right under it (a Kubernetes object's)."""
    out: dict[int, list[int]] = {-1: []}
    doc = meta = -1
    child = -1  # the indentation of metadata's fields
    for i, ln in enumerate(lines):
        if YAML_DOC_RE.match(ln):
            doc, meta = i, -1
            out[doc] = []
            continue
        ind = _indent(ln)
        if ind < 0:
            continue
        m = YAML_KEY_RE.match(ln)
        key = m.group(1) if m else None
        if ind == 0:
            meta = -1
            if key == "kind" and not ln.rstrip().endswith(":"):
                out[doc].append(i)
            elif key == "metadata" and ln.rstrip().endswith(":"):
                meta, child = i, -1
        elif meta >= 0:
            child = ind if child < 0 else child
            if ind == child and key == "name":
                out[doc] += [meta, i]
                meta = -1
    return {d: ks for d, ks in out.items() if ks}


def diff_context(lines: list[str]) -> list[str]:
    """Each line of a diff with its file's path and its hunk's header (the function git names
    after ``@@``), for scoring: a query naming the file or the function finds its changes."""
    what, file_of, hunk_of = diff_lines(lines)
    return [ln if w in "tf" else "\n".join([ln] + [lines[k] for k in (file_of[i], hunk_of[i])
                                                    if k >= 0 and k != i])
            for i, (ln, w) in enumerate(zip(lines, what))]


# a test file's path: in a tests directory (tests/, spec/, __tests__/, Foo.Tests/), pytest's
# (test_x.py, conftest.py), named for a test (x_test.go, x.spec.ts, x_spec.rb, FooTest.java);
# a diff's header may follow the path with a timestamp. A change to a test says less of what
# changed than the change it tests, unless the query asks of tests
TEST_PATH_RE = re.compile(r"(^|[/\s])(tests?|testing|specs?|__tests__|Tests?)/|\.Tests?/|"
                          r"(^|[/\s])(test_\w+|conftest|tests)\.py(?=\s|$)|"
                          r"[_.-]([Tt]ests?|[Ss]pec)\.\w+(?=\s|$)|"
                          r"[a-z0-9](Tests?|Spec)\.\w+(?=\s|$)")
TEST_QUERY_RE = re.compile(r"\b(py|unit)?(tests?|tested|testing)\b|\br?specs?\b|\bassert",
                           re.I)
TEST_SHARE = 0.5  # of its value a line of a test file keeps


def diff_path(lines: list[str], f: int) -> str:
    """The header line at ``f`` that names its file: a deleted file's ``+++ /dev/null`` is
    named by the ``--- a/path`` line above it."""
    if "/dev/null" in lines[f] and f > 0 and lines[f - 1].startswith("--- "):
        return lines[f - 1]
    return lines[f]


REPLACED_BY_MAX = 2  # a removed line brings the one added in its place up to twice as long


def diff_units(lines: list[str], rel: list[float], query: str = "") -> list[Unit]:
    """A unified diff (``git diff``, ``git show``, a ``.patch``): a kept line brings its hunk's
    header and its file's (``+++ b/path``, else ``diff --git``), so it says where it is; a line
    added in place of a removed one and that removed line bring each other (what it was before,
    what it became; unless the new one is far longer: :data:`REPLACED_BY_MAX`); changed lines
    count more than the context around them, a test file's lines (:data:`TEST_PATH_RE`) less
    unless the query asks of tests, a change repeated word for word (in another file or hunk)
    once; file and hunk headers fill what is left (which files and functions changed); a
    commit's subject counts as a heading."""
    units = line_units(lines)
    what, file_of, hunk_of = diff_lines(lines)
    damp_tests = not TEST_QUERY_RE.search(query)
    tests = {f: bool(TEST_PATH_RE.search(diff_path(lines, f))) for f in set(file_of) if f >= 0}
    run_minus: list[int] = []  # the removed lines just above (a change's before)
    plus_at = 0
    for i, u in enumerate(units):
        w, r = what[i], rel[i]
        if not lines[i].strip():
            u.filler = True
            continue
        deps: list[int] = []
        if file_of[i] >= 0 and file_of[i] != i:
            deps.append(file_of[i])
        if hunk_of[i] >= 0 and hunk_of[i] != i:
            deps.append(hunk_of[i])
        if w == "-":
            if i == 0 or what[i - 1] != "-":
                run_minus = []
            run_minus.append(i)
            plus_at = 0
        elif w == "+":
            if plus_at < len(run_minus):
                was = run_minus[plus_at]
                deps.append(was)  # the line it replaces
                if len(lines[i]) <= REPLACED_BY_MAX * len(lines[was]) + 20:
                    units[was].deps.append(i)  # and what replaced it, unless far longer
            plus_at += 1
        else:
            run_minus, plus_at = [], 0
        u.deps = deps
        if w in "+-":
            u.value = 2.0 * r + CHANGE_VALUE + (1.2 if r > 0 and is_error(lines[i]) else 0.0)
            if SIGNATURE_RE.match(lines[i][1:]):  # a definition added or removed: what changed
                u.value += SIGNATURE_CHANGE
                u.outline = True
        elif w == " ":
            u.value = 2.0 * CONTEXT_SHARE * r
        elif w in "@f":
            u.value = 1.5 * r
            u.outline = True
        else:  # a commit message, a diffstat
            u.value = 2.0 * r + (0.5 if lines[i].startswith("Subject:") else 0.0)
            u.outline = lines[i].startswith(("Subject:", "commit ", "From: "))
        u.critical = r > 0.5 and w in "+-"
        if damp_tests and w in "+- " and file_of[i] >= 0 and tests[file_of[i]]:
            u.value *= TEST_SHARE
    # the same change in several files or hunks (etter.conf.v4 and .v6) says it once
    damp_repeats(units, [ln.strip() if w in "+-" and len(ln.strip()) >= 8 else None
                         for ln, w in zip(lines, what)])
    return units


# -- CSV and TSV tables ----------------------------------------------------------------------------

CSV_DELIMITERS = (",", "\t", ";", "|")
TABLE_SHARE = 0.8  # of the rows with the header's number of fields, for a table
EXTREME_ROW = 0.8  # a column's largest value (then /2, /3), its smallest half of it
OUTLIER_ROW = 0.6  # a value far out of its column's (robust z-score past OUTLIER_Z)
OUTLIER_Z = 6.0
CHANGE_ROW = 0.6  # a value that changes in a column that rarely changes (a state, a count)
RARE_ROW = 0.5  # a value few rows of a column have
NAMED_COLUMN = 3.0  # a column the query names counts this many times more
_THRESHOLD_RE = re.compile(r"\b(more than|over|above|greater than|exceed(?:s|ing|ed)?|at least|"
                           r"less than|under|below|fewer than|at most)\s+(-?\d+(?:\.\d+)?)", re.I)


def _fields(line: str, delim: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delim))
    except (csv.Error, StopIteration):
        return line.split(delim)


# a cell that names its value: "Clock: 765 MHz", "N_left= 119648" (colours and marks before it)
_NAMED_CELL_RE = re.compile(r"^(?:\x1b\[[0-9;]*m|[^\w\x1b])*[A-Za-z][\w.-]*\s*[=:]\s*[^\s=:]")


def _stamped_record(fields: list[str]) -> bool:
    """A delimited line whose first or last field is a timestamp followed by words: a log's
    record, not a table's row."""
    return bool(fields) and any(bool(TIMESTAMP_RE.match(f)) and len(f.split()) > 3
                                for f in (fields[0], fields[-1]))


def csv_delimiter(lines: list[str]) -> str:
    """The delimiter of a CSV (or TSV, ``;``/``|``-separated) table: its first line has two or
    more (a tab, one or more), and :data:`TABLE_SHARE` of the lines after it as many fields;
    else ""."""
    head = lines[0] if lines else ""
    if len(lines) < 6 or head.lstrip()[:1] in "{[<":  # JSON or XML records one per line
        return ""
    sample = lines[1:2001]
    for d in CSV_DELIMITERS:
        # two columns are a table too when tabs set them apart (prose holds no tabs); a
        # comma, a semicolon or a bar alone is a sentence's as likely
        if head.count(d) < (1 if d == "\t" else 2):
            continue
        cells = _fields(head, d)
        if sum(bool(_NAMED_CELL_RE.match(c)) for c in cells) >= 0.5 * len(cells):
            # a first row whose cells name their values ("Clock: 765 MHz", "Temp: 52 C", a
            # GPU monitor's tab-separated warnings): a program's records, not a table's header
            continue
        width = len(cells)
        if sum(len(_fields(ln, d)) == width for ln in sample) >= TABLE_SHARE * len(sample):
            # a log whose messages hold the delimiter ("... [44]: [371-1]
            # user=postgres,db=postgres,app=pgbench ..."): its first field is a timestamp
            # followed by words, not a value
            # (or its last: `gh run view --log`'s "job<TAB>step<TAB>2026-08-13T10:02:47Z ...")
            logged = sum(_stamped_record(_fields(ln, d)) for ln in lines[:200])
            return "" if logged >= 0.5 * min(len(lines), 200) else d
    return ""


def _number(field: str) -> float | None:
    s = field.strip().removesuffix("%").strip()
    try:
        x = float(s)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


HEADER_CELL_MAX = 64  # characters: a longer first-row cell is a record's, not a column name


def csv_records(lines: list[str]) -> tuple[list[Unit], list[list[str]]]:
    """A CSV or TSV table's records as units (a record whose quoted field holds a line break
    spans its lines) with their fields; blank lines are units of their own, without fields."""
    delim = csv_delimiter([ln for ln in lines if ln.strip()]) or ","
    units: list[Unit] = []
    fields: list[list[str]] = []
    reader = csv.reader((ln + "\n" for ln in lines), delimiter=delim)
    start = 0
    try:
        for record in reader:
            end = max(reader.line_num, start + 1)
            units.append(Unit(start, end, "\n".join(lines[start:end])))
            fields.append(record)
            start = end
    except csv.Error:  # a broken quote: the rest line by line
        pass
    for i in range(start, len(lines)):
        units.append(Unit(i, i + 1, lines[i]))
        fields.append(_fields(lines[i], delim) if lines[i].strip() else [])
    return units, fields


def csv_units(units: list[Unit], fields: list[list[str]], rel: list[float],
              query: str = "") -> list[Unit]:
    """A CSV or TSV table (:func:`csv_records`): every record brings the header (a row of
    numbers nobody can read without it), which is kept first. Records are scored by the query's
    words and by what stands out in their columns, the way one reads a table: a column's
    largest values (and its smallest), values far out of the rest (robust z-score), a value
    that changes in a column that rarely changes (a state, a thread count: the record where it
    changed, with the one before), a value few records have, and, for a query's "more than 10"
    / "below 5", the records past it in a column where few are; a column the query names
    counts more."""
    from agentflux.runtime.relevance import query_weights, terms
    n = len(units)
    h = next((k for k in range(n) if fields[k]), -1)
    if h < 0:
        return units
    header = fields[h]
    width = len(header)
    # a header names its columns: no number, no cell empty or long, none twice (a table
    # written without one starts with a record, which is scored as one)
    named = (len(set(header)) == width and all(
        c.strip() and len(c) <= HEADER_CELL_MAX and _number(c) is None for c in header))
    if not named:
        header = [""] * width
    rows = [k for k in range(h + (1 if named else 0), n) if len(fields[k]) == width]
    asked = {t for t, w in query_weights(query).items() if w > 0}
    limits = [(m.group(1).lower(), float(m.group(2))) for m in _THRESHOLD_RE.finditer(query)]
    salience = dict.fromkeys(rows, 0.0)
    before: dict[int, int] = {}  # a record where a value changed -> the record before it
    for c in range(width):
        weight = NAMED_COLUMN if named and asked & set(terms(header[c])) else 1.0
        values = [(i, fields[i][c].strip()) for i in rows]
        nums = [(i, _number(v)) for i, v in values]
        numeric = [(i, x) for i, x in nums if x is not None]
        if values and len(numeric) >= 0.9 * len(values) and len({x for _, x in numeric}) >= 3:
            ordered = sorted(numeric, key=lambda e: (-e[1], e[0]))
            for rank, (i, _) in enumerate(ordered[:3]):
                salience[i] += weight * EXTREME_ROW / (1 + rank)
            salience[ordered[-1][0]] += weight * EXTREME_ROW / 2
            xs = sorted(x for _, x in numeric)
            med = xs[len(xs) // 2]
            mad = sorted(abs(x - med) for x in xs)[len(xs) // 2] * 1.4826
            if mad > 0:
                far = [i for i, x in numeric if abs(x - med) / mad > OUTLIER_Z]
                if len(far) <= max(3, 0.02 * len(rows)):
                    for i in far:
                        salience[i] += weight * OUTLIER_ROW
            for how, limit in limits:
                above = how in ("more than", "over", "above", "greater than", "at least") \
                    or how.startswith("exceed")
                past = [i for i, x in numeric if (x > limit if above else x < limit)]
                if 0 < len(past) <= 0.1 * len(rows):
                    for i in past:
                        salience[i] += weight * OUTLIER_ROW
        else:
            counts: dict[str, int] = {}
            for _, v in values:
                counts[v] = counts.get(v, 0) + 1
            if 2 <= len(counts) <= max(10, 0.05 * len(rows)):  # categories: a state, a name
                for i, v in values:
                    if counts[v] <= min(3, 0.01 * len(rows)):
                        salience[i] += weight * RARE_ROW
        changes = [(values[k - 1][0], values[k][0]) for k in range(1, len(values))
                   if values[k][1] != values[k - 1][1]]
        if 0 < len(changes) <= 0.05 * len(rows) + 2:
            for prev, i in changes:
                salience[i] += weight * CHANGE_ROW
                before[i] = prev
    if named:
        units[h].value, units[h].outline, units[h].critical = 3.0, True, True
    for k in range(h + (1 if named else 0), n):
        u = units[k]
        if not fields[k]:
            continue
        u.deps = ([h] if named else []) + ([before[k]] if k in before else [])
        u.value = 2.0 * rel[k] + min(salience.get(k, 0.0), 3.0)
        u.critical = rel[k] > 0.5
    return units
