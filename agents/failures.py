"""Failure-pattern detection over KPI window rows: a deterministic rule engine, no I/O.

The worker feeds :meth:`FailureDetector.observe` the KPI rows it reads (one partial row per window,
dimension key, source partition and revision) and publishes the alert transitions it returns. The
engine:

* merges partial rows of one (window, key) and drops redelivered rows by ``row_id``;
* evaluates on event time only: a window ending at ``T`` is judged (a *tick*) once a row of a
  window ``settle_windows`` later arrives (or :meth:`FailureDetector.advance` says event time has
  moved on), so partial rows from every partition are merged first and the result never depends
  on the wall clock, on batch boundaries or on a restart;
* keeps one state machine per alert (rule + labels): one ``firing`` transition when the condition
  first holds, none while it keeps holding, one ``resolved`` after ``clear_windows`` ticks without
  it; a later episode fires again under the same fingerprint;
* keeps bounded state: per-window data only as far back as the longest rule needs (long windows
  in coarse buckets), row ids for ``late_rows_horizon``, idle keys forgotten, at most
  ``max_keys_per_rule`` keys per rule (rows of further keys go to its :data:`OVERFLOW` key).

:meth:`FailureDetector.state` is JSON-serialisable; a detector rebuilt with
:meth:`FailureDetector.from_state` and fed the same later rows returns exactly the transitions the
original would have, which is how a worker restart neither repeats nor loses an alert.

Rules live in ``failure_rules.yaml`` next to this module (documented defaults); see
:func:`load_rules`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import abc
from dataclasses import dataclass
from importlib import resources
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import yaml

from ..schemas.sketch import DDSketch
from ..sinks.tables import check_kpi_batch

__all__ = ["KINDS", "OVERFLOW", "SEVERITIES", "Rules", "RuleSpec", "FailureDetector",
           "fingerprint", "load_rules"]

KINDS = ("burn_rate", "streak", "latency_slo", "threshold", "kpi_degradation", "fallback_storm",
         "cost_budget")
SEVERITIES = ("page", "ticket", "warning")
# the key a rule's rows of keys past its max_keys_per_rule go to (every part of the group: a flood
# of tool names, or of philosophies, makes one key), as the Prometheus sink's overflow series
OVERFLOW = "__overflow__"
_REFERENCE_PERIOD_NS = 30 * 86_400 * 10**9  # burn-rate windows are written for a 30-day SLO
_STATE_VERSION = 1

# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_NS = {"ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9, "d": 86400e9, None: 1e9}
_MEASURE = re.compile(r"^(count|errors|error_rate|duration_count|duration_max_ms|p\d+(?:\.\d+)?"
                      r"|sums\.[\w.-]+|maxes\.[\w.-]+)$")
_SUMMABLE = re.compile(r"^(count|errors|duration_count|sums\.[\w.-]+)$")


def _bad(where: str, problem: str, fix: str) -> ValueError:
    return ValueError(f"{where}: {problem}; fix: {fix}")


def _number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _bad(where, f"expected a number, got {v!r}", "write a plain number such as 0.8")
    return float(v)


def _positive(v: Any, where: str) -> float:
    x = _number(v, where)
    if x <= 0:
        raise _bad(where, f"must be > 0, got {v!r}", "use a positive number")
    return x


def _non_negative(v: Any, where: str) -> float:
    x = _number(v, where)
    if x < 0:
        raise _bad(where, f"must be >= 0, got {v!r}", "use 0 or a positive number")
    return x


def _objective(v: Any, where: str) -> float:
    x = _number(v, where)
    if not 0 < x < 1:
        raise _bad(where, f"an SLO objective is a fraction in (0, 1), got {v!r}",
                   "write 99 % as 0.99")
    return x


def _confidence(v: Any, where: str) -> float:
    x = _number(v, where)
    if not 0.5 <= x < 1:
        raise _bad(where, f"a confidence is a fraction in [0.5, 1), got {v!r}",
                   "write 95 % as 0.95")
    return x


def _fraction(v: Any, where: str) -> float:
    x = _number(v, where)
    if not 0 < x <= 1:
        raise _bad(where, f"must be in (0, 1], got {v!r}", "write 70 % as 0.7")
    return x


def _int(minimum: int) -> Callable[[Any, str], int]:
    def parse(v: Any, where: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise _bad(where, f"expected a whole number >= {minimum}, got {v!r}",
                       f"write an integer such as {max(minimum, 3)}")
        return v
    return parse


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise _bad(where, f"expected true or false, got {v!r}", "write true or false")
    return v


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v:
        raise _bad(where, f"expected a non-empty string, got {v!r}", "quote a name")
    return v


def _duration_ns(v: Any, where: str) -> int:
    """Seconds as a number, or a string such as ``"500ms"``, ``"5m"``, ``"3d"``."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        m = _DURATION.match(repr(v)) if v >= 0 else None
    else:
        m = _DURATION.match(v) if isinstance(v, str) else None
    if m is None or float(m.group(1)) <= 0:
        raise _bad(where, f"expected a positive duration, got {v!r}",
                   'write seconds or a string such as "10s", "5m", "6h", "3d"')
    return int(round(float(m.group(1)) * _UNIT_NS[m.group(2)]))


def _types(v: Any, where: str) -> tuple[str, ...]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not items or not all(isinstance(t, str) and t
                                                           for t in items):
        raise _bad(where, f"expected a row type or a list of them, got {v!r}",
                   "write e.g. tool.call or [cache.lookup, cache.stats]")
    return tuple(items)


def _group_by(v: Any, where: str) -> tuple[str, ...]:
    if (not isinstance(v, list) or not v or len(set(v)) != len(v)
            or not all(k in ("name", "philosophy") for k in v)):
        raise _bad(where, f"expected a list of name and/or philosophy, got {v!r}",
                   "write [name, philosophy], [name] or [philosophy]")
    return tuple(v)


def _severity(v: Any, where: str) -> str:
    if v not in SEVERITIES:
        raise _bad(where, f"unknown severity {v!r}", f"use one of {', '.join(SEVERITIES)}")
    return v


def _op(v: Any, where: str) -> str:
    if v not in (">", "<"):
        raise _bad(where, f"unknown comparison {v!r}", 'use ">" or "<" (quoted in YAML)')
    return v


def _measure(v: Any, where: str) -> str:
    if not isinstance(v, str) or not _MEASURE.match(v):
        raise _bad(where, f"unknown measure {v!r}", "use count, errors, error_rate, "
                   "duration_count, duration_max_ms, p50/p90/p95/p99, sums.<m> or maxes.<m>")
    return v


def _summable(v: Any, where: str) -> str:
    if not isinstance(v, str) or not _SUMMABLE.match(v):
        raise _bad(where, f"{v!r} cannot be summed over windows",
                   "use count, errors, duration_count or sums.<m>")
    return v


def _summables(v: Any, where: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not v:
        raise _bad(where, f"expected a list of measures, got {v!r}", "write e.g. [sums.hits]")
    return tuple(_summable(m, f"{where}[{i}]") for i, m in enumerate(v))


def _objectives(v: Any, where: str) -> dict[str, float]:
    if not isinstance(v, dict):
        raise _bad(where, f"expected a mapping of name to objective, got {v!r}",
                   "write e.g. {code_exec: 0.9}")
    return {str(k): _objective(x, f"{where}.{k}") for k, x in v.items()}


def _burn_windows(v: Any, where: str) -> tuple[dict, ...]:
    if not isinstance(v, list) or not v:
        raise _bad(where, f"expected a list of window pairs, got {v!r}",
                   "write e.g. [{severity: page, long: 1h, short: 5m, burn_rate: 14.4}]")
    out = []
    for i, pair in enumerate(v):
        w = f"{where}[{i}]"
        if not isinstance(pair, dict) or set(pair) != {"severity", "long", "short", "burn_rate"}:
            raise _bad(w, f"expected keys severity, long, short, burn_rate, got {pair!r}",
                       "write {severity: page, long: 1h, short: 5m, burn_rate: 14.4}")
        out.append({"severity": _severity(pair["severity"], f"{w}.severity"),
                    "long_ns": _duration_ns(pair["long"], f"{w}.long"),
                    "short_ns": _duration_ns(pair["short"], f"{w}.short"),
                    "burn_rate": _positive(pair["burn_rate"], f"{w}.burn_rate")})
    return tuple(out)


def _template(v: Any, where: str) -> str | None:
    if v is not None and not isinstance(v, str):
        raise _bad(where, f"expected a text template, got {v!r}", "quote the text")
    return v


_COMMON: dict[str, Callable[[Any, str], Any]] = {
    "kind": _str, "enabled": _bool, "type": _types, "dim": _str, "group_by": _group_by,
    "label": _str, "severity": _severity, "clear_windows": _int(1), "summary": _template,
    "description": _template}
_COMMON_DEFAULTS = {"enabled": True, "dim": "name", "group_by": ["name", "philosophy"],
                    "label": "name", "severity": "warning", "clear_windows": None,
                    "summary": None, "description": None}
_THRESHOLD = {"measure": _measure, "op": _op, "threshold": _number, "for_windows": _int(1),
              "min_count": _int(0), "pool_within": _duration_ns}
_RATIO = {"numerator": _summables, "denominator": _summables, "op": _op, "threshold": _number,
          "span_windows": _int(1), "min_denominator": _non_negative, "min_count": _int(0),
          "baseline_windows": _int(0), "drop_fraction": _fraction, "warmup": _duration_ns,
          "confidence": _confidence}
_PER_KIND: dict[str, dict[str, Callable[[Any, str], Any]]] = {
    "burn_rate": {"objective": _objective, "objective_overrides": _objectives,
                  "period": _duration_ns, "min_events": _int(0),
                  "buckets_per_window": _int(1), "windows": _burn_windows},
    "streak": {"length": _int(1), "keep_windows": _int(1)},
    "latency_slo": _THRESHOLD, "threshold": _THRESHOLD,
    "kpi_degradation": _RATIO, "fallback_storm": _RATIO,
    "cost_budget": {"measure": _summable, "budget": _positive, "horizon": _duration_ns,
                    "buckets": _int(1), "once": _bool, "forget_after": _duration_ns,
                    "max_keys": _int(1)},
}
# settings a rule of the kind may leave out
_KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "cost_budget": {"forget_after": None, "max_keys": None},
    "latency_slo": {"pool_within": None}, "threshold": {"pool_within": None},
    "kpi_degradation": {"warmup": None, "confidence": None},
    "fallback_storm": {"warmup": None, "confidence": None}}
