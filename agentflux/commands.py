"""Pool commands: what the autoscaler publishes to ``agentflux.pool.commands`` (key = pool) and a
pool manager applies, and how both sides sign and check them.

A command is one JSON object::

    {"v": 1, "command_id": "<uuid>", "pool": "react", "generation": 1764201600123456,
     "action": "scale", "target": 8, "min_size": 1, "max_size": 50, "image": null,
     "reason": "scale_up: ...", "inputs": {...}, "issued_at_ns": ..., "issuer": "worker-1",
     "signature": "v1=<hex HMAC-SHA256>"}

``target`` is how many containers the pool should hold (in use + warm idle); ``generation``
increases per pool (the issuer's clock in microseconds, kept strictly increasing), so a pool
manager applies a command only if it is newer than the last one it applied; ``command_id``
makes a redelivered command a no-op. The signature is HMAC-SHA256 over the canonical JSON of
every other field (sorted keys, no whitespace) with a key from the settings
(``AGENTFLUX_COMMAND_KEYS``; several during a rotation: the first signs, any verifies).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any, Iterable, Mapping

import orjson

VERSION = 1
ACTIONS = ("scale",)
_FIELDS: dict[str, tuple[type, ...]] = {
    "v": (int,), "command_id": (str,), "pool": (str,), "generation": (int,), "action": (str,),
    "target": (int,), "min_size": (int,), "max_size": (int,), "reason": (str,),
    "inputs": (dict,), "issued_at_ns": (int,), "issuer": (str,),
}
MAX_POOL_NAME = 200


def keys_of(secret: str | None) -> list[bytes]:
    """The signing keys of a setting (comma-separated; the first signs)."""
    if not secret:
        return []
    raw = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
    return [k.strip().encode() for k in raw.split(",") if k.strip()]


def canonical(doc: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: every field but ``signature``, sorted keys, compact."""
    return orjson.dumps({k: v for k, v in doc.items() if k != "signature"},
                        option=orjson.OPT_SORT_KEYS)


def signature(doc: Mapping[str, Any], key: bytes) -> str:
    return "v1=" + hmac.new(key, canonical(doc), hashlib.sha256).hexdigest()


def sign(doc: dict[str, Any], key: bytes) -> dict[str, Any]:
    """``doc`` with its ``signature`` (set in place, and returned)."""
    doc.pop("signature", None)
    doc["signature"] = signature(doc, key)
    return doc


def verify(doc: Mapping[str, Any], keys: Iterable[bytes]) -> str | None:
    """None if ``doc`` is signed by one of ``keys``; else the reason: ``unsigned`` or
    ``bad_signature``."""
    sig = doc.get("signature")
    if not isinstance(sig, str) or not sig:
        return "unsigned"
    for key in keys:
        if hmac.compare_digest(sig.encode(), signature(doc, key).encode()):
            return None
    return "bad_signature"


def check_shape(doc: Any) -> str | None:
    """None if ``doc`` has the fields of a command with the right types; else what is wrong."""
    if not isinstance(doc, dict):
        return f"a command is a JSON object, got {type(doc).__name__}"
    for name, types in _FIELDS.items():
        if name not in doc:
            return f"missing field {name!r}"
        value = doc[name]
        if not isinstance(value, types) or (types == (int,) and isinstance(value, bool)):
            return f"field {name!r} must be {types[0].__name__}, got {type(value).__name__}"
    if doc["v"] != VERSION:
        return f"unknown command version {doc['v']!r} (this pool manager reads {VERSION})"
    if doc["action"] not in ACTIONS:
        return f"unknown action {doc['action']!r} (known: {', '.join(ACTIONS)})"
    if not doc["pool"] or len(doc["pool"]) > MAX_POOL_NAME:
        return "pool must be a non-empty name of at most 200 characters"
    if doc.get("image") is not None and not isinstance(doc["image"], str):
        return "field 'image' must be a string or null"
    if not 0 <= doc["min_size"] <= doc["max_size"]:
        return f"min_size {doc['min_size']} / max_size {doc['max_size']} are not 0 <= min <= max"
    return None


class Generations:
    """Strictly increasing generations per pool from the issuer's clock (microseconds): a
    later issuer (another worker after a rebalance) continues above an earlier one as long as
    clocks are roughly in step; a pool manager applies only newer generations."""

    def __init__(self, clock: Any = time.time_ns):
        self._clock = clock
        self._last: dict[str, int] = {}

    def next(self, pool: str) -> int:
        g = max(self._clock() // 1000, self._last.get(pool, 0) + 1)
        self._last[pool] = g
        return g


def new_command(pool: str, target: int, generation: int, reason: str, inputs: Mapping[str, Any],
                *, min_size: int, max_size: int, image: str | None = None, issuer: str = "",
                issued_at_ns: int | None = None, command_id: str | None = None) -> dict[str, Any]:
    """An unsigned command (sign it with :func:`sign`)."""
    return {"v": VERSION, "command_id": command_id or str(uuid.uuid4()), "pool": pool,
            "generation": int(generation), "action": "scale", "target": int(target),
            "min_size": int(min_size), "max_size": int(max_size), "image": image,
            "reason": reason, "inputs": dict(inputs),
            "issued_at_ns": int(time.time_ns() if issued_at_ns is None else issued_at_ns),
            "issuer": issuer}
