"""Can a model learned from the development sets rank a document's units better? (issue 13)

An experiment, not a feature: it is not installed with agentflux, no test runs it, and its
result (below) is why the compressor keeps its hand-set values. It reads, for every unit the
compressor is about to pack, 19 features the compressor already has or can count (its value,
the value before relevance, its BM25 relevance, whether it is protected, repeats a template, is
outline or filler, its length, position and dependencies, how many of the question's terms it
holds, whether it holds a digit or a ``key: value``, its value's and relevance's rank in the
document, the budget against the document's size), labels it by whether it holds one of the
document's must-keep facts, and fits a logistic regression (Newton's method, L2, the two classes
weighted equally) on two of the three development sets to rank the units of the third
(leave one set out), then counts the facts kept as ``agentflux bench runtime`` counts them
(``bench/compression.py``'s ``evaluate``: the real compressor, only its ``pack`` wrapped)::

    .venv/bin/python bench/experiments/learned_rerank.py --mode mult --alpha 0.5

Modes, with ``p`` the model's probability that a unit holds a fact and ``v`` its value:

- ``replace``: ``p`` is the value (units the compressor values 0 only when ``p`` > 0.5);
- ``blend``: ``(1 - alpha) * v + alpha * p``;
- ``mult``: ``v * (0.5 + p) ** alpha`` (the compressor's order, nudged).

Results on 2026-11-28 (the compressor of ``06342b9``; 3 minutes a run), facts kept at 2,000
and 1,000 tokens summed over the development, first held-out and structured sets (509 facts per
target), each set ranked by a model fitted on the other two:

=====================  ============================
variant                facts (of 1,018)
=====================  ============================
the compressor         793
replace                648
blend, alpha 0.5       777
mult, alpha 0.5        791 (405, 253, 133 against 410, 252, 131)
mult, alpha 1          788
mult, alpha 2          786
=====================  ============================

A pairwise (RankNet-style) linear model over the same features, tried in a scratch copy, kept
700. The facts' lines are few (1,580 of the 106,700 units packed at both targets) and the
features are the compressor's own judgements: a model of them learns the compressor back, and
what it misses (a line that answers in other words) is in no feature.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agentflux.bench import compression  # noqa: E402
from agentflux.runtime import compress as C  # noqa: E402
from agentflux.runtime.relevance import query_weights, terms  # noqa: E402

SETS = {"development": compression.DATA, "holdout": compression.HOLDOUT,
        "structured": compression.STRUCTURED}
_DIGIT = re.compile(r"\d")
_KEYED = re.compile(r"[:=]\s*\S")


def features(units: list, rel: list[float], budget: int, asked: set[str]) -> np.ndarray:
    n = len(units)
    vals = np.array([u.value for u in units], float)
    rels = np.array([rel[k] if k < len(rel) else 0.0 for k in range(n)], float)
    vrank = 1 - np.argsort(np.argsort(-vals)) / max(n - 1, 1)
    rrank = 1 - np.argsort(np.argsort(-rels)) / max(n - 1, 1)
    size = sum(len(u.text) for u in units) or 1
    x = np.zeros((n, 20))
    for k, u in enumerate(units):
        held = len(set(terms(u.text[:4000])) & asked)
        x[k] = [u.value, math.log1p(max(u.value, 0.0)), u.base, rels[k], max(rels[k], 0.0) ** 2,
                u.critical, u.similar, u.outline, u.filler, math.log1p(len(u.text)),
                k / max(n - 1, 1), min(held, 6) / 6, held / max(len(asked), 1),
                bool(_DIGIT.search(u.text)), bool(_KEYED.search(u.text)), vrank[k], rrank[k],
                min(len(u.deps), 5) / 5, budget * 4 / size, 1.0]
    return x


def labels(units: list, facts: list[str]) -> np.ndarray:
    """1 for a unit holding a fact (or held by one: a fact may span a unit's line)."""
    return np.array([float(any(f in u.text or (len(u.text.strip()) >= 12
                                               and u.text.strip() in f) for f in facts))
                     for u in units])


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> dict[str, Any]:
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    z[:, -1] = 1.0
    w = np.zeros(x.shape[1])
    pos = y.sum()
    weight = np.where(y > 0, len(y) / (2 * pos), len(y) / (2 * (len(y) - pos)))
    for _ in range(100):
        p = 1 / (1 + np.exp(-(z @ w)))
        grad = z.T @ (weight * (p - y)) / len(y) + l2 * w / len(y)
        hess = (z * (weight * p * (1 - p))[:, None]).T @ z / len(y) + l2 * np.eye(len(w)) / len(y)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return {"w": w, "mu": mu, "sd": sd}


class Packing:
    """``pack`` wrapped: records each call's features and labels, or re-values the units."""

    def __init__(self) -> None:
        self.original = C.pack
        self.query: set[str] = set()
        self.facts: list[str] = []
        self.rows: list[tuple[np.ndarray, np.ndarray]] = []
        self.model: dict[str, Any] | None = None
        self.mode, self.alpha = "mult", 0.5

    def __call__(self, units, rel, budget, *args, **kwargs):
        if not self.query:  # the bench's runs without the question: left as they are
            return self.original(units, rel, budget, *args, **kwargs)
        x = features(units, rel, budget, self.query)
        if self.model is None:
            self.rows.append((x, labels(units, self.facts)))
        else:
            z = (x - self.model["mu"]) / self.model["sd"]
            z[:, -1] = 1.0
            p = 1 / (1 + np.exp(-(z @ self.model["w"])))
            for k, u in enumerate(units):
                if self.mode == "mult":
                    u.value = u.value * (0.5 + p[k]) ** self.alpha if u.value > 0 else 0.0
                elif u.value > 0 or p[k] > 0.5:
                    a = 1.0 if self.mode == "replace" else self.alpha
                    u.value = (1 - a) * u.value + a * float(p[k])
        return self.original(units, rel, budget, *args, **kwargs)


def run(packing: Packing, root: Path) -> int:
    """Facts kept at both targets on one set, as the bench counts them."""
    facts = {d["text"]: d["must_keep"] for d in compression.load(root)}
    compress = C.ContextCompressor.compress

    def noting(self, text, query="", *args, **kwargs):  # the document: its question, facts
        packing.query = {t for t, w in query_weights(query).items() if w > 0}
        packing.facts = facts.get(text, [])
        return compress(self, text, query, *args, **kwargs)
    C.ContextCompressor.compress, C.pack = noting, packing
    try:
        result = compression.evaluate(root=root)
    finally:
        C.ContextCompressor.compress, C.pack = compress, packing.original
    return sum(sum(int(d["kept"].split("/")[0]) for d in t["documents"])
               for t in result["targets"].values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("replace", "blend", "mult"), default="mult")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--l2", type=float, default=1.0)
    args = ap.parse_args()
    rows: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    base: dict[str, int] = {}
    for name, root in SETS.items():  # the compressor as it is, recording what it packs
        packing = Packing()
        base[name] = run(packing, root)
        rows[name] = packing.rows
    total = 0
    for name, root in SETS.items():
        train = [r for other, rs in rows.items() if other != name for r in rs]
        packing = Packing()
        packing.model = fit(np.vstack([x for x, _ in train]), np.concatenate([y for _, y in train]),
                            args.l2)
        packing.mode, packing.alpha = args.mode, args.alpha
        kept = run(packing, root)
        total += kept
        print(f"{name}: {base[name]} -> {kept} facts (2,000 and 1,000 tokens)")
    print(f"all three: {sum(base.values())} -> {total}")


if __name__ == "__main__":
    main()