_TOP: dict[str, Callable[[Any, str], Any]] = {
    "window_s": _duration_ns, "settle_windows": _int(0), "clear_windows": _int(1),
    "late_rows_horizon": _duration_ns, "idle_horizon": _duration_ns,
    "backlog_horizon": _duration_ns, "max_keys_per_rule": _int(1)}

# What an alert says, unless a rule has its own template. Fields: subject (the labels), rule,
# severity, value, threshold and the rule's scalar settings.
_TEMPLATES = {
    "burn_rate": ("{subject}: error budget burning {value:.1f}x (>= {threshold:g}x)",
                  "The error ratio over both windows of a multiwindow pair is {value:.1f} times "
                  "the ratio that would exhaust the error budget of the SLO period."),
    "streak": ("{subject}: {value:.0f} failed calls in a row",
               "At least {threshold:g} consecutive failed calls with no success in between."),
    "latency_slo": ("{subject}: {measure} {value:.0f} ms {op} {threshold:g} ms",
                    "The {measure} latency breached its SLO in {for_windows} consecutive windows."),
    "threshold": ("{subject}: {measure} {value:.4g} {op} {threshold:g}",
                  "{measure} crossed its threshold in {for_windows} consecutive windows."),
    "kpi_degradation": ("{subject}: KPI at {value:.3g} ({op} {threshold:.3g})",
                        "The ratio over the last {span_windows} windows crossed its threshold."),
    "fallback_storm": ("{subject}: {value:.0%} of routing decisions fell back (> {threshold:.0%})",
                       "Routing falls back to other models more than its threshold over the last "
                       "{span_windows} windows: a model or provider is failing."),
    "cost_budget": ("{subject}: spent {value:.2f} USD (budget {threshold:.2f} USD)",
                    "The rolling cost over the horizon went over its budget."),
}


@dataclass(frozen=True)
class RuleSpec:
    """One validated rule: its name, kind and settings (durations in ns)."""

    name: str
    kind: str
    params: Mapping[str, Any]

    @property
    def enabled(self) -> bool:
        return bool(self.params["enabled"])


@dataclass(frozen=True)
class Rules:
    """Validated settings and rules (see ``failure_rules.yaml``); build with :func:`load_rules`."""

    window_ns: int
    settle_windows: int
    clear_windows: int
    late_rows_horizon_ns: int
    idle_horizon_ns: int
    rules: tuple[RuleSpec, ...]
    # how far behind the newest a source still reading its backlog is waited for
    backlog_horizon_ns: int = 6 * 3600 * 10**9
    # keys a rule (but a cost budget, which has its own max_keys) holds at most; rows of further
    # keys go to its overflow key (:data:`OVERFLOW`)
    max_keys_per_rule: int | None = None

    def rule(self, name: str) -> RuleSpec:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)


def _read_yaml(text: str, origin: str) -> dict:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise _bad(origin, f"not valid YAML{at} ({getattr(exc, 'problem', None) or exc})",
                   "correct the YAML syntax") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise _bad(origin, f"expected a mapping at the top, got {type(doc).__name__}",
                   "start the file with settings such as `rules:`")
    return doc


def _merge(defaults: dict, user: dict, origin: str) -> dict:
    """User settings over the defaults; a user rule of a known name is merged key by key
    (unless it changes the kind: then it replaces the default rule)."""
    merged = {**defaults, **{k: v for k, v in user.items() if k != "rules"}}
    rules = dict(defaults.get("rules") or {})
    user_rules = user.get("rules", {})
    if user_rules is None:
        user_rules = {}
    if not isinstance(user_rules, dict):
        raise _bad(f"{origin}: rules", f"expected a mapping of rule names, got {user_rules!r}",
                   "write `rules:` then `  name: {setting: value}` lines")
    for name, body in user_rules.items():
        if not isinstance(body, dict):
            raise _bad(f"{origin}: rules.{name}", f"expected a mapping, got {body!r}",
                       "write e.g. `cpu_high: {threshold: 90}` or `{enabled: false}`")
        base = rules.get(name) or {}
        if "kind" in body and base.get("kind") not in (None, body["kind"]):
            base = {}
        rules[name] = {**base, **body}
    merged["rules"] = rules
    return merged


def _template_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if isinstance(v, (str, int, float))}


def _validate_rule(name: str, body: dict, origin: str) -> RuleSpec:
    where = f"{origin}: rules.{name}"
    kind = body.get("kind")
    if kind not in KINDS:
        raise _bad(f"{where}.kind", f"unknown or missing kind {kind!r}",
                   f"use one of {', '.join(KINDS)}")
    allowed = {**_COMMON, **_PER_KIND[kind]}
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise _bad(f"{where}.{unknown[0]}", f"unknown setting for a {kind} rule",
                   f"remove it, or use one of {', '.join(sorted(allowed))}")
    params = {**_COMMON_DEFAULTS, **_KIND_DEFAULTS.get(kind, {}), **body}
    missing = [k for k in allowed if k not in params]
    if missing:
        raise _bad(f"{where}.{missing[0]}", f"a {kind} rule needs this setting",
                   f"add {', '.join(missing)}")
    parsed = {k: allowed[k](v, f"{where}.{k}") if v is not None else None
              for k, v in params.items()}
    for key, template in ((k, parsed[k]) for k in ("summary", "description")):
        if template is None:
            continue
        try:
            template.format(**{**_template_fields(parsed), "subject": "x", "rule": name,
                               "severity": "page", "value": 1.0, "threshold": 1.0})
        except (KeyError, IndexError, ValueError) as exc:
            raise _bad(f"{where}.{key}", f"the template does not format ({exc!r})",
                       "use only {subject} {rule} {severity} {value} {threshold} and the "
                       "rule's own settings in braces") from None
    return RuleSpec(name, kind, parsed)


def load_rules(path: str | Path | None = None) -> Rules:
    """The packaged defaults, with the YAML file at ``path`` (if any) merged over them.

    Raises ``ValueError`` naming the file, the key and the fix for anything invalid (the CLI
    prints the message, no stack trace)."""
    defaults = _read_yaml(resources.files(__package__).joinpath("failure_rules.yaml")
                          .read_text(encoding="utf-8"), "failure_rules.yaml (packaged)")
    origin = "failure_rules.yaml (packaged)"
    doc = defaults
    if path is not None:
        origin = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise _bad(origin, f"cannot read the rules file ({exc.strerror or exc})",
                       "pass the path of a readable YAML file") from None
        doc = _merge(defaults, _read_yaml(text, origin), origin)
    unknown = sorted(set(doc) - set(_TOP) - {"rules"})
    if unknown:
        raise _bad(f"{origin}: {unknown[0]}", "unknown top-level setting",
                   f"use one of {', '.join(sorted([*_TOP, 'rules']))}")
    top = {k: _TOP[k](doc[k], f"{origin}: {k}") if k in doc else None for k in _TOP}
    missing = [k for k, v in top.items() if v is None]
    if missing:
        raise _bad(f"{origin}: {missing[0]}", "missing setting", f"add {', '.join(missing)}")
    rules = doc.get("rules") or {}
    if not isinstance(rules, dict):
        raise _bad(f"{origin}: rules", f"expected a mapping of rule names, got {rules!r}",
                   "write `rules:` then `  name: {setting: value}` lines")
    specs = tuple(_validate_rule(str(n), b if isinstance(b, dict) else {}, origin)
                  for n, b in rules.items())
    return Rules(window_ns=top["window_s"], settle_windows=top["settle_windows"],
                 clear_windows=top["clear_windows"],
                 late_rows_horizon_ns=top["late_rows_horizon"],
                 idle_horizon_ns=top["idle_horizon"], rules=specs,
                 backlog_horizon_ns=max(top["backlog_horizon"], top["late_rows_horizon"]),
                 max_keys_per_rule=top["max_keys_per_rule"])


# --------------------------------------------------------------------------------------------
# window data
# --------------------------------------------------------------------------------------------

class _Row(NamedTuple):
    row_id: str
    dim: str
    type: str
    name: str
    philosophy: str
    start: int
    end: int
    count: int
    errors: int
    dcount: int
    dmax: float | None
    sums: dict
    maxes: dict
    sketch: DDSketch | None


