"""Property tests of the wire decoders: whatever bytes arrive, ``decode_record`` never raises and
accounts for every item the producer sent (valid + dead-lettered = sent), with a low-cardinality
reason and the original bytes of whatever it rejects; the native decoder accepts only records
whose every event is valid, with the same columns."""

from __future__ import annotations

import json
import re

import numpy as np
import orjson
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.schemas.events import EVENT_TYPES
from agentflux.schemas.spec import ENVELOPE_SPECS
from agentflux.schemas.validate import check
from agentflux.sinks.tables import EVENTS
from agentflux.streams.codec import DEFAULT_MAX_RECORD_BYTES, decode_record
from agentflux.streams.frame import EventFrame

BOM = b"\xef\xbb\xbf"
REASON = re.compile(r"[a-z][a-z0-9_]{1,39}")
SETTINGS = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ENVELOPE = {s.name for s in ENVELOPE_SPECS}
VALID = list(SyntheticRuntime(SimConfig(events=60, seed=5, start_ns=10 ** 18)).events())


def _depth(x, d=1) -> int:
    if type(x) is list:
        return max((_depth(y, d + 1) for y in x), default=d)
    if type(x) is dict:
        return max((_depth(y, d + 1) for y in x.values()), default=d)
    return d


def assert_accounted(value: bytes | None, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
    out = decode_record(value, max_bytes)  # never raises: an exception fails the property
    # the native decoder accepts a record only if every event in it is valid, and then gives
    # the columns the codec's events give (what it refuses goes to decode_record, as here)
    fast, failed = EventFrame.decode([value], np.zeros(1, np.int32), np.zeros(1, np.int64),
                                     max_bytes)
    if not failed:
        assert not out.rejected, [r.reason for r in out.rejected]
        slow = EventFrame.from_structs([(out, 0, 0)])
        assert fast.table(EVENTS.schema).equals(slow.table(EVENTS.schema))
        # ... and the same KPI measures and labels
        np.testing.assert_array_equal(fast.measures, slow.measures)
        assert fast.strings["label"].equals(slow.strings["label"])
    for r in out.rejected:
        assert REASON.fullmatch(r.reason), r.reason
        assert type(r.raw) is bytes
        if value is not None:
            assert r.raw in value, (r.reason, r.index, r.raw[:80])
    for e in out.wire():  # nothing invalid lands
        assert check(e) is None
    if value is None:  # a tombstone
        assert out.wire() == [] and [(r.index, r.raw) for r in out.rejected] == [(None, b"")]
        return
    body = value[3:] if value.startswith(BOM) else value
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
        parsed = False
    else:
        parsed = True
    whole = len(out.rejected) == 1 and out.rejected[0].index is None and not out.events
    if whole:
        assert out.rejected[0].raw == value  # the record's own bytes, BOM and all
    if len(value) > max_bytes + len(BOM):
        assert whole and out.rejected[0].reason == "oversize"
        return
    if len(value) > max_bytes:  # within a BOM of the limit: either reading is fine
        return
    if not parsed or type(doc) not in (list, dict) or doc == []:
        assert whole, (value[:80], [(r.reason, r.index) for r in out.rejected])
        return
    if type(doc) is dict:
        assert out.total == 1
        return
    if whole and _depth(doc) > 100:  # a nesting limit below orjson's is the decoder's right
        return
    assert out.total == len(doc)  # every element is one valid event or one dead letter
    assert sorted(r.index for r in out.rejected) == \
        [i for i, e in enumerate(doc) if check(e) is not None]
    # what lands is the envelope's known fields and every attr, known or not (an optional
    # envelope field sent as null is the same as one not sent: both land as NULL)
    assert _as_orjson_reads(out.wire()) == [
        {k: v for k, v in e.items() if k in ENVELOPE and v is not None}
        for e in doc if check(e) is None]


def _as_orjson_reads(value):
    """``value`` as orjson would have parsed it: an integer beyond 64 bits (kept exactly in an
    unknown attr's raw JSON) becomes a float, as the oracle's orjson.loads reads it."""
    if type(value) is int and not -2 ** 63 <= value < 2 ** 64:
        return float(value)
    if type(value) is dict:
        return {k: _as_orjson_reads(v) for k, v in value.items()}
    if type(value) is list:
        return [_as_orjson_reads(v) for v in value]
    return value


# --- strategies --------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
field_names = st.sampled_from(["id", "type", "v", "ts", "source", "agent_id", "session_id",
                               "philosophy", "trace_id", "span_id", "parent_span_id", "attrs"])
attr_names = st.sampled_from(sorted({f for t in EVENT_TYPES.values()
                                     for f in t.attrs.__dataclass_fields__}) + ["extra"])


@st.composite
def mutated_event(draw) -> dict:
    ev = orjson.loads(orjson.dumps(draw(st.sampled_from(VALID))))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["drop", "set", "attr", "drop_attr", "type", "v"]))
        if op == "drop":
            ev.pop(draw(field_names), None)
        elif op == "set":
            ev[draw(field_names)] = draw(json_values)
        elif op == "attr" and type(ev.get("attrs")) is dict:
            ev["attrs"][draw(attr_names)] = draw(json_values)
        elif op == "drop_attr" and type(ev.get("attrs")) is dict and ev["attrs"]:
            ev["attrs"].pop(draw(st.sampled_from(sorted(ev["attrs"]))))
        elif op == "type":
            ev["type"] = draw(st.sampled_from(sorted(EVENT_TYPES)) | st.text(max_size=10))
        elif op == "v":
            ev["v"] = draw(st.integers(-2, 200) | st.floats(0, 3))
    return ev


