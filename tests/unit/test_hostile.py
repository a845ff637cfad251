"""The fault suite's hostile stream: deterministic, complete, and its expected accounting is what
the decoder actually does with each record."""

from collections import Counter

import orjson
import pytest

from agentflux.bench.hostile import (ACCEPTED_KINDS, CODECS, HOSTILE_KINDS, OVERSIZE_BYTES,
                                     VALID_KIND, HostileRecord, expected_totals, hostile_stream)
from agentflux.schemas.validate import check
from agentflux.streams.codec import DEFAULT_MAX_RECORD_BYTES, decode_record


@pytest.fixture(scope="module")
def stream() -> list[HostileRecord]:
    return hostile_stream(20_000, bad_fraction=0.01, seed=7)


def test_same_seed_same_stream_other_seed_other_stream():
    a = hostile_stream(3_000, seed=11)
    b = hostile_stream(3_000, seed=11)
    assert [(r.value, r.key, r.compression, r.kind, r.valid, r.dead) for r in a] == \
           [(r.value, r.key, r.compression, r.kind, r.valid, r.dead) for r in b]
    c = hostile_stream(3_000, seed=12)
    assert [r.value for r in a] != [r.value for r in c]


def test_every_hostile_kind_and_every_codec_occurs(stream):
    kinds = Counter(r.kind for r in stream)
    assert set(HOSTILE_KINDS) <= set(kinds)
    assert set(kinds) == set(HOSTILE_KINDS) | {VALID_KIND}
    assert kinds["oversize"] == 1  # the 10 MiB record once, not once per draw
    assert {r.compression for r in stream if r.kind == VALID_KIND} == set(CODECS)
    # hostile records are spread through the stream, not bunched at one end
    positions = [i for i, r in enumerate(stream) if r.kind != VALID_KIND]
    assert positions[0] < len(stream) // 4 and positions[-1] > 3 * len(stream) // 4


def test_about_bad_fraction_of_the_items_are_hostile_and_the_totals_add_up(stream):
    totals = expected_totals(stream)
    assert totals["sent_items"] == 20_000
    assert totals["valid"] + totals["dead"] == totals["sent_items"]
    hostile_items = len([r for r in stream if r.kind != VALID_KIND])  # one hostile item each
    assert hostile_items == 200
    assert totals["dead"] == sum(1 for r in stream if r.kind not in ACCEPTED_KINDS | {VALID_KIND})


def test_a_tiny_stream_still_holds_every_kind():
    records = hostile_stream(5, seed=0)
    assert {r.kind for r in records} >= set(HOSTILE_KINDS)
    totals = expected_totals(records)
    assert totals["valid"] + totals["dead"] == totals["sent_items"] >= len(HOSTILE_KINDS)


def test_the_records_are_what_their_kind_says(stream):
    by_kind = {}
    for r in stream:
        by_kind.setdefault(r.kind, r)
    assert by_kind["tombstone"].value is None
    assert by_kind["empty_array"].value == b"[]"
    assert by_kind["bom"].value.startswith(b"\xef\xbb\xbf[")
    assert b"\x00" in by_kind["nul_byte"].value
    assert b"NaN" in by_kind["nan"].value and b"Infinity" in by_kind["infinity"].value
    assert OVERSIZE_BYTES <= by_kind["oversize"].size and by_kind["oversize"].compression is None
    assert by_kind["deep_nesting"].value.count(b'{"d":') >= 4999
    with pytest.raises(UnicodeDecodeError):
        by_kind["not_utf8"].value.decode()
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(by_kind["truncated_json"].value)
    ev = orjson.loads(by_kind["bigint"].value)[0]
    assert len(by_kind["bigint"].value.split(b'"ts":')[1].split(b",")[0]) == 31
    assert ev["type"] == "tool.call"
    dup = by_kind["duplicate_keys"].value
    assert dup.count(b'"status":') == 2 and dup.count(b'"type":') == 2
    for r in stream:
        if r.kind == VALID_KIND:
            events = orjson.loads(r.value)
            assert type(events) is list and all(check(e) is None for e in events)
            assert r.key == events[0]["session_id"].encode()
            break


@pytest.mark.parametrize("kind", HOSTILE_KINDS + (VALID_KIND,))
def test_expected_accounting_matches_the_decoder(stream, kind):
    records = [r for r in stream if r.kind == kind]
    assert records
    for r in records:
        out = decode_record(r.value)
        assert (len(out.events), len(out.rejected)) == (r.valid, r.dead), \
            (kind, [(x.reason, x.detail[:80]) for x in out.rejected])


def test_decoded_totals_over_the_stream_equal_the_expected_totals(stream):
    valid = dead = 0
    for r in stream:
        out = decode_record(r.value)
        valid += len(out.events)
        dead += len(out.rejected)
    assert {"sent_items": valid + dead, "valid": valid, "dead": dead} == expected_totals(stream)


def test_agreed_reasons_of_whole_record_failures(stream):
    def reason(kind):
        r = next(r for r in stream if r.kind == kind)
        (rej,) = decode_record(r.value).rejected
        return rej.reason, rej.index

    assert reason("tombstone") == ("tombstone", None)
    assert reason("empty_array") == ("empty_batch", None)
    assert reason("oversize") == ("oversize", None)
    assert reason("not_utf8") == ("not_utf8", None)
    for kind in ("truncated_json", "trailing_garbage", "nul_byte", "nan", "infinity",
                 "deep_nesting"):
        assert reason(kind) == ("invalid_json", None), kind
    assert DEFAULT_MAX_RECORD_BYTES < OVERSIZE_BYTES


def test_a_mixed_array_keeps_its_good_events_and_names_the_bad_one(stream):
    for r in (r for r in stream if r.kind == "mixed_array"):
        doc = orjson.loads(r.value)
        bad = [i for i, e in enumerate(doc) if "agent_id" not in e]
        out = decode_record(r.value)
        assert [(x.reason, x.index) for x in out.rejected] == [("missing_field", bad[0])]
        assert out.wire() == [e for e in doc if "agent_id" in e]