def _parse_row(row: Any) -> _Row:
    """A checked, normalised KPI row; raises KeyError / TypeError / ValueError if malformed."""
    if not isinstance(row.get("row_id"), str):
        raise TypeError("row_id")
    start, end = row["window_start_ns"], row["window_end_ns"]
    if not (type(start) is int and type(end) is int and end > start):
        raise ValueError("window bounds")
    count, errors = row["count"], row.get("errors", 0)
    if not (type(count) is int and type(errors) is int and 0 <= errors <= count):
        raise ValueError("count / errors")
    sums = {str(k): float(v) for k, v in (row.get("sums") or {}).items()}
    maxes = {str(k): float(v) for k, v in (row.get("maxes") or {}).items() if v is not None}
    if not all(math.isfinite(v) for v in (*sums.values(), *maxes.values())):
        raise ValueError("non-finite measure")
    sk = row.get("sketch")
    sketch = DDSketch.from_dict(sk) if sk and sk.get("count") else None
    dmax = row.get("duration_max_ms")
    return _Row(row["row_id"], str(row["dim"]), str(row["type"]), str(row.get("name") or ""),
                str(row.get("philosophy") or ""), start, end, count, errors,
                int(row.get("duration_count") or 0), None if dmax is None else float(dmax),
                sums, maxes, sketch)


class _Batch:
    """A checked KPI batch (:class:`~agentflux.streams.windows.WindowBatch`): rows of one
    window, dimension and type as columns, all with the batch's id (a batch is remembered, and
    redelivered, as a whole). Rules read it column by column where they can
    (:meth:`_Rule.ingest_batch`); :meth:`rows` makes a row of each for the others."""

    __slots__ = ("doc", "row_id", "dim", "type", "start", "end", "n", "_rows")

    def __init__(self, doc: Any):
        """Raises KeyError / TypeError / ValueError if ``doc`` is malformed."""
        self.n = check_kpi_batch(doc)
        start, end = doc["window_start_ns"], doc["window_end_ns"]
        if end <= start:
            raise ValueError("window bounds")
        sums, maxes = doc.get("sums") or {}, doc.get("maxes") or {}
        # (checked column by column: a batch holds thousands of rows)
        if not all(0 <= e <= c for c, e in zip(doc["count"], doc["errors"])):
            raise ValueError("count / errors")
        if not all(map(math.isfinite, chain(*sums.values(), (
                v for vs in maxes.values() for v in vs if v is not None)))):
            raise ValueError("non-finite measure")
        self.doc, self.row_id, self.start, self.end = doc, doc["row_id"], start, end
        self.dim, self.type = doc["dim"], doc["type"]
        self._rows: list[_Row] | None = None

    def groups(self, by: tuple[str, ...]) -> list[Group]:
        """Each row's group (:meth:`_Rule.group`)."""
        doc = self.doc
        if by == ("name",):
            return [(n,) for n in doc["name"]]
        return [tuple(n if k == "name" else ph for k in by)
                for n, ph in zip(doc["name"], doc["philosophy"])]

    def column(self, measure: str) -> list:
        """A summable measure (``count``, ``errors``, ``duration_count``, ``sums.<m>``) of
        each row (a batch's rows have no durations)."""
        doc = self.doc
        if measure in ("count", "errors"):
            return doc[measure]
        if measure == "duration_count":
            return [0] * self.n
        values = (doc.get("sums") or {}).get(measure[5:])
        return values if values is not None else [0.0] * self.n

    def rows(self) -> list[_Row]:
        if self._rows is None:
            doc = self.doc
            sums, maxes = doc.get("sums") or {}, doc.get("maxes") or {}
            s_names, m_names = [str(k) for k in sums], [str(k) for k in maxes]
            s_rows = list(zip(*sums.values())) if sums else [()] * self.n
            m_rows = list(zip(*maxes.values())) if maxes else [()] * self.n
            rid, dim, t, start, end = self.row_id, self.dim, self.type, self.start, self.end
            self._rows = [
                _Row(rid, dim, t, name, phil, start, end, count, errors, 0, None,
                     dict(zip(s_names, map(float, sv))),
                     {k: float(v) for k, v in zip(m_names, mv) if v is not None}, None)
                for name, phil, count, errors, sv, mv in zip(
                    doc["name"], doc["philosophy"], doc["count"], doc["errors"], s_rows,
                    m_rows)]
        return self._rows


def _parse(raw: Mapping) -> "_Row | _Batch":
    """A KPI row or batch as received, checked."""
    return _Batch(raw) if raw.get("kind") == "kpi_batch" else _parse_row(raw)


class _Agg:
    """The merge of partial rows: summed counts and sums, max of maxes, merged sketch."""

    __slots__ = ("count", "errors", "dcount", "dmax", "sums", "maxes", "sketch")

    def __init__(self) -> None:
        self.count = self.errors = self.dcount = 0
        self.dmax: float | None = None
        self.sums: dict[str, float] = {}
        self.maxes: dict[str, float] = {}
        self.sketch: DDSketch | None = None

    def add(self, r: "_Row | _Agg", keep_sketch: bool,
            only: tuple[frozenset[str], frozenset[str]] | None = None) -> None:
        """Merge ``r`` (a row, or another aggregate); ``only``: the sums and maxes to keep
        (default: all of them)."""
        self.count += r.count
        self.errors += r.errors
        self.dcount += r.dcount
        if r.dmax is not None:
            self.dmax = r.dmax if self.dmax is None else max(self.dmax, r.dmax)
        sums, maxes = r.sums, r.maxes
        if only is not None:  # (a few measures of many rows: no filtered copies)
            for k in only[0]:
                v = sums.get(k)
                if v is not None:
                    self.sums[k] = self.sums.get(k, 0.0) + v
            for k in only[1]:
                v = maxes.get(k)
                if v is not None:
                    self.maxes[k] = max(self.maxes.get(k, v), v)
        else:
            for k, v in sums.items():
                self.sums[k] = self.sums.get(k, 0.0) + v
            for k, v in maxes.items():
                self.maxes[k] = max(self.maxes.get(k, v), v)
        if keep_sketch and r.sketch is not None:
            if self.sketch is None:
                self.sketch = DDSketch(r.sketch.alpha)
            if self.sketch.gamma == r.sketch.gamma:
                self.sketch.merge(r.sketch)

    def n(self, measure: str) -> int:
        """How many observations back ``measure``: durations for latency measures."""
        return self.dcount if measure[0] == "p" or measure.startswith("duration") else self.count

    def value(self, measure: str) -> float | None:
        if measure == "count":
            return float(self.count)
        if measure == "errors":
            return float(self.errors)
        if measure == "error_rate":
            return self.errors / self.count if self.count else None
        if measure == "duration_count":
            return float(self.dcount)
        if measure == "duration_max_ms":
            return self.dmax
        if measure.startswith("sums."):
            return self.sums.get(measure[5:], 0.0)
        if measure.startswith("maxes."):
            return self.maxes.get(measure[6:])
        if self.sketch is None:  # pNN
            return None
        return self.sketch.quantile(float(measure[1:]) / 100)

    def state(self) -> list:
        return [self.count, self.errors, self.dcount, self.dmax, self.sums, self.maxes,
                None if self.sketch is None else self.sketch.to_dict()]

    @classmethod
    def from_state(cls, s: list) -> "_Agg":
        a = cls()
        a.count, a.errors, a.dcount, a.dmax, a.sums, a.maxes = s[0], s[1], s[2], s[3], \
            dict(s[4]), dict(s[5])
        a.sketch = None if s[6] is None else DDSketch.from_dict(s[6])
        return a


Group = tuple[str, ...]


