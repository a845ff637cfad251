"""A corpus of realistic tool outputs (~5,000 tokens each) with the facts that must survive
compression: marked key facts (answers to the query), error lines and file paths.

Deterministic for a seed. Used by the compressor's tests and ``agentflux bench runtime``. The log
kind, ``Sample`` and ``grow_lines`` live in :mod:`agentflux.runtime.tool_output`, because the agent
simulator uses them and the runtime does not import benchmarks.
"""

from __future__ import annotations

import json
import random

from agentflux.runtime.tokens import count_tokens
from agentflux.runtime.tool_output import Sample, grow_lines, log_sample


def search_sample(rng: random.Random, tokens: int = 5000) -> Sample:
    topics = ["pagination", "webhooks", "authentication", "SDK installation", "error codes",
              "sandbox accounts", "idempotency keys", "batch exports", "currency conversion"]
    filler = ("This page explains configuration options, examples in several languages, and the "
              "changes made in recent releases, with links to related guides and the changelog.")
    facts = ["The Orders API rate limit is 600 requests per minute per API key.",
             "Exceeding the Orders API rate limit returns HTTP 429 with a Retry-After header."]

    def result(i: int) -> str:
        t = rng.choice(topics)
        return (f"{i + 1}. {t.title()} guide, part {rng.randint(1, 9)}\n"
                f"   https://docs.example.com/guides/{t.replace(' ', '-')}-{i}.html\n"
                f"   {filler} Section {rng.randint(1, 40)} covers {t} for version {rng.randint(1, 5)}.x.")

    blocks = grow_lines(result, tokens - 150)
    blocks.insert(len(blocks) // 3, f"{len(blocks) + 1}. Orders API rate limits\n"
                  f"   https://docs.example.com/api/orders/limits.html\n   {facts[0]} {facts[1]}")
    return Sample("search", "what are the rate limits of the Orders API", "\n".join(blocks), facts)


def code_sample(rng: random.Random, tokens: int = 5000) -> Sample:
    names = ["normalize", "merge", "render", "validate", "schedule", "encode", "decode", "retry",
             "flush", "compact", "resolve", "expand"]

    def func(i: int) -> str:
        n = f"{rng.choice(names)}_{rng.choice(['items', 'rows', 'events', 'nodes'])}_{i}"
        body = "\n".join(f"    value_{k} = helper_{k}(data, limit={rng.randint(1, 99)})"
                         for k in range(rng.randint(4, 9)))
        return f"def {n}(data, limit=10):\n    \"\"\"{n.replace('_', ' ')}.\"\"\"\n{body}\n    return data\n"

    funcs = grow_lines(func, tokens - 200)
    facts = ["def load_config(path: str) -> Config:",
             'raise ConfigError(f"config file {path} not found")']
    target = (f"{facts[0]}\n    \"\"\"Read the YAML config at path.\"\"\"\n"
              f"    if not os.path.exists(path):\n        {facts[1]}\n"
              f"    with open(path) as fh:\n        return Config(**yaml.safe_load(fh))\n")
    funcs.insert(len(funcs) // 2, target)
    text = "# src/service/config_loader.py\nimport os\nimport yaml\n\n" + "\n".join(funcs)
    return Sample("code", "where does load_config raise when the config file is missing",
                  text, facts, [], ["src/service/config_loader.py"])


def json_sample(rng: random.Random, tokens: int = 5000) -> Sample:
    orders = []
    statuses = ["paid", "shipped", "delivered", "pending"]
    while count_tokens(json.dumps(orders, indent=2)) < tokens - 120:
        oid = f"ord-{rng.randint(10000, 99999)}"
        orders.append({"id": oid, "status": rng.choice(statuses),
                       "amount": round(rng.uniform(5, 900), 2), "currency": "EUR",
                       "customer": {"id": f"cus-{rng.randint(1000, 9999)}", "tier": rng.choice(["free", "pro"])},
                       "items": rng.randint(1, 6)})
    target = {"id": "ord-47110", "status": "refund_rejected", "amount": 129.99, "currency": "EUR",
              "customer": {"id": "cus-7777", "tier": "pro"}, "items": 2,
              "refund_reason": "refund rejected by issuer: card_expired"}
    orders.insert(len(orders) // 2, target)
    text = json.dumps({"data": orders, "page": 1, "has_more": True}, indent=2)
    return Sample("json", "why was the refund for order ord-47110 rejected", text,
                  ['"id": "ord-47110"', '"refund_reason": "refund rejected by issuer: card_expired"'])


def corpus(seed: int = 7, per_kind: int = 3) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for _ in range(per_kind):
        out += [log_sample(rng), search_sample(rng), code_sample(rng), json_sample(rng)]
    return out
