"""A seeded stream of good and hostile records for the fault suite, with the exact accounting
the worker must produce for it.

:func:`hostile_stream` mixes valid records (JSON arrays of valid events from the synthetic
runtime, spread over no compression and Kafka's four codecs) with hostile ones: about
``bad_fraction`` of the items sent are hostile and every kind in :data:`HOSTILE_KINDS` occurs at
least once. Each :class:`HostileRecord` says what the decoder must make of it: ``valid`` events
that land and ``dead`` dead-letter items (one per rejected event of an array, or 1 when the whole
record fails). Over a stream, ``valid + dead == sent_items`` exactly (:func:`expected_totals`).

The agreed decoder semantics encoded here (``agentflux.streams.codec.decode_record``):

==================  =========================================================================
tombstone           value ``None``: 1 dead letter (reason ``tombstone``)
empty_array         ``[]``: 1 dead letter (reason ``empty_batch``)
bom                 a UTF-8 BOM before a valid array is stripped: the events land
duplicate_keys      the last of duplicate keys wins (orjson): the event is valid if the result is
nesting_100         100 levels of nesting inside ``attrs``: fine, the event lands
truncated_json,     invalid JSON, non-UTF-8 bytes, a raw NUL byte, ``NaN`` / ``Infinity``,
trailing_garbage,   5,000 levels of nesting: 1 dead letter for the whole record
not_utf8, nul_byte,
nan, infinity,
deep_nesting
oversize            10 MiB, past the default ``max_record_bytes`` (4 MiB): 1 dead letter
scalar              a JSON value that is neither object nor array (``42``): 1 dead letter
ts_string,          an array of one event failing validation (ts as a string, attrs as a list,
attrs_list,         an unknown type, ``v`` = 99, a 31-digit integer in ``ts``): 1 dead letter
unknown_type,
newer_version,
bigint
mixed_array         good events and one invalid one (no ``agent_id``): the good ones land, 1 dead
==================  =========================================================================

:func:`publish` sends a list of records to a topic with aiokafka (one idempotent ``acks=all``
producer per codec, requests large enough for the 10 MiB record) and returns how many were acked.
Snappy, lz4 and zstd need ``cramjam`` (a dependency of agentflux).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import orjson

from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.schemas.ids import uuid7
from agentflux.schemas.wire import envelope
from agentflux.streams.codec import DEFAULT_MAX_RECORD_BYTES

log = logging.getLogger(__name__)

#: Producer compression per record: ``None`` (uncompressed) or one of Kafka's codecs.
CODECS: tuple[str | None, ...] = (None, "gzip", "snappy", "lz4", "zstd")

#: Every hostile case; each occurs at least once in a stream.
HOSTILE_KINDS: tuple[str, ...] = (
    "truncated_json", "trailing_garbage", "ts_string", "attrs_list", "unknown_type",
    "newer_version", "not_utf8", "bom", "nul_byte", "nan", "infinity", "oversize",
    "deep_nesting", "nesting_100", "duplicate_keys", "bigint", "empty_array", "tombstone",
    "mixed_array", "scalar",
)
#: The kind of the ordinary records (arrays of valid events).
VALID_KIND = "valid"
#: Hostile kinds whose events land (the record is odd but acceptable).
ACCEPTED_KINDS = frozenset({"bom", "duplicate_keys", "nesting_100"})

OVERSIZE_BYTES = 10 * 1024 * 1024  # the oversize record is at least this big
#: Producer request limit that fits the oversize record (the local broker allows 16 MiB messages).
MAX_REQUEST_SIZE = 16 * 1024 * 1024
START_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z: event times are fixed for a seed

_BOM = b"\xef\xbb\xbf"
# kinds drawn for the hostile items past one of each: all but the 10 MiB record (once is enough)
_REPEATABLE = tuple(k for k in HOSTILE_KINDS if k != "oversize")


@dataclass(frozen=True, slots=True)
class HostileRecord:
    """One Kafka record to publish and what the decoder must make of it."""

    value: bytes | None = field(repr=False)  # None: a tombstone
    key: bytes
    compression: str | None  # producer compression to publish it with (see CODECS)
    kind: str  # VALID_KIND or one of HOSTILE_KINDS
    valid: int  # events that must land
    dead: int  # dead-letter items: one per rejected event of an array, 1 when the record fails whole

    @property
    def items(self) -> int:
        """What this record counts for in ``sent``: ``valid + dead``."""
        return self.valid + self.dead

    @property
    def size(self) -> int:
        return 0 if self.value is None else len(self.value)


def expected_totals(records: Iterable[HostileRecord]) -> dict[str, int]:
    """``{"sent_items", "valid", "dead"}`` over ``records``; ``valid + dead == sent_items``."""
    valid = dead = 0
    for r in records:
        valid += r.valid
        dead += r.dead
    return {"sent_items": valid + dead, "valid": valid, "dead": dead}


# --- building the hostile cases -----------------------------------------------------------

def _tool_event(rng: random.Random, ts: int, i: int) -> dict:
    """A valid ``tool.call`` event in wire form, built as every producer builds one."""
    id_ = uuid7(ts, rng)  # the random draws in this order: a seed gives the same stream
    trace_id, span_id = f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64):016x}"
    attrs = {"tool": rng.choice(("web_search", "file_read", "sql_query")),
             "duration_ms": round(rng.uniform(1, 900), 3), "status": "ok", "error": None,
             "idempotent": True, "cached": False}
    return envelope("tool.call", attrs, ts=ts, id=id_, trace_id=trace_id, span_id=span_id,
                    source={"runtime": "agentflux-hostile", "host": "fault-host", "pid": 4000 + i % 7},
                    agent_id=f"agent-{i % 5}", session_id=f"hostile-{i % 11}", philosophy="react")


def _with(ev: dict, placeholder_path: tuple[str, ...], placeholder: str) -> dict:
    """A deep-enough copy of ``ev`` with the string ``placeholder`` at ``placeholder_path``."""
    out = {**ev, "attrs": dict(ev["attrs"])}
    target = out
    for k in placeholder_path[:-1]:
        target = target[k]
    target[placeholder_path[-1]] = placeholder
    return out


def _splice(ev: dict, path: tuple[str, ...], raw: bytes) -> bytes:
    """``[ev]`` as JSON with the value at ``path`` replaced by the raw bytes ``raw``."""
    mark = "\u2063agentflux-splice\u2063"
    doc = orjson.dumps([_with(ev, path, mark)])
    token = orjson.dumps(mark)
    assert doc.count(token) == 1
    return doc.replace(token, raw)


def _nested(levels: int) -> bytes:
    return b'{"d":' * (levels - 1) + b'{"leaf":1}' + b"}" * (levels - 1)


def _hostile(kind: str, rng: random.Random, ev: dict, good: list[dict]
             ) -> tuple[bytes | None, int, int]:
    """(value, valid, dead) of one hostile record of ``kind`` built around the event ``ev``."""
    if kind == "truncated_json":
        doc = orjson.dumps([ev, ev])
        return doc[: rng.randrange(1, len(doc) - 1)], 0, 1
    if kind == "trailing_garbage":
        return orjson.dumps([ev]) + b' ]}garbage"', 0, 1
    if kind == "ts_string":
        return orjson.dumps([{**ev, "ts": str(ev["ts"])}]), 0, 1
    if kind == "attrs_list":
        return orjson.dumps([{**ev, "attrs": list(ev["attrs"].items())}]), 0, 1
    if kind == "unknown_type":
        return orjson.dumps([{**ev, "type": "agent.telepathy"}]), 0, 1
    if kind == "newer_version":
        return orjson.dumps([{**ev, "v": 99}]), 0, 1
    if kind == "not_utf8":
        return _splice(ev, ("agent_id",), b'"agent-\xff\xfe\xc3("'), 0, 1
    if kind == "bom":
        return _BOM + orjson.dumps([ev]), 1, 0
    if kind == "nul_byte":
        return _splice(ev, ("agent_id",), b'"agent\x00-1"'), 0, 1
    if kind == "nan":
        return _splice(ev, ("attrs", "duration_ms"), b"NaN"), 0, 1
    if kind == "infinity":
        return _splice(ev, ("attrs", "duration_ms"), rng.choice((b"Infinity", b"-Infinity"))), 0, 1
    if kind == "oversize":
        # valid JSON and a valid event: only its size is wrong
        blob = "x" * OVERSIZE_BYTES
        value = orjson.dumps([{**ev, "attrs": {**ev["attrs"], "blob": blob}}])
        assert len(value) > DEFAULT_MAX_RECORD_BYTES
        return value, 0, 1
    if kind == "deep_nesting":
        return _splice(ev, ("attrs", "nested"), _nested(5000)), 0, 1
    if kind == "nesting_100":
        # 100 levels counted from the record's outer array
        return _splice(ev, ("attrs", "nested"), _nested(100 - 3)), 1, 0
    if kind == "duplicate_keys":
        # the first of each duplicate is invalid, the last valid: last one wins, the event lands
        doc = orjson.dumps([ev])
        assert doc.startswith(b'[{"id"') and doc.count(b'"attrs":{') == 1
        doc = doc.replace(b'[{"id"', b'[{"type":"no.such.type","v":99,"ts":"noon","id"', 1)
        return doc.replace(b'"attrs":{', b'"attrs":{"status":404,"duration_ms":"slow",', 1), 1, 0
    if kind == "bigint":
        big = str(rng.randrange(10 ** 30, 10 ** 31)).encode()  # 31 digits in an int64 field
        return _splice(ev, ("ts",), big), 0, 1
    if kind == "empty_array":
        return b"[]", 0, 1
    if kind == "tombstone":
        return None, 0, 1
    if kind == "scalar":
        return rng.choice((b"42", b'"an event"', b"true", b"null", b"-1.5e3")), 0, 1
    if kind == "mixed_array":
        bad = {k: v for k, v in ev.items() if k != "agent_id"}  # a required field missing
        batch = list(good)
        batch.insert(rng.randrange(len(batch) + 1), bad)
        return orjson.dumps(batch), len(good), 1
    raise ValueError(f"unknown hostile kind {kind!r}; known: {HOSTILE_KINDS}")


def hostile_stream(n_events: int, bad_fraction: float = 0.01, seed: int = 0, *,
                   max_batch: int = 100) -> list[HostileRecord]:
    """A deterministic (per ``seed``) shuffled mix of valid and hostile records.

    ``max(len(HOSTILE_KINDS), round(n_events * bad_fraction))`` items are hostile (one of each
    kind first, then kinds drawn at random, the 10 MiB record only once); the other items are
    valid events in arrays of 1..``max_batch``, some of them inside the ``mixed_array`` records.
    ``expected_totals(...)["sent_items"] == n_events`` whenever ``n_events`` is at least about
    twice the number of hostile items (a tiny stream still holds every kind and grows past it).
    """
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events!r}")
    if not 0.0 <= bad_fraction <= 1.0:
        raise ValueError(f"bad_fraction must be within 0..1, got {bad_fraction!r}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch!r}")
    rng = random.Random(seed)
    n_bad = max(len(HOSTILE_KINDS), round(n_events * bad_fraction))
    kinds = list(HOSTILE_KINDS) + [rng.choice(_REPEATABLE) for _ in range(n_bad - len(HOSTILE_KINDS))]
    n_mixed = kinds.count("mixed_array")
    n_good = max(n_events - n_bad, 2 * n_mixed)
    sim = SyntheticRuntime(SimConfig(agents=8, events=n_good, seed=seed, start_ns=START_NS))
    good = list(sim.events())

    records: list[HostileRecord] = []
    # mixed arrays take 1..8 good events each, at most half of them all
    per_mixed = min(8, n_good // (2 * n_mixed)) if n_mixed else 0
    pos = 0
    for i, kind in enumerate(kinds):
        ev = _tool_event(rng, START_NS + i * 1_000_003, i)
        take: list[dict] = []
        if kind == "mixed_array":
            k = rng.randint(1, per_mixed)
            take, pos = good[pos:pos + k], pos + k
        value, valid, dead = _hostile(kind, rng, ev, take)
        compression = None if kind == "oversize" else rng.choice(CODECS)
        records.append(HostileRecord(value, ev["session_id"].encode(), compression, kind,
                                     valid, dead))
    n_valid_records = 0
    while pos < len(good):
        k = rng.randint(1, max_batch)
        batch, pos = good[pos:pos + k], pos + k
        records.append(HostileRecord(orjson.dumps(batch), batch[0]["session_id"].encode(),
                                     CODECS[n_valid_records % len(CODECS)], VALID_KIND,
                                     len(batch), 0))
        n_valid_records += 1
    rng.shuffle(records)
    return records


# --- publishing ---------------------------------------------------------------------------

def _check_codecs(codecs: Iterable[str | None]) -> None:
    from aiokafka import codec as ak

    have = {"gzip": ak.has_gzip, "snappy": ak.has_snappy, "lz4": ak.has_lz4, "zstd": ak.has_zstd}
    for c in codecs:
        if c is None:
            continue
        if c not in have:
            raise ValueError(f"unknown compression {c!r}; use one of {CODECS}")
        if not have[c]():
            raise RuntimeError(f"aiokafka cannot compress with {c}: install cramjam "
                               "(pip install cramjam, a dependency of agentflux)")


async def publish(records: Sequence[HostileRecord], topic: str, *,
                  max_request_size: int = MAX_REQUEST_SIZE, **client_kwargs: Any) -> int:
    """Publish ``records`` to ``topic``, each with its own compression; return how many the
    broker acknowledged. Records are sent in list order (records of one codec stay in that order
    within a partition; records of different codecs go through different producers). One idempotent ``acks=all`` producer per codec; ``client_kwargs``
    go to each ``AIOKafkaProducer`` (e.g. ``**settings.kafka_client_kwargs()``). A record the
    broker refuses is logged and not counted; nothing raises for it.

    Consumers of the topic need ``fetch_max_bytes`` / ``max_partition_fetch_bytes`` above the
    oversize record (e.g. 32 MiB) to read it.
    """
    from aiokafka import AIOKafkaProducer

    codecs = sorted({r.compression for r in records}, key=lambda c: c or "")
    _check_codecs(codecs)
    producers = {c: AIOKafkaProducer(**client_kwargs, compression_type=c, acks="all",
                                     enable_idempotence=True, max_request_size=max_request_size,
                                     linger_ms=5)
                 for c in codecs}
    started: list[Any] = []
    try:
        for p in producers.values():
            await p.start()
            started.append(p)
        futures = [await producers[r.compression].send(topic, r.value, key=r.key) for r in records]
        results = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        for p in started:
            await p.stop()
    acked = 0
    for r, res in zip(records, results):
        if isinstance(res, BaseException):
            log.warning("record %s (%d bytes, %s) was not acknowledged: %r",
                        r.kind, r.size, r.compression, res)
        else:
            acked += 1
    return acked


def publish_sync(records: Sequence[HostileRecord], topic: str, **kwargs: Any) -> int:
    """:func:`publish` from synchronous code."""
    return asyncio.run(publish(records, topic, **kwargs))