class _Series:
    """Merged aggregates of one rule per group and time bucket (a bucket is one KPI window, or
    several for long horizons), kept for ``keep_ns`` before the latest tick."""

    def __init__(self, bucket_ns: int, keep_ns: int, keep_sketch: bool = False,
                 measures: Iterable[str] | None = None):
        """``measures``: the only measures read from it (``sums.x`` / ``maxes.x`` / counts; a
        series per high-cardinality key, a session's, keeps no others)."""
        self.bucket_ns, self.keep_ns, self.keep_sketch = bucket_ns, keep_ns, keep_sketch
        self.only = None if measures is None else (
            frozenset(m[5:] for m in measures if m.startswith("sums.")),
            frozenset(m[6:] for m in measures if m.startswith("maxes.")))
        self.data: dict[Group, dict[int, _Agg]] = {}
        # bucket -> the groups with data in it: pruning touches only the buckets that go (a
        # series of a high-cardinality key holds many groups, most of them quiet)
        self.index: dict[int, set[Group]] = {}
        self.floor_ns: int | None = None  # buckets before it are gone: rows for them are dropped
        self.touched: set[Group] = set()  # groups changed since the last state taken

    def add(self, group: Group, r: _Row) -> bool:
        """Merge ``r`` into ``group``'s bucket; False: the row is older than what is kept."""
        b = r.start - r.start % self.bucket_ns
        if self.floor_ns is not None and b < self.floor_ns:
            return False
        buckets = self.data.setdefault(group, {})
        agg = buckets.get(b)
        if agg is None:
            agg = buckets[b] = _Agg()
            self.index.setdefault(b, set()).add(group)
        agg.add(r, self.keep_sketch, self.only)
        self.touched.add(group)
        return True

    def forget(self, group: Group) -> None:
        self.touched.add(group)
        for b in self.data.pop(group, {}):
            groups = self.index[b]
            groups.discard(group)
            if not groups:
                del self.index[b]

    def newest_first(self, group: Group, before_ns: int) -> list[_Agg]:
        return [a for _, a in self.buckets_newest_first(group, before_ns)]

    def buckets_newest_first(self, group: Group, before_ns: int) -> list[tuple[int, _Agg]]:
        buckets = self.data.get(group, {})
        return [(b, buckets[b]) for b in sorted(buckets, reverse=True) if b < before_ns]

    def first(self, group: Group) -> int | None:
        """The start of the group's oldest bucket still kept (None: no data)."""
        buckets = self.data.get(group)
        return min(buckets) if buckets else None

    def total(self, group: Group, lo_ns: int, hi_ns: int, measures: Iterable[str]) -> float:
        measures = tuple(measures)
        return sum(agg.value(m) for b, agg in self.data.get(group, {}).items()
                   if lo_ns <= b < hi_ns for m in measures)

    def prune(self, now_ns: int) -> list[tuple[Group, int, _Agg]]:
        """Drop buckets that start before ``now - keep``; returns them, oldest first."""
        floor = now_ns - self.keep_ns
        self.floor_ns = floor if self.floor_ns is None else max(self.floor_ns, floor)
        gone = []
        for b in sorted(b for b in self.index if b < self.floor_ns):
            for group in sorted(self.index.pop(b)):
                buckets = self.data[group]
                gone.append((group, b, buckets.pop(b)))
                self.touched.add(group)
                if not buckets:
                    del self.data[group]
        return gone

    def _saved(self, buckets: dict) -> list:
        """A group's buckets as stored."""
        return [[b, a.state()] for b, a in buckets.items()]

    def _stored(self, a: Any) -> Any:
        """A bucket as stored -> its value."""
        return _Agg.from_state(a)

    def state(self) -> dict:
        self.touched = set()
        return {"floor": self.floor_ns,
                "groups": [[list(g), self._saved(buckets)] for g, buckets in self.data.items()]}

    def delta(self) -> dict:
        """The groups changed since the last :meth:`state` or :meth:`delta` (their buckets, or
        none: gone)."""
        touched, self.touched = self.touched, set()
        data = self.data
        return {"floor": self.floor_ns,
                "groups": [[list(g), self._saved(data[g]) if g in data else None]
                           for g in touched]}

    def apply(self, d: dict) -> None:
        """Apply a :meth:`delta` to the state it was taken after."""
        self.floor_ns = d["floor"]
        for g, buckets in d["groups"]:
            g = tuple(g)
            for b in self.data.pop(g, {}):
                self.index[b].discard(g)
                if not self.index[b]:
                    del self.index[b]
            if buckets is not None:
                self.data[g] = {int(b): self._stored(a) for b, a in buckets}
                for b in self.data[g]:
                    self.index.setdefault(b, set()).add(g)

    def load(self, s: dict) -> None:
        """Replace the series with a :meth:`state` (a delta of every group)."""
        self.data, self.index = {}, {}
        self.apply(s)


class _Spend(_Series):
    """A series of one summable measure: per group and bucket a number, not an :class:`_Agg`
    (a cost budget's keys are sessions or users: many, each with a few rows and one number).
    Its state holds ``[bucket, value]`` pairs; a state of :class:`_Series` (an aggregate per
    bucket, as stored before) loads too."""

    def __init__(self, bucket_ns: int, keep_ns: int, measure: str):
        super().__init__(bucket_ns, keep_ns, measures=(measure,))
        self.measure = measure

    def _value(self, r: _Row) -> float:
        m = self.measure
        if m == "count":
            return r.count
        if m == "errors":
            return r.errors
        if m == "duration_count":
            return r.dcount
        return r.sums.get(m[5:], 0.0)

    def add(self, group: Group, r: _Row) -> bool:
        return self.add_many([group], r.start, [self._value(r)])

    def add_many(self, groups: list[Group], start: int, values: list) -> bool:
        """``values[i]`` for ``groups[i]``, all in the window starting at ``start``; False:
        older than what is kept."""
        b = start - start % self.bucket_ns
        if self.floor_ns is not None and b < self.floor_ns:
            return False
        data = self.data
        for g, v in zip(groups, values):
            buckets = data.get(g)
            if buckets is None:
                data[g] = {b: float(v)}
            else:
                buckets[b] = buckets.get(b, 0.0) + v
        self.index.setdefault(b, set()).update(groups)
        self.touched.update(groups)
        return True

    def newest_first(self, group: Group, before_ns: int) -> list[_Agg]:
        raise NotImplementedError("a spend series holds numbers, not aggregates")

    def total(self, group: Group, lo_ns: int, hi_ns: int, measures: Iterable[str]) -> float:
        return sum(v for b, v in self.data.get(group, {}).items() if lo_ns <= b < hi_ns)

    def _saved(self, buckets: dict) -> list:
        return list(buckets.items())

    def _stored(self, v: Any) -> float:
        if type(v) is list:  # an aggregate's state (:class:`_Series`)
            a = _Agg.from_state(v)
            return a.value(self.measure) or 0.0
        return float(v)


# --------------------------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------------------------

class _Condition(NamedTuple):
    group: Group
    severity: str
    holds: bool
    value: float
    threshold: float
    # False: too little data to judge (a ratio's minimums): an active alert neither clears nor
    # holds on it; it resolves once the group has had no data for the rule's kept horizon
    known: bool = True


def _crosses(value: float | None, op: str, threshold: float) -> bool:
    return value is not None and (value > threshold if op == ">" else value < threshold)


class _Rule:
    """What every kind shares: which rows it takes, how it groups and labels them."""

    once = False

    def __init__(self, spec: RuleSpec, rules: Rules):
        p = self.p = spec.params
        self.name, self.kind = spec.name, spec.kind
        self.types = frozenset(p["type"])
        self.dim, self.group_by, self.label = p["dim"], tuple(p["group_by"]), p["label"]
        self.severity = p["severity"]
        self.clear_windows = p["clear_windows"] or rules.clear_windows
        self.w = rules.window_ns
        self.settle = rules.settle_windows
        self.series: dict[str, _Series] = {}
        self.max_keys = rules.max_keys_per_rule
        self.overflow: Group = (OVERFLOW,) * len(self.group_by)
        self.overflowed = 0  # rows of new keys past max_keys taken as the overflow key's
        self.last_group: Group = ()  # the key of the row ingested last

    def group(self, r: _Row) -> Group:
        """The row's key, or :attr:`overflow` when it is new and the rule holds
        :attr:`max_keys` keys already (a flood of tool names from a careless or hostile
        runtime: the rule's state, its stored deltas and its time per tick stay bounded, and
        the flood's failures still alert, under the overflow key)."""
        by = self.group_by
        if by == ("name",):  # (most rules; called for every row they take)
            g: Group = (r.name,)
        else:
            g = tuple(r.name if k == "name" else r.philosophy for k in by)
        if self.max_keys is None or self.has(g) or self.n_keys() < self.max_keys:
            return g
        return self.overflow

    def n_keys(self) -> int:
        """The keys the rule holds (every series takes every row: the longest holds them)."""
        return max((len(s.data) for s in self.series.values()), default=0)

    def labels(self, group: Group, severity: str) -> dict[str, str]:
        out = {"alertname": self.name, "severity": severity}
        for k, v in zip(self.group_by, group):
            out[self.label if k == "name" else k] = v
        return out

    def group_of(self, labels: Mapping[str, str]) -> Group:
        """The group :meth:`labels` were made of."""
        return tuple(str(labels.get(self.label if k == "name" else k, "")) for k in self.group_by)

    def ingest(self, r: _Row) -> bool:
        """Add ``r`` to the rule's series; False: every series found it older than it keeps.
        Its key is :attr:`last_group` after (subclasses read it: :meth:`group` decides once)."""
        g = self.last_group = self.group(r)
        if g is self.overflow:
            self.overflowed += 1
        kept = False
        for s in self.series.values():
            kept = s.add(g, r) or kept
        return kept

    def ingest_batch(self, batch: _Batch) -> None:
        """A batch's rows (a kind that can reads its columns instead)."""
        for r in batch.rows():
            self.ingest(r)

    def groups(self) -> list[Group]:
        seen: dict[Group, None] = {}
        for s in self.series.values():
            seen.update(dict.fromkeys(s.data))
        return sorted(seen)

    def has(self, group: Group) -> bool:
        """Whether the rule holds data of ``group``."""
        return any(group in s.data for s in self.series.values())

    def evaluate(self, tick_ns: int, active: Iterable[Group] = ()) -> list[_Condition]:
        """The conditions of the keys that can hold and of ``active`` ones (the keys of the
        rule's firing alerts, which need theirs to resolve): a key left out is one whose
        condition does not hold and whose alert is not firing, which changes nothing."""
        raise NotImplementedError

    def prune(self, tick_ns: int) -> None:
        for s in self.series.values():
            s.prune(tick_ns)

    def empty(self) -> bool:
        return not any(s.data for s in self.series.values())

    def state(self) -> dict:
        return {"series": {k: s.state() for k, s in self.series.items()}}

    def load(self, s: dict) -> None:
        """Continue from a :meth:`state` (a new rule: its state is a delta of everything)."""
        self.apply(s)

    def delta(self) -> dict:
        """What changed since the last :meth:`state` or :meth:`delta` (what a kind keeps
        besides its series is small: in full)."""
        return {"series": {k: s.delta() for k, s in self.series.items()}}

    def apply(self, d: dict) -> None:
        for k, v in d.get("series", {}).items():
            if k in self.series:
                self.series[k].apply(v)