def serialise(draw, doc) -> bytes:
    """As any producer might: compact or spaced, stdlib json (huge ints, NaN) or orjson."""
    how = draw(st.sampled_from(["orjson", "compact", "spaced", "indent"]))
    try:
        if how == "orjson":
            return orjson.dumps(doc)
    except TypeError:  # an integer past 64 bits: orjson cannot write it
        pass
    if how == "indent":
        return json.dumps(doc, indent=2, ensure_ascii=draw(st.booleans())).encode()
    seps = (",", ":") if how == "compact" else (" , ", " : ")
    return json.dumps(doc, separators=seps, ensure_ascii=draw(st.booleans())).encode()


@st.composite
def documents(draw) -> bytes:
    shape = draw(st.sampled_from(["events", "events", "junk", "object", "scalar"]))
    if shape == "events":
        doc = draw(st.lists(st.one_of(mutated_event(), json_values), min_size=0, max_size=6))
    elif shape == "junk":
        doc = draw(st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=5),
                            max_size=5))
    elif shape == "object":
        doc = draw(mutated_event())
    else:
        doc = draw(scalars)
    raw = serialise(draw, doc)
    if draw(st.booleans()):
        raw = (BOM if draw(st.booleans()) else b"") + raw
    return raw


@st.composite
def byte_mutants(draw) -> bytes:
    """A valid record with bytes cut, inserted, flipped or a BOM / garbage around it."""
    raw = bytearray(orjson.dumps(draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["cut", "insert", "flip", "truncate", "bom", "append"]))
        i = draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "cut":
            del raw[i:i + draw(st.integers(1, 8))]
        elif op == "insert":
            raw[i:i] = draw(st.sampled_from([b"\x00", b"\xff", b",", b"[", b"]", b"{", b"}",
                                             b'"', b"\\", BOM, b"NaN", b" ", b'"a":1,']))
        elif op == "flip" and raw:
            raw[i] = draw(st.integers(0, 255))
        elif op == "truncate":
            del raw[i:]
        elif op == "bom":
            raw[0:0] = BOM
        else:
            raw += draw(st.binary(max_size=4))
    return bytes(raw)


# --- properties --------------------------------------------------------------------------

@SETTINGS
@given(st.one_of(st.none(), st.binary(max_size=300)))
def test_arbitrary_bytes_never_raise_and_are_accounted_for(value):
    assert_accounted(value)


@SETTINGS
@given(documents())
# found by CI: an optional envelope field sent as null
@example(orjson.dumps([{**VALID[0], "trace_id": None}]))
def test_json_documents_every_element_is_an_event_or_a_dead_letter(value):
    assert_accounted(value)


@SETTINGS
@given(byte_mutants())
def test_damaged_valid_records_are_accounted_for(value):
    assert_accounted(value)


@SETTINGS
@given(documents(), st.integers(0, 400))
def test_the_size_limit_rejects_a_whole_record_with_its_bytes(value, max_bytes):
    assert_accounted(value, max_bytes)


@SETTINGS
@given(st.lists(mutated_event(), min_size=1, max_size=5), st.data())
def test_a_rejected_element_carries_exactly_its_own_bytes(events, data):
    value = serialise(data.draw, events)
    assume(b"NaN" not in value and b"Infinity" not in value)
    out = decode_record(value)
    assert out.total == len(events)
    for r in out.rejected:
        assert json.loads(r.raw) == json.loads(json.dumps(events[r.index]))
