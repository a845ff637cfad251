"""A mergeable quantile sketch with relative-accuracy guarantees (DDSketch, Masson et al. 2019). It
lives with the schemas because its serialised form is part of the wire: KPI rows carry it, and the
runtime (the emitter's ack latencies) and the worker (the windows) both use it.

Values are mapped to logarithmic buckets ``ceil(log_gamma(x))`` with ``gamma = (1+a)/(1-a)``, so any
quantile estimate is within a relative error ``a`` (default 1 %) of the exact value at that rank
(numpy's ``method="lower"``). Two sketches merge by adding bucket counts, so windows computed on
different partitions or workers combine exactly as if one sketch had seen every value.
Batches are inserted with numpy (one ``log`` and one ``unique`` per batch, not per value).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np

DEFAULT_ACCURACY = 0.01
# Values at or below this are counted in the zero bucket (durations of 0 ms are real).
MIN_POSITIVE = 1e-9


class DDSketch:
    __slots__ = ("alpha", "gamma", "_inv_log_gamma", "bins", "zero", "count", "sum", "min", "max")

    def __init__(self, relative_accuracy: float = DEFAULT_ACCURACY):
        if not 0 < relative_accuracy < 1:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy!r}")
        self.alpha = relative_accuracy
        self.gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._inv_log_gamma = 1.0 / math.log(self.gamma)
        self.bins: dict[int, int] = {}
        self.zero = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value <= MIN_POSITIVE:
            self.zero += 1
        else:
            k = math.ceil(math.log(value) * self._inv_log_gamma)
            self.bins[k] = self.bins.get(k, 0) + 1

    def add_many(self, values: Iterable[float] | np.ndarray) -> None:
        if type(values) is list and len(values) < 48:  # numpy's fixed cost loses on small lists
            for v in values:
                self.add(v)
            return
        arr = np.asarray(values, dtype=np.float64)
        add_grouped([self], arr, np.zeros(arr.size, np.int64))

    def merge(self, other: "DDSketch") -> None:
        if other.gamma != self.gamma:
            raise ValueError("cannot merge sketches with different relative accuracy")
        for k, c in other.bins.items():
            self.bins[k] = self.bins.get(k, 0) + c
        self.zero += other.zero
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        """The value at rank ``floor(q * (count - 1))``, within relative accuracy; None if empty."""
        if not 0 <= q <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        if self.count == 0:
            return None
        rank = math.floor(q * (self.count - 1))
        if rank < self.zero:
            return 0.0 if self.min >= 0 else self.min
        seen = self.zero
        for k in sorted(self.bins):
            seen += self.bins[k]
            if seen > rank:
                est = 2 * self.gamma ** k / (self.gamma + 1)
                return min(max(est, self.min), self.max)
        return self.max

    def to_dict(self) -> dict:
        """A JSON-friendly form, so KPI rows carry mergeable state."""
        return {"alpha": self.alpha, "zero": self.zero, "count": self.count, "sum": self.sum,
                "min": self.min if self.count else None, "max": self.max if self.count else None,
                "bins": {str(k): c for k, c in self.bins.items()}}

    def to_state(self) -> list:
        """A compact form for stored state (:meth:`from_state`): no string keys to build."""
        return [self.alpha, self.zero, self.count, self.sum, self.min if self.count else None,
                self.max if self.count else None, list(self.bins), list(self.bins.values())]

    @classmethod
    def from_state(cls, s: list) -> "DDSketch":
        alpha, zero, count, total, lo, hi, keys, counts = s
        out = cls(alpha)
        out.zero, out.count, out.sum = zero, count, total
        out.min = lo if lo is not None else math.inf
        out.max = hi if hi is not None else -math.inf
        out.bins = dict(zip(keys, counts))
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> "DDSketch":
        s = cls(d["alpha"])
        s.zero, s.count, s.sum = d["zero"], d["count"], d["sum"]
        s.min = d["min"] if d["min"] is not None else math.inf
        s.max = d["max"] if d["max"] is not None else -math.inf
        s.bins = {int(k): c for k, c in d["bins"].items()}
        return s


def add_grouped(sketches: list[DDSketch], values: np.ndarray, groups: np.ndarray) -> None:
    """``sketches[g].add_many(values[groups == g])`` for every g at once: one ``log`` and one
    sort for all of them (a frame's windows each get a few values; numpy's fixed cost per call
    made per-window inserts the windows' largest cost). ``groups`` must be sorted, and every
    sketch of the same relative accuracy."""
    if not len(values):
        return
    values = np.asarray(values, np.float64)
    firsts = np.flatnonzero(np.concatenate(([True], groups[1:] != groups[:-1])))
    gs = groups[firsts].tolist()
    counts = np.diff(np.append(firsts, len(values))).tolist()
    sums = np.add.reduceat(values, firsts).tolist()
    mins = np.minimum.reduceat(values, firsts).tolist()
    maxes = np.maximum.reduceat(values, firsts).tolist()
    pos = values > MIN_POSITIVE
    zeros = np.add.reduceat((~pos).astype(np.int64), firsts).tolist()
    for g, n, s, lo, hi, z in zip(gs, counts, sums, mins, maxes, zeros):
        sk = sketches[g]
        sk.count += n
        sk.sum += s
        if lo < sk.min:
            sk.min = lo
        if hi > sk.max:
            sk.max = hi
        sk.zero += z
    if not pos.any():
        return
    keys = np.ceil(np.log(values[pos]) * sketches[int(groups[0])]._inv_log_gamma).astype(np.int64)
    g = groups[pos]
    order = np.lexsort((keys, g))
    keys, g = keys[order], g[order]
    run = np.flatnonzero(np.concatenate(([True], (g[1:] != g[:-1]) | (keys[1:] != keys[:-1]))))
    runs = np.diff(np.append(run, len(keys))).tolist()
    for gi, k, c in zip(g[run].tolist(), keys[run].tolist(), runs):
        bins = sketches[gi].bins
        bins[k] = bins.get(k, 0) + c