def _scaled(length_ns: int, period_ns: int, window_ns: int) -> int:
    """A burn-rate window for an SLO period: ``period / 30 d`` times the 30-day window, in whole
    KPI windows, at least one."""
    scaled = length_ns * period_ns / _REFERENCE_PERIOD_NS
    return max(1, round(scaled / window_ns)) * window_ns


class _BurnRate(_Rule):
    """Multiwindow, multi-burn-rate error-budget alerts (SRE workbook): a pair fires when the burn
    rate over both its long and its short window reaches its factor; one alert per severity."""

    def __init__(self, spec: RuleSpec, rules: Rules):
        super().__init__(spec, rules)
        p = self.p
        self.pairs = [(wp["severity"], _scaled(wp["long_ns"], p["period"], self.w),
                       _scaled(wp["short_ns"], p["period"], self.w), wp["burn_rate"])
                      for wp in p["windows"]]
        self.severities = list(dict.fromkeys(s for s, *_ in self.pairs))
        # the threshold a severity's condition shows when nothing burns (its largest factor)
        self._top_factor = {sev: max(f for s, _, _, f in self.pairs if s == sev)
                            for sev in self.severities}
        self.erring: set[Group] = set()  # the keys with an error kept in any series
        for length in sorted({x for _, lo, sh, _ in self.pairs for x in (lo, sh)}):
            bucket = max(self.w, length // p["buckets_per_window"] // self.w * self.w)
            self.series[str(length)] = _Series(bucket, length)

    def _ratio(self, group: Group, length: int, tick: int) -> tuple[float, float]:
        s = self.series[str(length)]
        return (s.total(group, tick - length, tick, ("count",)),
                s.total(group, tick - length, tick, ("errors",)))

    def _history_start(self, group: Group, long_ns: int) -> int:
        """Where the retained data of ``group`` begins: a pair is judged only once it covers the
        short window (minutes after a start, a "6-hour burn" would be a 2-minute one)."""
        return min(self.series[str(long_ns)].data.get(group) or (2**63,))

    def ingest(self, r: _Row) -> bool:
        kept = super().ingest(r)
        if kept and r.errors:
            self.erring.add(self.last_group)
        return kept

    def _errs(self, g: Group) -> bool:
        return any(a.errors for s in self.series.values() for a in s.data.get(g, {}).values())

    def prune(self, tick_ns: int) -> None:
        gone = {g for s in self.series.values() for g, _, a in s.prune(tick_ns) if a.errors}
        self.erring -= {g for g in gone if not self._errs(g)}

    def apply(self, d: dict) -> None:
        super().apply(d)
        self.erring = {g for s in self.series.values() for g in s.data if self._errs(g)}

    def evaluate(self, tick_ns: int, active: Iterable[Group] = ()) -> list[_Condition]:
        """The conditions of the keys with an error kept (no error, no burn: most keys, most
        ticks; thousands of tool names judged every tick made the pairs' sums the worker's
        main cost), and of ``active`` ones with data (the keys of its firing alerts: they need
        theirs): the conditions judging every key gives, but of the keys that can hold."""
        p = self.p
        out = []
        for g in sorted(self.erring.union(g for g in active if self.has(g))):
            if g not in self.erring:
                out.extend(_Condition(g, sev, False, 0.0, top)
                           for sev, top in self._top_factor.items())
                continue
            name = g[self.group_by.index("name")] if "name" in self.group_by else None
            budget = 1 - p["objective_overrides"].get(name, p["objective"])
            for sev in self.severities:
                # the pair that holds, else the one closest to holding, speaks for the alert
                best = (False, -1.0, 0.0, 0.0)  # (holds, burn / factor, burn, factor)
                for s, long_ns, short_ns, factor in self.pairs:
                    if s != sev:
                        continue
                    nl, el = self._ratio(g, long_ns, tick_ns)
                    ns, es = self._ratio(g, short_ns, tick_ns)
                    if (nl < max(p["min_events"], 1) or ns < 1
                            or self._history_start(g, long_ns) > tick_ns - short_ns):
                        burn = 0.0
                    else:
                        burn = min(el / nl, es / ns) / budget
                    best = max(best, (burn >= factor, burn / factor, burn, factor))
                out.append(_Condition(g, sev, best[0], best[2], best[3]))
        return out


class _Streak(_Rule):
    """``length`` failed calls with no success in between, counted in whole windows. Windows
    older than ``keep_windows`` are folded into a carried count, so a streak can span any time.
    Judged: the keys with a failure kept or carried (no failure, no streak) and the active ones."""

    def __init__(self, spec: RuleSpec, rules: Rules):
        super().__init__(spec, rules)
        self.series["w"] = _Series(self.w, self.p["keep_windows"] * self.w)
        self.carried: dict[Group, int] = {}
        self.last_end: dict[Group, int] = {}
        self.idle_ns = rules.idle_horizon_ns
        self.erring: set[Group] = set()  # the keys with a failure kept or carried

    def _errs(self, g: Group) -> bool:
        return self.carried.get(g, 0) > 0 or any(
            a.errors for a in self.series["w"].data.get(g, {}).values())

    def has(self, group: Group) -> bool:
        return group in self.last_end or super().has(group)

    def n_keys(self) -> int:
        # (a key stays in last_end until it has been idle: every key with data or a carry)
        return max(len(self.last_end), super().n_keys())

    def ingest(self, r: _Row) -> bool:
        kept = super().ingest(r)
        g = self.last_group
        self.last_end[g] = max(self.last_end.get(g, r.end), r.end)
        if kept and r.errors:
            self.erring.add(g)
        return kept

    def groups(self) -> list[Group]:
        return sorted(set(self.series["w"].data) | set(self.carried))

    def evaluate(self, tick_ns: int, active: Iterable[Group] = ()) -> list[_Condition]:
        out = []
        length = self.p["length"]
        data = self.series["w"].data
        for g in sorted(self.erring.union(g for g in active if g in data or g in self.carried)):
            streak = 0
            windows = self.series["w"].newest_first(g, tick_ns)
            for agg in windows:
                if agg.count > agg.errors:
                    break
                streak += agg.errors
            else:
                streak += self.carried.get(g, 0)
            holds = streak >= length
            # a success breaks the streak, but only `length` successful calls in a row say the
            # tool works again: one success among fifty failures neither holds nor clears an
            # active alert
            ok = 0
            for agg in windows:
                if agg.errors:
                    break
                ok += agg.count
            known = holds or ok >= length
            out.append(_Condition(g, self.severity, holds, float(streak), float(length),
                                  known=known))
        return out

    def prune(self, tick_ns: int) -> None:
        touched = set()
        for g, _, agg in self.series["w"].prune(tick_ns):
            touched.add(g)
            if agg.count > agg.errors:
                self.carried.pop(g, None)
            elif agg.errors:
                self.carried[g] = self.carried.get(g, 0) + agg.errors
        idle = tick_ns - self.idle_ns
        for g in [g for g, end in self.last_end.items() if end < idle]:
            if g not in self.series["w"].data:
                del self.last_end[g]
                self.carried.pop(g, None)
                touched.add(g)
        self.erring -= {g for g in touched if not self._errs(g)}

    def empty(self) -> bool:
        return super().empty() and not self.carried and not self.last_end

    # (carried counts and last row ends are per tool or agent, few: in full in a delta too)
    def _own(self) -> dict:
        return {"carried": [[list(g), n] for g, n in self.carried.items()],
                "last_end": [[list(g), e] for g, e in self.last_end.items()]}

    def state(self) -> dict:
        return {**super().state(), **self._own()}

    def delta(self) -> dict:
        return {**super().delta(), **self._own()}

    def apply(self, d: dict) -> None:
        super().apply(d)
        self.carried = {tuple(g): n for g, n in d["carried"]}
        self.last_end = {tuple(g): e for g, e in d["last_end"]}
        self.erring = {g for g in set(self.series["w"].data) | set(self.carried)
                       if self._errs(g)}


# measures that pooled windows estimate the same way (a quantile, a rate, a maximum); a count
# or a sum would grow with the windows pooled
_POOLABLE = re.compile(r"p\d|error_rate$|duration_max_ms$|maxes\.")


class _Threshold(_Rule):
    """A per-window measure past a threshold in ``for_windows`` consecutive windows that have at
    least ``min_count`` observations (windows without them are skipped, not breaking). With
    ``pool_within`` (a duration), and a measure pooling does not change the meaning of (a
    quantile, the error rate, a maximum), windows short of ``min_count`` are pooled with the
    windows before them, as many as fit in ``pool_within``, for one judgement: a model that
    stalls completes a call or two per window, and skipping such windows would never judge the
    stall."""

    def __init__(self, spec: RuleSpec, rules: Rules):
        super().__init__(spec, rules)
        p = self.p
        self.pool = max(1, (p["pool_within"] or 0) // self.w) \
            if _POOLABLE.match(p["measure"]) else 1
        # for_windows judgements of up to pool windows each, and as many windows skipped
        keep = (p["for_windows"] * (self.pool + 1) + self.settle + 1) * self.w
        self.series["w"] = _Series(self.w, keep, keep_sketch=p["measure"][0] == "p")
        # per key, the observations kept (of the measure): a key short of min_count in all
        # of them is no judgement, and is not looked at
        self.kept_n: dict[Group, int] = {}

    def ingest(self, r: _Row) -> bool:
        kept = super().ingest(r)
        if kept:
            g = self.last_group
            self.kept_n[g] = self.kept_n.get(g, 0) + _Agg.n(r, self.p["measure"])
        return kept

    def prune(self, tick_ns: int) -> None:
        m = self.p["measure"]
        for g, _, a in self.series["w"].prune(tick_ns):
            left = self.kept_n.get(g, 0) - a.n(m)
            if left > 0 and g in self.series["w"].data:
                self.kept_n[g] = left
            else:
                self.kept_n.pop(g, None)

    def apply(self, d: dict) -> None:
        super().apply(d)
        m = self.p["measure"]
        self.kept_n = {g: sum(a.n(m) for a in bs.values())
                       for g, bs in self.series["w"].data.items()}

    def _periods(self, g: Group, tick_ns: int) -> list[_Agg]:
        """Newest first: the windows (or, pooled, runs of windows within ``pool_within``)
        with at least ``min_count`` observations, at most ``for_windows`` of them."""
        p = self.p
        m, n, need = p["measure"], p["for_windows"], max(p["min_count"], 1)
        if self.pool == 1:
            return [a for a in self.series["w"].newest_first(g, tick_ns) if a.n(m) >= need][:n]
        out: list[_Agg] = []
        acc: _Agg | None = None  # the windows pooled so far (a new aggregate: kept ones stay)
        newest = 0  # the start of the newest window in acc
        for b, a in self.series["w"].buckets_newest_first(g, tick_ns):
            if acc is not None and (newest - b) // self.w >= self.pool:
                acc = None  # too sparse to pool within pool_within: start again from here
            if acc is None and a.n(m) >= need:
                out.append(a)  # enough on its own
                if len(out) == n:
                    break
                continue
            if acc is None:
                acc, newest = _Agg(), b
            acc.add(a, keep_sketch=True)
            if acc.n(m) >= need:
                out.append(acc)
                acc = None
                if len(out) == n:
                    break
        return out

    def evaluate(self, tick_ns: int, active: Iterable[Group] = ()) -> list[_Condition]:
        """The conditions of the keys with ``min_count`` observations kept (a key seen once or
        twice is no judgement: not pooled again every tick), and of ``active`` ones with data."""
        p = self.p
        n = p["for_windows"]
        out = []
        need = max(p["min_count"], 1)
        judged = {g for g, k in self.kept_n.items() if k >= need}
        for g in sorted(judged.union(g for g in active if g in self.series["w"].data)):
            if g not in judged:
                out.append(_Condition(g, self.severity, False, 0.0, p["threshold"]))
                continue
            values = [a.value(p["measure"]) for a in self._periods(g, tick_ns)]
            holds = len(values) == n and all(_crosses(v, p["op"], p["threshold"])
                                              for v in values)
            known = [v for v in values if v is not None]
            value = (min(known) if p["op"] == ">" else max(known)) if known else 0.0
            out.append(_Condition(g, self.severity, holds, float(value), p["threshold"]))
        return out


def _z_score(confidence: float) -> float:
    """The one-sided normal quantile of ``confidence`` (0.95 -> 1.645)."""
    from statistics import NormalDist
    return NormalDist().inv_cdf(confidence)


def _wilson(k: float, n: float, z: float, upper: bool) -> float:
    """The Wilson score bound of the proportion ``k`` of ``n`` (Wilson, 1927; the interval that
    stays sensible for small ``n`` and proportions near 0 or 1)."""
    q = min(max(k / n, 0.0), 1.0)
    z2n = z * z / n
    centre = (q + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(q * (1 - q) / n + z2n / (4 * n)) / (1 + z2n)
    return centre + half if upper else centre - half


class _Ratio(_Rule):
    """sum(numerator) / sum(denominator) over the last ``span_windows`` windows against a
    threshold, or against ``drop_fraction`` x the same ratio over the ``baseline_windows``
    before them. Too little data (the minimums) is no judgement: the condition does not hold.

    ``warmup``: a group's first windows (a cold cache filling, a new pool's first starts) are
    neither counted nor judged; a group without data for the whole kept horizon is new again.
    ``confidence`` (for a ratio of counts: hits of lookups, warm starts of starts): the ratio
    crosses the threshold only when its Wilson score bound at that confidence does (the upper
    bound for ``<``): 40 hits of 50 lookups is no evidence that a cache hitting 87 % of the time
    has fallen below 80 %, 5 of 50 is."""

    def __init__(self, spec: RuleSpec, rules: Rules):
        super().__init__(spec, rules)
        p = self.p
        self.warmup = -(-(p["warmup"] or 0) // self.w) * self.w  # whole windows
        self.z = _z_score(p["confidence"]) if p["confidence"] else None
        keep = (p["span_windows"] + p["baseline_windows"] + self.settle + 1) * self.w \
            + self.warmup
        self.series["w"] = _Series(self.w, keep)

    def _counts(self, g: Group, lo: int, hi: int) -> tuple[float, float] | None:
        """(numerator, denominator) over [lo, hi), None when too little to judge."""
        p, s = self.p, self.series["w"]
        if self.warmup:
            first = s.first(g)
            lo = max(lo, (first if first is not None else hi) + self.warmup)
            if lo >= hi:
                return None
        den = s.total(g, lo, hi, p["denominator"])
        if den <= 0 or den < p["min_denominator"] or s.total(g, lo, hi, ("count",)) < p["min_count"]:
            return None
        return s.total(g, lo, hi, p["numerator"]), den

    def _ratio(self, g: Group, lo: int, hi: int) -> float | None:
        c = self._counts(g, lo, hi)
        return None if c is None else c[0] / c[1]

    def evaluate(self, tick_ns: int, active: Iterable[Group] = ()) -> list[_Condition]:
        p = self.p
        lo = tick_ns - p["span_windows"] * self.w
        out = []
        for g in self.groups():
            counts = self._counts(g, lo, tick_ns)
            ratio = None if counts is None else counts[0] / counts[1]
            threshold = p["threshold"]
            if p["baseline_windows"]:
                base = self._ratio(g, lo - p["baseline_windows"] * self.w, lo)
                threshold = p["drop_fraction"] * base if base is not None else math.nan
                if base is None:
                    ratio = None
            judged = ratio
            if ratio is not None and self.z is not None:
                # the bound on the side the rule fires towards: the evidence, not the estimate
                judged = _wilson(counts[0], counts[1], self.z, upper=p["op"][0] == "<")
            holds = judged is not None and _crosses(judged, p["op"], threshold)
            out.append(_Condition(g, self.severity, holds, 0.0 if ratio is None else ratio,
                                  0.0 if math.isnan(threshold) else threshold,
                                  known=ratio is not None))
        return out


class _CostBudget(_Rule):
    """Rolling spend over ``horizon`` past ``budget``; with ``once`` a key fires once, and only
    fires again after its spend has left the horizon entirely."""

    def __init__(self, spec: RuleSpec, rules: Rules):
        super().__init__(spec, rules)
        p = self.p
        self.once = p["once"]
        bucket = max(self.w, p["horizon"] // p["buckets"] // self.w * self.w)
        self.series["h"] = _Spend(bucket, p["horizon"], p["measure"])
        # Its keys are sessions or users: many, most of them quiet. A tick judges only the keys
        # whose spend may have changed (rows since the last tick, or rows of a window not
        # reached yet) and those over the budget (their spend leaves the horizon); for any
        # other key the condition is as it was, false. Judging every key on every tick was
        # quadratic: keys x windows.
        self._dirty: set[Group] = set()
        self._over: set[Group] = set()
        self.evicted = 0  # keys forgotten early to stay within max_keys
        self.max_keys = None  # (its keys are sessions or users: its own max_keys evicts them)

    def ingest(self, r: _Row) -> bool:
        kept = super().ingest(r)
        self._dirty.add(self.last_group)
        return kept

    def ingest_batch(self, batch: _Batch) -> None:
        groups = batch.groups(self.group_by)
        self.series["h"].add_many(groups, batch.start, batch.column(self.p["measure"]))
        self._dirty.update(groups)

    def evaluate(self, tick_ns: int, active: Iterable[Group] = ()) -> list[_Condition]:
        p, series = self.p, self.series["h"]
        self.prune(tick_ns)  # (the spend before the horizon: out of the totals, and judged)
        todo, self._dirty = self._dirty | self._over, set()
        out = []
        for g in sorted(todo):
            spent = series.total(g, tick_ns - p["horizon"], tick_ns, (p["measure"],))
            holds = spent > p["budget"]
            (self._over.add if holds else self._over.discard)(g)
            if max(series.data.get(g) or (0,)) >= tick_ns:
                self._dirty.add(g)  # rows of a later window are in: judged again then
            out.append(_Condition(g, self.severity, holds, spent, p["budget"]))
        return out

    def prune(self, tick_ns: int) -> None:
        series = self.series["h"]
        for g, _, _ in series.prune(tick_ns):
            self._dirty.add(g)  # its spend went down
        if self.p["forget_after"] is None:
            return
        # keys with no row for ``forget_after`` (to the bucket: their newest bucket ended that
        # long ago) are forgotten: a session that ended, whose spend cannot change any more
        cut = tick_ns - self.p["forget_after"] - series.bucket_ns
        for b in sorted(b for b in series.index if b <= cut):
            # (a key forgotten at an earlier bucket may have emptied this one's set)
            for g in sorted(series.index.get(b, ())):
                if max(series.data[g]) <= cut:
                    self._forget(g)
        cap = self.p["max_keys"]
        if cap is not None and len(series.data) > cap:
            self._evict(cap, tick_ns)

    def _evict(self, cap: int, tick_ns: int) -> None:
        """Over ``max_keys``: forget the keys quiet the longest (by their newest bucket, oldest
        first, then by key; never one over the budget) down to 90 % of the cap, so that a
        steady stream of new keys evicts once every few ticks, not on every one. Memory stays
        bounded whatever the rate of new keys; an evicted key that comes back starts from nothing (counted in
        :attr:`evicted`)."""
        p, series = self.p, self.series["h"]
        excess = len(series.data) - cap * 9 // 10
        for b in sorted(series.index):
            for g in sorted(series.index.get(b, ())):
                # (over the budget: from the stored spend, not from what this instance judged,
                # so a restored detector evicts the same keys)
                if max(series.data[g]) != b or series.total(
                        g, tick_ns - p["horizon"], tick_ns, (p["measure"],)) > p["budget"]:
                    continue
                self._forget(g)
                self.evicted += 1
                excess -= 1
                if excess <= 0:
                    return

    def _forget(self, g: Group) -> None:
        self.series["h"].forget(g)
        self._dirty.discard(g)
        self._over.discard(g)

    def apply(self, d: dict) -> None:
        super().apply(d)
        self._dirty = set(self.series["h"].data)  # every key judged at the next tick


_KIND_CLASSES: dict[str, type[_Rule]] = {
    "burn_rate": _BurnRate, "streak": _Streak, "latency_slo": _Threshold,
    "threshold": _Threshold, "kpi_degradation": _Ratio, "fallback_storm": _Ratio,
    "cost_budget": _CostBudget}


# --------------------------------------------------------------------------------------------
# the detector
# --------------------------------------------------------------------------------------------

def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """Stable across processes and restarts: a hash of the rule name and the sorted labels."""
    blob = json.dumps([rule, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class FailureDetector:
    """Consumes KPI rows, returns alert transitions (see the module docstring).

    Not thread-safe; one instance per worker (or per partition set), restored from
    :meth:`state` after a restart or rebalance."""

    def __init__(self, rules: Rules, progress: bool = False):
        """``progress``: judge windows on the sources' progress markers (the worker publishes
        them with its rows); without, on the newest row's window (rows from anywhere else)."""
        self.rules = rules
        self.progress = progress
        self._w = rules.window_ns
        self._rules = [_KIND_CLASSES[s.kind](s, rules) for s in rules.rules if s.enabled]
        self._by_name = {r.name: r for r in self._rules}
        # (dim, type) -> the rules that read such rows
        self._wanted: dict[tuple[str, str], list[_Rule]] = {}
        for rule in self._rules:
            for t in rule.types:
                self._wanted.setdefault((rule.dim, t), []).append(rule)
        self._next_tick: int | None = None
        self._watermark = 0
        self._sources: dict[int, int] = {}  # source partition -> window ends it is done with
        # a worker's log -> the source partitions it is still reading a backlog of (its markers
        # say so): waited for up to the backlog horizon, not only the late-rows horizon
        self._behind: dict[str, set[int]] = {}
        self._held: dict[int, list] = {}  # window end -> rows (as received) not ingested yet
        self._seen: dict[str, int] = {}
        self._seen_by_end: dict[int, list[str]] = {}
        self._seen_touched: set[int] = set()  # window ends changed since the last state taken
        self._alerts: dict[str, dict] = {}
        self._once: dict[str, list] = {}  # fingerprint -> [rule, group] of keys that fired once
        self.counters = {"rows": 0, "duplicates": 0, "too_late": 0, "rejected": 0, "ignored": 0}

    # -- input ---------------------------------------------------------------------------------
    def observe(self, rows: Iterable[Mapping]) -> list[dict]:
        """Merge ``rows`` and return the transitions they cause, in event-time order. A row that
        is not a KPI row is ignored, a malformed one rejected, a redelivered or too late one
        dropped (each counted in :attr:`counters`); none raises."""
        out: list[dict] = []
        for raw in rows:
            # (rows are dicts; any other mapping is taken too, at the cost of an ABC check)
            mapping = type(raw) is dict or isinstance(raw, abc.Mapping)
            if mapping and raw.get("kind") == "progress":
                self._progressed(raw, out)
                continue
            if not mapping or raw.get("kind", "kpi") not in ("kpi", "kpi_batch") or (
                    self.progress and (raw.get("dim"), raw.get("type")) not in self._wanted):
                # (with progress markers, time comes from the markers: a row no rule reads
                # is not needed)
                self.counters["ignored"] += 1
                continue
            try:
                r = _parse(raw)  # (a batch: rows of one window, with the batch's id)
            except (KeyError, TypeError, ValueError, AttributeError):
                self.counters["rejected"] += 1
                continue
            n = r.n if type(r) is _Batch else 1
            if r.row_id in self._seen:
                self.counters["duplicates"] += n
                continue
            # too late: older than the late-rows horizon behind the windows judged so far (with
            # markers: a source read behind the others, waited for, is not late), or behind the
            # newest row (without)
            judged = self._next_tick if self.progress and self._next_tick is not None \
                else self._watermark
            if r.end < judged - self.rules.late_rows_horizon_ns:
                self.counters["too_late"] += n
                continue
            if self._next_tick is None:
                self._next_tick = r.end
            self._remember(r, n)
            if not self.progress:
                self._advance(r.start, out)
            elif r.end > self._next_tick:
                # ahead of the windows judged so far: held until the ticks reach its window, so
                # a judgement never sees a later window's data (rows arrive long before their
                # windows are judged when the sources run apart)
                self._held.setdefault(r.end, []).append(raw)
                continue
            self._ingest(r)
        return out

    def _ingest(self, r: "_Row | _Batch") -> None:
        rules = self._wanted.get((r.dim, r.type), ())
        if type(r) is _Batch:
            for rule in rules:
                rule.ingest_batch(r)
        else:
            for rule in rules:
                rule.ingest(r)

    def take_evicted(self) -> dict[str, int]:
        """Keys each rule forgot early to stay within its ``max_keys`` since the last call."""
        out = {}
        for r in self._rules:
            if getattr(r, "evicted", 0):
                out[r.name], r.evicted = r.evicted, 0
        return out

    def take_overflowed(self) -> dict[str, int]:
        """Rows each rule took as its overflow key's (new keys past ``max_keys_per_rule``)
        since the last call."""
        out = {}
        for r in self._rules:
            if r.overflowed:
                out[r.name], r.overflowed = r.overflowed, 0
        return out

    def advance(self, event_time_ns: int) -> list[dict]:
        """Event time has reached ``event_time_ns`` (no row for an earlier window will come but
        late ones): evaluate the windows due, as a row of that time would. For a quiet stream."""
        out: list[dict] = []
        if self._next_tick is not None:
            self._advance(event_time_ns, out)
        return out

    def _progressed(self, marker: Mapping, out: list[dict]) -> None:
        """A source partition's progress marker: every row of its windows ending at or before
        ``done_before_ns`` has been published (late revisions aside). Windows are judged once
        every source has passed them: each partition closes its windows on its own watermark,
        and a backlog or a replay runs partitions minutes of event time apart, so judging by the
        newest row would judge a window before the rows of a slower partition arrived. A source
        further behind the newest than the late-rows horizon is not waited for, unless the worker
        reading it says it is still reading that partition's backlog (``behind``: a worker
        catching up reads one partition's backlog after another, tens of minutes of event time
        apart): then up to the backlog horizon."""
        try:
            p, done = int(marker["source_partition"]), int(marker["done_before_ns"])
            partitions = int(marker.get("partitions") or 0)
        except (KeyError, TypeError, ValueError):
            self.counters["rejected"] += 1
            return
        log, behind = marker.get("log"), marker.get("behind")
        if log is not None:
            log = str(log)
            if isinstance(behind, list):
                try:
                    self._behind[log] = {int(q) for q in behind}
                except (TypeError, ValueError):
                    self.counters["rejected"] += 1
            for other, parts in self._behind.items():  # p is this worker's now
                if other != log:
                    parts.discard(p)
        if self._next_tick is None:
            return  # nothing to judge yet
        # a partition not heard from yet is waited for from the first window held (until it
        # falls behind the late-rows horizon)
        for q in range(partitions):
            self._sources.setdefault(q, self._next_tick - self._w)
        self._sources[p] = max(self._sources.get(p, done), done)
        newest = max(self._sources.values())
        waited = set().union(*self._behind.values()) if self._behind else set()
        frontier = min(d for q, d in self._sources.items()
                       if d >= newest - self.rules.late_rows_horizon_ns
                       or (q in waited and d >= newest - self.rules.backlog_horizon_ns))
        self._advance(frontier + self.rules.settle_windows * self._w, out)

    def _remember(self, r: _Row, rows: int = 1) -> None:
        self.counters["rows"] += rows
        self._seen[r.row_id] = r.end
        self._seen_by_end.setdefault(r.end, []).append(r.row_id)
        self._seen_touched.add(r.end)
        self._watermark = max(self._watermark, r.end)

    # -- evaluation ----------------------------------------------------------------------------
    def _advance(self, now_ns: int, out: list[dict]) -> None:
        """Tick every window end ``T`` with ``T + settle`` at or before ``now_ns``; over a gap
        with nothing stored and no alert, jump (the ticks would do nothing)."""
        limit = now_ns - self.rules.settle_windows * self._w
        w = self._w
        while self._next_tick <= limit:
            if (not self._alerts and not self._once and not self._held
                    and all(r.empty() for r in self._rules)):
                self._next_tick += (limit - self._next_tick) // w * w
            for end in sorted(e for e in self._held if e <= self._next_tick):
                for raw in self._held.pop(end):
                    self._ingest(_parse(raw))
            self._tick(self._next_tick, out)
            self._next_tick += w

    def _tick(self, tick_ns: int, out: list[dict]) -> None:
        for rule in self._rules:
            touched = set()
            # (a condition that does not hold, for a key with no active alert of the rule,
            # changes nothing: most keys, most ticks; skipped before its fingerprint is hashed)
            active = [rule.group_of(a["labels"]) for a in self._alerts.values()
                      if a["rule"] == rule.name]
            quiet = not active
            for cond in rule.evaluate(tick_ns, active):
                if quiet and not cond.holds:
                    continue
                labels = rule.labels(cond.group, cond.severity)
                fp = fingerprint(rule.name, labels)
                touched.add(fp)
                self._update(rule, fp, labels, cond, tick_ns, out)
            for fp in sorted(fp for fp, a in self._alerts.items()
                             if a["rule"] == rule.name and fp not in touched):
                a = self._alerts[fp]
                self._update(rule, fp, a["labels"], None, tick_ns, out)
            rule.prune(tick_ns)
        if self._once:
            for fp in [fp for fp, (name, g) in self._once.items()
                       if fp not in self._alerts and not self._by_name[name].has(tuple(g))]:
                del self._once[fp]
        horizon = tick_ns - self.rules.late_rows_horizon_ns
        for end in [e for e in self._seen_by_end if e < horizon]:
            for rid in self._seen_by_end.pop(end):
                self._seen.pop(rid, None)
            self._seen_touched.add(end)

    def _update(self, rule: _Rule, fp: str, labels: dict, cond: _Condition | None,
                tick_ns: int, out: list[dict]) -> None:
        """The alert state machine: fire once, stay quiet while active, resolve after
        ``clear_windows`` ticks without the condition."""
        a = self._alerts.get(fp)
        if cond is not None and cond.holds:
            if a is None:
                if rule.once and fp in self._once:
                    return
                a = self._alerts[fp] = {
                    "fingerprint": fp, "rule": rule.name, "kind": rule.kind,
                    "severity": labels["severity"], "labels": labels, "starts_at_ns": tick_ns,
                    "updated_at_ns": tick_ns, "value": cond.value, "threshold": cond.threshold,
                    "held": cond.value, "clear": 0}
                if rule.once:
                    self._once[fp] = [rule.name, list(cond.group)]
                out.append(self._transition(rule, a, "firing"))
            else:
                a.update(clear=0, value=cond.value, threshold=cond.threshold,
                         updated_at_ns=tick_ns, held=cond.value)
            return
        if a is None:
            return
        if cond is not None and not cond.known:
            return  # no evidence either way (a window with too few decisions): as it was
        a["clear"] += 1
        if cond is not None:
            a["value"] = cond.value
        if a["clear"] >= rule.clear_windows:
            a["updated_at_ns"] = tick_ns
            del self._alerts[fp]
            out.append(self._transition(rule, a, "resolved"))

    def _transition(self, rule: _Rule, a: dict, status: str) -> dict:
        labels = a["labels"]
        subject = " ".join(f"{k}={v}" for k, v in labels.items()
                           if k not in ("alertname", "severity"))
        # the annotations say what held while it fired (a resolved alert's text is its last
        # firing one, as Alertmanager keeps it); "value" is the latest
        fields = {**_template_fields(rule.p), "subject": subject, "rule": rule.name,
                  "severity": a["severity"], "value": a.get("held", a["value"]),
                  "threshold": a["threshold"]}
        summary, description = _TEMPLATES[rule.kind]
        return {"fingerprint": a["fingerprint"], "status": status, "rule": a["rule"],
                "kind": a["kind"], "severity": a["severity"], "labels": dict(labels),
                "annotations": {"summary": (rule.p["summary"] or summary).format(**fields),
                                "description": (rule.p["description"] or description)
                                .format(**fields)},
                "starts_at_ns": a["starts_at_ns"],
                "ends_at_ns": a["updated_at_ns"] if status == "resolved" else None,
                "updated_at_ns": a["updated_at_ns"], "value": float(a["value"]),
                "threshold": float(a["threshold"])}

    # -- output and state ----------------------------------------------------------------------
    def active(self) -> list[dict]:
        """The alerts firing now, as ``firing`` transitions with their latest value."""
        return [self._transition(self._by_name[a["rule"]], a, "firing")
                for a in sorted(self._alerts.values(),
                                key=lambda a: (a["starts_at_ns"], a["fingerprint"]))]

    def state(self) -> dict:
        """Everything needed to continue exactly where this detector is (JSON-friendly)."""
        self._seen_touched = set()
        return {**self._small_state(),
                "seen": [[e, list(ids)] for e, ids in self._seen_by_end.items()],
                "rules": {r.name: r.state() for r in self._rules}}

    def delta(self) -> dict:
        """What changed since the last :meth:`state` or :meth:`delta`, for :meth:`apply` on
        the state as it was then: the keys (sessions, tools ...) and window ends of remembered
        row ids that changed, and in full what is small. A detector's state grows with its
        keys; what one batch of rows changes does not."""
        touched, self._seen_touched = self._seen_touched, set()
        return {**self._small_state(), "delta": True,
                "seen": [[e, self._seen_by_end.get(e)] for e in touched],
                "rules": {r.name: r.delta() for r in self._rules}}

    def _small_state(self) -> dict:
        return {"version": _STATE_VERSION, "window_ns": self._w, "next_tick_ns": self._next_tick,
                "watermark_ns": self._watermark,
                "sources": [[p, s] for p, s in self._sources.items()],
                "behind": [[log, sorted(ps)] for log, ps in self._behind.items()],
                "held": [[end, list(rows)] for end, rows in self._held.items()],
                "alerts": [dict(a) for a in self._alerts.values()],
                "once": [[fp, v] for fp, v in self._once.items()],
                "counters": dict(self.counters)}

    def apply(self, delta: Mapping) -> None:
        """Continue from the state after ``delta`` (of :meth:`delta`), given this detector is
        at the state it was taken after."""
        self._check_version(delta, self.rules)
        self._load_small(delta)
        self._load_seen(delta["seen"])
        for name, d in delta["rules"].items():
            if name in self._by_name:
                self._by_name[name].apply(d)

    def _load_seen(self, entries: Iterable) -> None:
        """Row ids per window end (none: the end is gone), replacing what was there."""
        for end, ids in entries:
            for rid in self._seen_by_end.pop(end, ()):
                self._seen.pop(rid, None)
            if ids is not None:
                self._seen_by_end[end] = list(ids)
                for rid in ids:
                    self._seen[rid] = end

    @staticmethod
    def _check_version(state: Mapping, rules: Rules) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"failure detector state version {state.get('version')!r} is not "
                             f"{_STATE_VERSION}; start from an empty state")
        if state["window_ns"] != rules.window_ns:
            raise ValueError(f"the state was kept with {state['window_ns'] / 1e9:g}-s windows, "
                             f"the rules say window_s {rules.window_ns / 1e9:g}; use the same "
                             "window size or start from an empty state")

    def _load_small(self, state: Mapping) -> None:
        self._next_tick, self._watermark = state["next_tick_ns"], state["watermark_ns"]
        self._sources = {int(p): s for p, s in state.get("sources", [])}
        self._behind = {str(log): {int(q) for q in ps} for log, ps in state.get("behind", [])}
        self._held = {int(end): list(rows) for end, rows in state.get("held", [])}
        self._alerts = {a["fingerprint"]: {**a, "labels": dict(a["labels"])}
                        for a in state["alerts"] if a["rule"] in self._by_name}
        self._once = {fp: list(v) for fp, v in state["once"] if v[0] in self._by_name}
        self.counters.update(state.get("counters", {}))

    @classmethod
    def from_state(cls, rules: Rules, state: Mapping,
                   progress: bool = False) -> "FailureDetector":
        """A detector that continues from ``state`` (of :meth:`state`). Rules added since start
        empty; alerts of rules removed or disabled since are dropped."""
        cls._check_version(state, rules)
        if state.get("delta"):
            raise ValueError("a delta of a failure detector's state is applied to the state it "
                             "follows (FailureDetector.apply), not restored on its own")
        d = cls(rules, progress)
        d._load_small(state)
        d._load_seen(state["seen"])
        for name, s in state["rules"].items():
            if name in d._by_name:
                d._by_name[name].load(s)
        return d
