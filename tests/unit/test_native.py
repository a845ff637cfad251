"""The native decoder against the codec's per-event path: for every record it accepts, the same
events in the same columns; every record it refuses goes back to the codec, which names the
reason. (Its verdicts on the mutation corpus: tests/unit/test_fast_path.py.)"""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.schemas.events import EVENT_TYPES
from agentflux.sinks.tables import EVENTS
from agentflux.streams import native
from agentflux.streams.codec import decode_record
from agentflux.streams.frame import EventFrame

from .test_fast_path import example

LIMIT = 1 << 20


def both(body: bytes | None):
    """(native frame or None if refused, the codec's frame of the same record)."""
    frame, failed = EventFrame.decode([body], np.array([3], np.int32), np.array([9], np.int64),
                                      LIMIT)
    slow = EventFrame.from_structs([(decode_record(body, LIMIT), 3, 9)])
    return (None if failed else frame), slow


def same(body: bytes) -> None:
    fast, slow = both(body)
    assert fast is not None, body[:200]
    a, b = fast.table(EVENTS.schema), slow.table(EVENTS.schema)
    assert a.equals(b), (a.to_pylist()[:2], b.to_pylist()[:2])
    assert fast.id_hash.tolist() == native.hash_ids(a.column("id").to_pylist()).tolist()
    assert fast.spans()[1] == slow.spans()[1]
    # the KPI measures and the label: the same numbers (NaN where absent) on both paths
    np.testing.assert_array_equal(fast.measures, slow.measures)
    assert fast.strings["label"].equals(slow.strings["label"])


def test_simulated_records_give_the_same_columns():
    evs = list(SyntheticRuntime(SimConfig(events=3000, agents=8, seed=5)).events())
    assert len({e["type"] for e in evs}) >= 5  # (every type: the test below)
    for i in range(0, len(evs), 500):
        same(orjson.dumps(evs[i:i + 500]))
    same(orjson.dumps(evs[0]))  # one event, not an array


@pytest.mark.parametrize("type_name", list(EVENT_TYPES))
def test_every_type_with_optional_attrs_set_absent_and_null(type_name):
    ev = example(type_name)
    same(orjson.dumps(ev))
    t = EVENT_TYPES[type_name]
    from agentflux.schemas.spec import field_specs
    bare = {**ev, "attrs": {s.name: v for s, v in zip(field_specs(t.attrs), ev["attrs"].values())
                            if s.required}}
    for k in ("trace_id", "span_id", "parent_span_id"):
        bare.pop(k)
    same(orjson.dumps(bare))
    nulls = {**ev, "trace_id": None, "attrs": {
        **ev["attrs"], **{s.name: None for s in field_specs(t.attrs) if "null" in s.kinds}}}
    same(orjson.dumps(nulls))


def tool(**attrs) -> dict:
    ev = example("tool.call")
    ev["attrs"].update(attrs)
    return ev


@pytest.mark.parametrize("body", [
    # escapes and text beyond ASCII, in borrowed and escaped form
    json.dumps(tool(tool='gr"ep\\ \n é 😀')).encode(),
    json.dumps(tool(tool="grép 😀"), ensure_ascii=False).encode(),
    json.dumps({**tool(), "agent_id": "агент", "philosophy": "反应"}, ensure_ascii=False).encode(),
    # a key given twice: the last one counts (envelope and attrs)
    b'{"agent_id": "first", ' + orjson.dumps(tool())[1:],
    orjson.dumps(tool())[:-2] + b', "tool": "second"}}',
    orjson.dumps(tool())[:-2] + b', "cached": false, "cached": true}}',
    # the attrs before the type, whitespace, a byte order mark
    orjson.dumps({"attrs": tool()["attrs"], **{k: v for k, v in tool().items() if k != "attrs"}}),
    json.dumps([tool(), tool()], indent=2).encode(),
    b"\xef\xbb\xbf" + orjson.dumps(tool()),
    b" \n\t" + orjson.dumps([tool()]) + b" \n",
    # numbers: exponents, negative zero, integers of every size in number fields
    orjson.dumps(tool())[:-2] + b', "duration_ms": 1.5e2}}',
    orjson.dumps(tool())[:-2] + b', "duration_ms": -0.0}}',
    orjson.dumps(tool())[:-2] + b', "duration_ms": 12}}',
    orjson.dumps(tool())[:-2] + b', "duration_ms": 18446744073709551615}}',
    # attributes this version does not know, of every shape, kept as sent
    orjson.dumps(tool(**{"gen_ai.x": {"a": [1, {"b": None}], "c": "\u2028"}, "n": -1})),
])
def test_tricky_encodings_give_the_same_columns(body):
    same(body)


