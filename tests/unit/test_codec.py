import orjson

from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.streams.codec import decode_record, encode_batch


def events(n):
    return list(SyntheticRuntime(SimConfig(events=n, seed=3, start_ns=10**18)).events())


def test_array_and_single_object_records_decode():
    evs = events(5)
    assert decode_record(orjson.dumps(evs)).events == evs
    assert decode_record(orjson.dumps(evs[0])).events == [evs[0]]


def test_encode_batch_joins_serialised_events_into_an_array():
    evs = events(3)
    assert orjson.loads(encode_batch([orjson.dumps(e) for e in evs])) == evs


def test_bad_events_are_rejected_with_reasons_and_the_rest_of_the_batch_kept():
    evs = events(4)
    unknown = {**evs[1], "type": "mystery.event"}
    wrong = {**evs[2], "ts": "noon"}
    out = decode_record(orjson.dumps([evs[0], unknown, wrong, 42, evs[3]]))
    assert out.events == [evs[0], evs[3]]
    assert [(r.reason, r.index) for r in out.rejected] == [
        ("unknown_type", 1), ("invalid_field", 2), ("not_an_event", 3)]
    assert orjson.loads(out.rejected[0].raw) == unknown
    assert out.rejected[1].event_id == wrong["id"]
    assert out.total == 5


def test_whole_record_failures():
    assert decode_record(b'[{"id": ').rejected[0].reason == "invalid_json"
    assert decode_record(b'[{"x": NaN}]').rejected[0].reason == "invalid_json"
    bad_utf8 = decode_record(b'[{"id": "\xff\xfe"}]').rejected[0]
    assert bad_utf8.reason == "not_utf8" and bad_utf8.raw == b'[{"id": "\xff\xfe"}]'
    big = decode_record(b"[" + b" " * 5000 + b"]", max_bytes=1024).rejected[0]
    assert big.reason == "oversize" and "5002 bytes" in big.detail
    assert decode_record(None).rejected[0].reason == "invalid_json"


def test_spans_are_computed_once_per_batch():
    out = decode_record(orjson.dumps(events(10)))
    assert out.spans() is out.spans()
    assert len(out.spans()) == 10
