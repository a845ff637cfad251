"""The resource predictor: recommendations of CPU, memory and execution time per philosophy (and
execution time per tool) from decaying histograms of the KPI windows, as the Kubernetes Vertical
Pod Autoscaler's recommender makes them for containers.

Why not the specification's mean x 1.2 (:class:`agentflux.runtime.resources.ResourcePredictor`):
agent usage is heavy-tailed (most runs small, a few huge). A mean is dragged up by the rare huge
run (it over-provisions every other run for the next 100) and still sits below the tail (on a
lognormal or Pareto tail, a fifth of the runs or more exceed it). A percentile of the history
ignores how huge the outliers are and only counts how often they happen, which is what a
provisioning target needs. The mean x 1.2 is still computed alongside, for comparison
(``mean_x_1_2`` of every prediction and :mod:`agentflux.bench.prediction`).

What is kept, per key (a philosophy, or a philosophy and a tool):

* a :class:`DecayingHistogram` per metric: exponential buckets (5 % apart by default), each
  sample weighted ``2 ** ((t - reference) / half_life)``, so a sample counts half as much as one a
  half-life newer (VPA: 24 h for CPU). The reference moves forward when weights grow large
  (VPA's trick: exponents stay below 2 ** 100, no overflow). Windows are added as whole sketches
  (:meth:`DecayingHistogram.add_sketch`: each DDSketch bin's value with its count), at the
  window's end time;
* the decayed mean of the samples, with the *same* weights as the histogram (the sketch's exact
  sum, decayed like its counts): the ``mean_x_1_2`` published alongside is the specification's
  formula over the same history as the recommendation, not over the last 100 samples;
* the samples seen and the span of history (first window start to latest window end), for the
  confidence.

A recommendation (VPA's ``logic/recommender.go`` and ``estimator.go``):

* ``target`` = p90 x (1 + margin), margin 0.25 (VPA's safety margin is 0.15: see
  :attr:`PredictorPolicy.margin` for why more);
* ``lower`` = p50 x (1 + margin) x ``(1 + lower_multiplier / d) ** lower_exponent`` (VPA: 0.001,
  -2), ``upper`` = p95 x (1 + margin) x ``(1 + upper_multiplier / d) ** upper_exponent`` (VPA:
  1, +1): the bounds widen for short histories. VPA's ``d`` is the history in days, which never
  reaches full confidence (a week of history still multiplies the upper bound by 1.14); here the
  published ``confidence`` ``c`` = min(1, history span / ``full_confidence_s``, samples /
  ``full_confidence_samples``) is in [0, 1] and ``d = c / (1 - c)``, so the factors are VPA's
  with that ``d``: 1 at full confidence, and with the default ``full_confidence_s`` of two days,
  one day of history gives ``d = 1``, VPA's factors for one day (upper x 2).

Percentiles are the upper edge of the bucket where the cumulative weight reaches ``q`` (VPA's
choice: at most one bucket, 5 %, above the true value, never below).

Inputs (:meth:`Predictor.observe`), rows of the KPI windows (:class:`~agentflux.streams.windows.
WindowRow` documents): ``dim: resource`` rows of ``resource.sample`` (``name`` = ``cpu_percent``,
``memory_mb``, ``execution_time_s``; the sketch holds that metric's values) per philosophy, and
``dim: name`` rows of ``tool.call`` (the sketch holds durations in ms) per philosophy and tool.
Pieces of one window (several partitions or revisions) are simply added. Rows without a
philosophy (process-wide samples) are not any philosophy's and are ignored.

Outputs (:meth:`Predictor.predictions`): one document per key, the format published to
``agentflux.predictions`` (compacted, key = the document's ``key``) and the history.

Pure: no Kafka, no clock (times are the rows' and the caller's ``now_ns``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping

import numpy as np

from agentflux.schemas.sketch import DDSketch

# VPA: the reference time moves forward when a new sample's factor would exceed 2 ** this
MAX_DECAY_EXPONENT = 100.0
# the metrics of a philosophy's prediction, and the resource row names they come from
METRICS = ("cpu_percent", "memory_mb", "execution_time_seconds")
RESOURCE_METRICS = {"cpu_percent": "cpu_percent", "memory_mb": "memory_mb",
                    "execution_time_s": "execution_time_seconds"}
TOOL_METRIC = "execution_time_seconds"
# the specification's buffer (runtime/resources.py BUFFER), for mean_x_1_2
SPEC_BUFFER = 1.2
# the confidence below which the bound factors stop growing (c = 0: one instant of history)
MIN_CONFIDENCE = 0.01
DOC_VERSION = 1


def _round(x: float | None, digits: int = 4) -> float | None:
    """``digits`` significant digits: small values (0.0042 s) keep theirs, large ones lose noise."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