@pytest.mark.parametrize("body,reason", [
    (None, "tombstone"),
    (b"", "invalid_json"),
    (b"[]", "empty_batch"),
    (b"42", "not_an_event"),
    (orjson.dumps(tool()) + b"x", "invalid_json"),
    (orjson.dumps(tool())[:-2] + b', "zz": "\xff"}}', "not_utf8"),  # inside an unknown attr
    (orjson.dumps(tool(duration_ms="slow")), "invalid_field"),
    (orjson.dumps({**tool(), "type": "tool.explode"}), "unknown_type"),
    (b"{" * 200 + b"}" * 200, "not_an_event"),
    (b" " * (LIMIT + 1), "oversize"),
    # an escape the codec's reader refuses, in an attribute nobody reads
    (orjson.dumps(tool())[:-2] + b', "zz": "\\ud800"}}', "invalid_json"),
    # nesting beyond what either reader takes
    (orjson.dumps(tool())[:-2] + b', "zz": ' + b"[" * 1100 + b"]" * 1100 + b"}}",
     "invalid_json"),
])
def test_a_record_it_refuses_goes_back_to_the_codec_for_its_reason(body, reason):
    fast, _ = both(body)
    assert fast is None
    out = decode_record(body, LIMIT)
    assert [r.reason for r in out.rejected] == [reason] or (
        reason == "not_an_event" and out.rejected[0].reason in ("not_an_event", "invalid_json"))


def test_a_batch_of_records_keeps_record_order_partitions_and_offsets():
    good = [orjson.dumps([tool(), tool()]), orjson.dumps(tool())]
    values = [good[0], b"{bad", None, good[1]]
    frame, failed = EventFrame.decode(values, np.array([0, 1, 2, 3], np.int32),
                                      np.array([10, 11, 12, 13], np.int64), LIMIT)
    assert failed == [1, 2] and frame.n == 3
    assert frame.partition.tolist() == [0, 0, 3] and frame.offset.tolist() == [10, 10, 13]


def test_large_batches_are_decoded_in_chunks_with_the_same_result(monkeypatch):
    evs = list(SyntheticRuntime(SimConfig(events=2000, agents=4, seed=9)).events())
    values = [orjson.dumps(evs[i:i + 100]) for i in range(0, 2000, 100)]
    values.insert(7, b"not json")
    whole = native.decode(values, LIMIT)
    monkeypatch.setattr(native, "MAX_CHUNK_BYTES", 50_000)  # ~2 records a call
    assert len(native._chunks(values)) > 5
    chunked = native.decode(values, LIMIT)
    assert chunked[:2] == whole[:2] == (2000, [7])
    for a, b in zip(chunked[2], whole[2]):
        np.testing.assert_array_equal(a, b)  # (NaN durations equal)
    assert all(chunked[3][c].equals(whole[3][c]) for c in native.STR_COLUMNS)


@pytest.mark.parametrize("depth,lands", [(100, True), (200, True), (900, True), (1000, False)])
def test_deep_unknown_attrs_go_to_the_codec_which_lands_them_or_names_the_depth(depth, lands):
    """The native decoder reads 128 levels; deeper records go to the codec: msgspec reads about
    1,000 (the event lands, attrs as sent), beyond that the dead letter says why."""
    body = orjson.dumps(tool())[:-2] + b', "zz": ' + b"[" * depth + b"]" * depth + b"}}"
    assert (both(body)[0] is None) == (depth > 120)
    for value in (body, b"[" + body + b"," + orjson.dumps(tool(duration_ms="x")) + b"]"):
        out = decode_record(value, LIMIT)
        assert len(out.events) == int(lands)
        if lands:
            assert bytes(out.attrs_json[0]).endswith(b"]" * depth + b"}")
        else:
            assert out.rejected[0].reason == "too_deep"


def test_measure_slots_read_numbers_booleans_enums_and_presence():
    """What the KPIs read per event: numbers as sent, booleans as 0/1, an enum as the index of
    its value in the schema, any other value as 1 when present, NaN when absent or null."""
    ev = example("cache.lookup")
    ev["attrs"] = {"cache": "tool_metadata", "outcome": "expired", "tool": "web_search"}
    routing = example("routing.decision")
    routing["attrs"].update(fallback_from=None, attempt=3)
    pool = example("pool.acquire")
    pool["attrs"].update(warm=False, available=2, in_use=7, target=9)
    fast, _ = both(orjson.dumps([ev, routing, pool]))
    m = fast.measures
    assert m[0, 0] == 2.0 and np.isnan(m[0, 1:]).all()  # ("hit", "miss", "expired")
    assert fast.strings["label"].to_pylist() == ["web_search", None, None]
    assert np.isnan(m[1, 0]) and m[1, 1] == 3.0  # fallback_from null, attempt 3
    assert m[2, :4].tolist() == [0.0, 2.0, 7.0, 9.0]


def test_the_installed_decoder_is_an_optimised_build():
    # setuptools-rust builds an in-place (editable) extension unoptimised unless told otherwise
    # (pyproject.toml: debug = false); a debug build made the worker ~15x slower unnoticed
    assert native.OPTIMISED, "agentflux._native is a debug build: rebuild it with `make venv`"