class DecayingHistogram:
    """A histogram of positive values whose samples lose half their weight per ``half_life_s``
    (the VPA recommender's ``DecayingHistogram`` over its exponential ``HistogramOptions``).

    Buckets: bucket 0 holds values <= ``min_value``; bucket ``i`` holds
    ``(min_value * ratio ** (i - 1), min_value * ratio ** i]``; values above ``max_value`` go to
    the last bucket (VPA clamps the same way). With the defaults (1e-6 .. 1e7, 5 %) one grid of
    ~610 buckets serves percent, MB and seconds (a cached tool call's 0.2 ms included) alike.

    Weights are stored relative to ``reference_s``: a sample at time ``t`` adds
    ``weight * 2 ** ((t - reference_s) / half_life_s)``. Every percentile is a ratio of weights, so
    the reference does not matter; when a factor would exceed ``2 ** 100`` the reference moves to
    ``t`` and the stored weights are scaled down by the same factor. Times are seconds (floats).
    """

    __slots__ = ("half_life_s", "ratio", "min_value", "max_value", "_log_ratio", "weights",
                 "reference_s", "weighted_sum", "samples", "first_s", "last_s")

    def __init__(self, half_life_s: float = 86400.0, ratio: float = 1.05,
                 min_value: float = 1e-6, max_value: float = 1e7):
        if not half_life_s > 0:
            raise ValueError(f"half_life_s must be > 0, got {half_life_s!r}")
        if not ratio > 1:
            raise ValueError(f"ratio must be > 1, got {ratio!r}")
        if not 0 < min_value < max_value:
            raise ValueError(f"need 0 < min_value < max_value, got {min_value!r}, {max_value!r}")
        self.half_life_s = float(half_life_s)
        self.ratio = float(ratio)
        self.min_value = float(min_value)
        self.max_value = float(max_value)
        self._log_ratio = math.log(self.ratio)
        n = 1 + math.ceil(math.log(self.max_value / self.min_value) / self._log_ratio - 1e-9)
        self.weights = np.zeros(n, np.float64)
        self.reference_s: float | None = None
        self.weighted_sum = 0.0  # sum of value x weight, same frame as weights: the decayed mean
        self.samples = 0  # samples added (not decayed): the confidence's count
        self.first_s: float | None = None
        self.last_s: float | None = None

    # -- buckets ---------------------------------------------------------------------------
    @property
    def num_buckets(self) -> int:
        return len(self.weights)

    def bucket(self, values: np.ndarray | float) -> np.ndarray:
        """The bucket index of each value."""
        v = np.asarray(values, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            idx = np.ceil(np.log(np.maximum(v, self.min_value) / self.min_value)
                          / self._log_ratio - 1e-9)
        return np.clip(np.nan_to_num(idx, nan=0.0), 0, len(self.weights) - 1).astype(np.int64)

    def bucket_end(self, i: int) -> float:
        """The upper edge of bucket ``i`` (what :meth:`percentile` returns)."""
        return min(self.min_value * self.ratio ** i, self.max_value)

    # -- decay -----------------------------------------------------------------------------
    def _factor(self, t_s: float) -> float:
        """The weight factor of a sample at ``t_s``, moving the reference forward first if the
        factor would grow past ``2 ** MAX_DECAY_EXPONENT``."""
        if self.reference_s is None:
            self.reference_s = float(t_s)
        exponent = (t_s - self.reference_s) / self.half_life_s
        if exponent > MAX_DECAY_EXPONENT:
            self._shift_reference(float(t_s))
            exponent = 0.0
        return 2.0 ** exponent

    def _shift_reference(self, new_reference_s: float) -> None:
        scale = 2.0 ** ((self.reference_s - new_reference_s) / self.half_life_s)
        self.weights *= scale
        self.weighted_sum *= scale
        self.reference_s = new_reference_s

    def _seen(self, t_s: float, n: int) -> None:
        self.samples += n
        self.first_s = t_s if self.first_s is None else min(self.first_s, t_s)
        self.last_s = t_s if self.last_s is None else max(self.last_s, t_s)

    # -- adding ----------------------------------------------------------------------------
    def add(self, value: float, weight: float = 1.0, t_s: float = 0.0) -> None:
        """One sample of ``value`` with ``weight`` at time ``t_s``."""
        if not weight > 0 or not math.isfinite(value):
            return
        f = weight * self._factor(t_s)
        self.weights[int(self.bucket(value))] += f
        self.weighted_sum += max(value, 0.0) * f
        self._seen(t_s, 1)

    def add_many(self, values: Iterable[float] | np.ndarray, t_s: float,
                 weights: np.ndarray | None = None) -> None:
        """Samples at one time, vectorised (one ``np.add.at``)."""
        v = np.asarray(values, np.float64).ravel()
        w = np.ones(v.size) if weights is None else np.asarray(weights, np.float64).ravel()
        ok = np.isfinite(v) & (w > 0)
        v, w = v[ok], w[ok]
        if not v.size:
            return
        f = self._factor(t_s)
        np.add.at(self.weights, self.bucket(v), w * f)
        self.weighted_sum += float(np.maximum(v, 0.0) @ w) * f
        self._seen(t_s, int(v.size))

    def add_sketch(self, sketch: Mapping | DDSketch, t_s: float, scale: float = 1.0) -> None:
        """A window's DDSketch (its ``to_dict`` form, or the object) at time ``t_s``: each bin's
        representative value (``2 gamma^k / (gamma + 1)``, clipped to the sketch's min and max as
        :meth:`DDSketch.quantile` does) with the bin's count, zeros at 0; values multiplied by
        ``scale`` (ms -> s: 1e-3). The mean takes the sketch's exact sum."""
        s = sketch if isinstance(sketch, DDSketch) else DDSketch.from_dict(sketch)
        if not s.count:
            return
        keys = np.fromiter(s.bins.keys(), np.float64, len(s.bins))
        counts = np.fromiter(s.bins.values(), np.float64, len(s.bins))
        values = 2.0 * s.gamma ** keys / (s.gamma + 1.0)
        if math.isfinite(s.min) and math.isfinite(s.max):
            values = np.clip(values, s.min, s.max)
        if s.zero:
            values = np.append(values, 0.0)
            counts = np.append(counts, float(s.zero))
        values = values * scale
        f = self._factor(t_s)
        np.add.at(self.weights, self.bucket(values), counts * f)
        self.weighted_sum += max(s.sum, 0.0) * scale * f
        self._seen(t_s, int(s.count))

    def merge(self, other: "DecayingHistogram") -> None:
        """Add ``other``'s samples (same grid and half-life), as if they had been added here."""
        if (other.half_life_s, other.ratio, other.min_value, other.max_value) != (
                self.half_life_s, self.ratio, self.min_value, self.max_value):
            raise ValueError("cannot merge decaying histograms with different half-life or buckets")
        if other.reference_s is None:
            return
        if self.reference_s is None:
            self.reference_s = other.reference_s
        elif other.reference_s > self.reference_s:
            self._shift_reference(other.reference_s)
        scale = 2.0 ** ((other.reference_s - self.reference_s) / self.half_life_s)
        self.weights += other.weights * scale
        self.weighted_sum += other.weighted_sum * scale
        self.samples += other.samples
        for t in (other.first_s, other.last_s):
            if t is not None:
                self.first_s = t if self.first_s is None else min(self.first_s, t)
                self.last_s = t if self.last_s is None else max(self.last_s, t)

    # -- reading ---------------------------------------------------------------------------
    def is_empty(self) -> bool:
        return not self.weights.any()

    def total_weight(self, t_s: float | None = None) -> float:
        """The decayed weight of all samples as seen at ``t_s`` (default: the latest sample's
        time): a weight-1 sample counts 1 at its own time, 0.5 a half-life later."""
        if self.reference_s is None:
            return 0.0
        t = self.last_s if t_s is None else t_s
        return float(self.weights.sum()) * 2.0 ** ((self.reference_s - t) / self.half_life_s)

    def percentile(self, q: float) -> float | None:
        """The upper edge of the first bucket where the cumulative weight reaches ``q`` of the
        total (VPA's ``Percentile``); None when empty."""
        if not 0 <= q <= 1:
            raise ValueError(f"percentile must be in [0, 1], got {q!r}")
        cum = np.cumsum(self.weights)
        total = cum[-1]
        if not total > 0:
            return None
        threshold = max(q * total * (1 - 1e-12), total * 1e-300)
        i = int(np.searchsorted(cum, threshold, side="left"))
        return self.bucket_end(min(i, len(cum) - 1))

    def mean(self) -> float | None:
        """The decayed mean of the samples (same weights as the buckets); None when empty."""
        total = float(self.weights.sum())
        return self.weighted_sum / total if total > 0 else None

    # -- state -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-friendly state (non-empty buckets only)."""
        nz = np.flatnonzero(self.weights)
        return {"half_life_s": self.half_life_s, "ratio": self.ratio,
                "min_value": self.min_value, "max_value": self.max_value,
                "reference_s": self.reference_s, "buckets": nz.tolist(),
                "weights": self.weights[nz].tolist(), "weighted_sum": self.weighted_sum,
                "samples": self.samples, "first_s": self.first_s, "last_s": self.last_s}

    @classmethod
    def from_dict(cls, d: Mapping) -> "DecayingHistogram":
        h = cls(d["half_life_s"], d["ratio"], d["min_value"], d["max_value"])
        h.reference_s = d["reference_s"]
        if d["buckets"]:
            h.weights[np.asarray(d["buckets"], np.int64)] = np.asarray(d["weights"], np.float64)
        h.weighted_sum = float(d["weighted_sum"])
        h.samples = int(d["samples"])
        h.first_s, h.last_s = d["first_s"], d["last_s"]
        return h


@dataclass(frozen=True)
class PredictorPolicy:
    """The predictor's settings: the YAML section ``predictor:`` (:meth:`from_dict`). Defaults
    are VPA's where VPA has one (half-life 24 h, p90 / p50 / p95, confidence multipliers 1, +1 and
    0.001, -2, 5 % buckets), except the margin (0.25, VPA's 0.15: see :attr:`margin`)."""

    #: a sample counts half as much as one this much newer (VPA: 24 h for CPU and memory)
    half_life_s: float = 86400.0
    target_percentile: float = 0.9
    lower_percentile: float = 0.5
    upper_percentile: float = 0.95
    #: safety margin, a fraction added to every percentile. VPA uses 0.15; 0.25 here because
    #: :mod:`agentflux.bench.prediction` shows p90 + 15 % under-provisioning 5.4-5.7 % of runs
    #: of the outlier shape when usage steps up 3x mid-way (the issue's bound is 5 %), p90 + 25 %
    #: 4.2-4.3 %, for 8 points more reserve (0.38 instead of 0.30; seeds 0-2)
    margin: float = 0.25
    #: history span for full confidence (confidence 0.5 = VPA's one day of history by default)
    full_confidence_s: float = 2 * 86400.0
    #: samples for full confidence (the specification's ResourcePredictor: 100)
    full_confidence_samples: int = 100
    upper_multiplier: float = 1.0
    upper_exponent: float = 1.0
    lower_multiplier: float = 0.001
    lower_exponent: float = -2.0
    #: histogram buckets: ratio between bucket edges, and the range covered
    bucket_ratio: float = 1.05
    min_value: float = 1e-6
    max_value: float = 1e7
    #: :meth:`Predictor.predictions` with ``only_changed``: a key is issued again when a value
    #: moved by more than this fraction, or after ``publish_every_s`` anyway
    publish_change: float = 0.05
    publish_every_s: float = 300.0
    #: a key that received nothing for this long is dropped
    forget_after_s: float = 30 * 86400.0

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"predictor.{key}: {why}, got {getattr(self, key)!r}")

        for key in ("half_life_s", "full_confidence_s", "min_value", "max_value",
                    "publish_every_s", "forget_after_s"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 \
                    or not math.isfinite(v):
                raise bad(key, "must be a positive number of "
                          + ("seconds" if key.endswith("_s") else "the metric's unit"))
        for key in ("target_percentile", "lower_percentile", "upper_percentile"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                raise bad(key, "must be a fraction between 0 and 1 exclusive (0.9 for p90)")
        if not self.lower_percentile <= self.target_percentile <= self.upper_percentile:
            raise ValueError(
                "predictor: need lower_percentile <= target_percentile <= upper_percentile, got "
                f"{self.lower_percentile}, {self.target_percentile}, {self.upper_percentile}")
        for key in ("margin", "publish_change", "upper_multiplier", "lower_multiplier"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 100 \
                    or not math.isfinite(v):
                raise bad(key, "must be a non-negative fraction (0.15 for 15 %)")
        for key in ("upper_exponent", "lower_exponent"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad(key, "must be a number")
        if self.upper_exponent < 0:
            raise bad("upper_exponent", "must be >= 0 (a negative one would narrow the upper "
                      "bound for short histories)")
        if self.lower_exponent > 0:
            raise bad("lower_exponent", "must be <= 0 (a positive one would raise the lower "
                      "bound for short histories)")
        v = self.full_confidence_samples
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise bad("full_confidence_samples", "must be a whole number >= 1")
        v = self.bucket_ratio
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 < v <= 2:
            raise bad("bucket_ratio", "must be in (1, 2]: 1.05 for buckets 5 % apart")
        if not self.min_value < self.max_value:
            raise ValueError(f"predictor: min_value must be below max_value, got "
                             f"{self.min_value} and {self.max_value}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "PredictorPolicy":
        """From the YAML section ``predictor:`` (None or {} -> the defaults). Unknown keys are
        errors (a typo would otherwise silently keep a default)."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ValueError(f"predictor: must be a mapping of settings, got {type(d).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"predictor: unknown key(s) {', '.join(map(str, unknown))}; "
                             f"known keys: {', '.join(known)}")
        kwargs: dict[str, Any] = {}
        for k, v in d.items():
            if known[k].type in ("float", float) and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if isinstance(v, str):
                raise ValueError(f"predictor.{k}: must be a number, got the string {v!r} "
                                 "(remove the quotes)")
            kwargs[k] = v
        return cls(**kwargs)

    def histogram(self) -> DecayingHistogram:
        return DecayingHistogram(self.half_life_s, self.bucket_ratio, self.min_value,
                                 self.max_value)

    def bound_factors(self, confidence: float) -> tuple[float, float]:
        """(lower, upper) multipliers of the bounds at ``confidence`` (see the module's
        docstring: VPA's ``(1 + m / d) ** e`` with ``d = c / (1 - c)``)."""
        c = min(max(confidence, MIN_CONFIDENCE), 1.0)
        inv_d = (1.0 - c) / c
        return ((1.0 + self.lower_multiplier * inv_d) ** self.lower_exponent,
                (1.0 + self.upper_multiplier * inv_d) ** self.upper_exponent)


class _Key:
    """What is kept per prediction key."""

    __slots__ = ("philosophy", "tool", "hists", "first_ns", "as_of_ns", "issued", "issued_ns")

    def __init__(self, philosophy: str, tool: str | None):
        self.philosophy = philosophy
        self.tool = tool
        self.hists: dict[str, DecayingHistogram] = {}
        self.first_ns: int | None = None
        self.as_of_ns = 0
        self.issued: dict | None = None  # the recommendation last issued
        self.issued_ns: int | None = None

    @property
    def key(self) -> str:
        return self.philosophy if self.tool is None else f"{self.philosophy}/{self.tool}"

    @property
    def metrics(self) -> tuple[str, ...]:
        return METRICS if self.tool is None else (TOOL_METRIC,)


class Predictor:
    """Decaying histograms per philosophy (CPU, memory, execution time) and per philosophy and
    tool (execution time), fed with KPI rows (:meth:`observe`), read as prediction documents
    (:meth:`predictions`). See the module's docstring."""

    def __init__(self, policy: PredictorPolicy | None = None):
        self.policy = policy or PredictorPolicy()
        self._keys: dict[tuple[str, str | None], _Key] = {}
        self.rows_used = 0
        self.rows_malformed = 0

    # -- input -----------------------------------------------------------------------------
    def observe(self, doc: Mapping) -> bool:
        """Add one KPI row document; True if it fed a histogram. Rows of other dimensions and
        types, progress documents, rows without a philosophy or with an empty sketch are
        ignored; a relevant row that cannot be read is counted in ``rows_malformed`` (the
        worker's loop must not stop on one)."""
        if doc.get("kind") != "kpi":
            return False
        dim, type_, name = doc.get("dim"), doc.get("type"), doc.get("name")
        if dim == "resource" and type_ == "resource.sample" and name in RESOURCE_METRICS:
            tool, metric, scale = None, RESOURCE_METRICS[name], 1.0
        elif dim == "name" and type_ == "tool.call" and name:
            tool, metric, scale = str(name), TOOL_METRIC, 1e-3  # durations are in ms
        else:
            return False
        philosophy = doc.get("philosophy")
        sketch = doc.get("sketch")
        if not philosophy or not sketch:
            return False
        if not isinstance(philosophy, str) or not isinstance(sketch, Mapping):
            self.rows_malformed += 1
            return False
        if not sketch.get("count"):
            return False
        try:
            start_ns, end_ns = int(doc["window_start_ns"]), int(doc["window_end_ns"])
            parsed = DDSketch.from_dict(sketch)
        except (KeyError, TypeError, ValueError, AttributeError):
            self.rows_malformed += 1
            return False
        k = self._keys.get((philosophy, tool))
        if k is None:
            k = self._keys[(philosophy, tool)] = _Key(philosophy, tool)
        h = k.hists.get(metric)
        if h is None:
            h = k.hists[metric] = self.policy.histogram()
        h.add_sketch(parsed, end_ns / 1e9, scale)
        k.first_ns = start_ns if k.first_ns is None else min(k.first_ns, start_ns)
        k.as_of_ns = max(k.as_of_ns, end_ns)
        self.rows_used += 1
        return True

    def observe_many(self, docs: Iterable[Mapping]) -> int:
        return sum(self.observe(d) for d in docs)

    # -- output ----------------------------------------------------------------------------
    def confidence(self, philosophy: str, tool: str | None = None) -> float:
        k = self._keys.get((philosophy, tool))
        return self._confidence(k) if k is not None else 0.0

    def _confidence(self, k: _Key) -> float:
        p = self.policy
        span_s = (k.as_of_ns - (k.as_of_ns if k.first_ns is None else k.first_ns)) / 1e9
        samples = max((h.samples for h in k.hists.values()), default=0)
        return max(0.0, min(1.0, span_s / p.full_confidence_s,
                            samples / p.full_confidence_samples))

    def recommend(self, philosophy: str, tool: str | None = None) -> dict[str, dict | None]:
        """Unrounded ``{metric: {"target", "lower", "upper", "mean_x_1_2"}}`` (None for a metric
        without samples) of one key; empty if the key is unknown."""
        k = self._keys.get((philosophy, tool))
        return self._recommend(k, self._confidence(k)) if k is not None else {}

    def _recommend(self, k: _Key, confidence: float) -> dict[str, dict | None]:
        p = self.policy
        lo_f, up_f = p.bound_factors(confidence)
        m = 1.0 + p.margin
        out: dict[str, dict | None] = {}
        for metric in k.metrics:
            h = k.hists.get(metric)
            if h is None or h.is_empty():
                out[metric] = None
                continue
            out[metric] = {"target": h.percentile(p.target_percentile) * m,
                           "lower": h.percentile(p.lower_percentile) * m * lo_f,
                           "upper": h.percentile(p.upper_percentile) * m * up_f,
                           "mean_x_1_2": h.mean() * SPEC_BUFFER}
        return out

    def _changed(self, k: _Key, rec: dict, now_ns: int) -> bool:
        p = self.policy
        if k.issued is None or k.issued_ns is None:
            return True
        if now_ns - k.issued_ns >= p.publish_every_s * 1e9:
            return True
        for metric, r in rec.items():
            old = k.issued.get(metric)
            if (r is None) != (old is None):
                return True
            if r is None:
                continue
            for f in ("target", "lower", "upper"):
                a, b = r[f], old[f]
                if abs(a - b) > p.publish_change * max(abs(b), 1e-12):
                    return True
        return False

    def predictions(self, now_ns: int, issuer: str = "", only_changed: bool = False) -> list[dict]:
        """A prediction document per key with samples, sorted by key::

            {"v": 1, "key": "react" | "react/search", "philosophy": "react",
             "tool": None | "search", "issued_at_ns": now_ns, "as_of_ns": latest window end,
             "half_life_s", "samples" (samples seen, not decayed), "weight" (their decayed
             weight at now_ns, the largest over the key's metrics), "confidence": 0..1,
             "recommendation": {metric: {"target", "lower", "upper"} | None},
             "mean_x_1_2": {metric: float | None}, "issuer": issuer}

        Metrics: ``cpu_percent``, ``memory_mb``, ``execution_time_seconds`` for a philosophy,
        only ``execution_time_seconds`` for a tool; None for a metric without samples. Values
        have 4 significant digits. With ``only_changed``, only keys never issued, issued more
        than ``publish_every_s`` ago, or whose target or a bound moved by more than
        ``publish_change`` (relative) since last issued. Every document returned counts as
        issued (the caller publishes what it gets). Keys idle for ``forget_after_s`` are
        dropped."""
        p = self.policy
        out = []
        for kk in sorted(self._keys, key=lambda x: (x[0], x[1] or "")):
            k = self._keys[kk]
            if now_ns - k.as_of_ns > p.forget_after_s * 1e9:
                del self._keys[kk]
                continue
            if not any(not h.is_empty() for h in k.hists.values()):
                continue
            conf = self._confidence(k)
            rec = self._recommend(k, conf)
            if only_changed and not self._changed(k, rec, now_ns):
                continue
            k.issued, k.issued_ns = rec, now_ns
            now_s = now_ns / 1e9
            out.append({
                "v": DOC_VERSION, "key": k.key, "philosophy": k.philosophy, "tool": k.tool,
                "issued_at_ns": int(now_ns), "as_of_ns": int(k.as_of_ns),
                "half_life_s": p.half_life_s,
                "samples": max(h.samples for h in k.hists.values()),
                "weight": _round(max(h.total_weight(now_s) for h in k.hists.values())),
                "confidence": _round(conf),
                "recommendation": {m: None if r is None else
                                   {f: _round(r[f]) for f in ("target", "lower", "upper")}
                                   for m, r in rec.items()},
                "mean_x_1_2": {m: None if r is None else _round(r["mean_x_1_2"])
                               for m, r in rec.items()},
                "issuer": issuer})
        return out

    def keys(self) -> list[str]:
        return sorted(k.key for k in self._keys.values())

    def as_of_ns(self) -> int | None:
        """The latest window end seen over every key (None: nothing seen)."""
        ends = [k.as_of_ns for k in self._keys.values() if k.as_of_ns]
        return max(ends) if ends else None

    # -- state -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The histograms and history of every key (JSON-friendly), to store and restore
        (:meth:`from_dict`) across restarts; what was last issued is not kept (a restarted
        predictor issues every key once)."""
        return {"v": DOC_VERSION, "keys": [
            {"philosophy": k.philosophy, "tool": k.tool, "first_ns": k.first_ns,
             "as_of_ns": k.as_of_ns, "hists": {m: h.to_dict() for m, h in k.hists.items()}}
            for k in self._keys.values()]}

    @classmethod
    def from_dict(cls, d: Mapping, policy: PredictorPolicy | None = None) -> "Predictor":
        """State from :meth:`to_dict`. Histograms keep the half-life and buckets they were built
        with; a policy with others applies to keys created from then on."""
        out = cls(policy)
        for kd in d["keys"]:
            k = _Key(kd["philosophy"], kd["tool"])
            k.first_ns, k.as_of_ns = kd["first_ns"], kd["as_of_ns"]
            k.hists = {m: DecayingHistogram.from_dict(h) for m, h in kd["hists"].items()}
            out._keys[(k.philosophy, k.tool)] = k
        return out
