import orjson

from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.streams.codec import decode_record
from agentflux.schemas.wire import encode_batch


def events(n):
    return list(SyntheticRuntime(SimConfig(events=n, seed=3, start_ns=10**18)).events())


def test_array_and_single_object_records_decode():
    evs = events(5)
    assert decode_record(orjson.dumps(evs)).wire() == evs
    assert decode_record(orjson.dumps(evs[0])).wire() == [evs[0]]


def test_encode_batch_joins_serialised_events_into_an_array():
    evs = events(3)
    assert orjson.loads(encode_batch([orjson.dumps(e) for e in evs])) == evs


def test_bad_events_are_rejected_with_reasons_and_the_rest_of_the_batch_kept():
    evs = events(4)
    unknown = {**evs[1], "type": "mystery.event"}
    wrong = {**evs[2], "ts": "noon"}
    out = decode_record(orjson.dumps([evs[0], unknown, wrong, 42, evs[3]]))
    assert out.wire() == [evs[0], evs[3]]
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
    tomb = decode_record(None)
    assert [(r.reason, r.index) for r in tomb.rejected] == [("tombstone", None)] and tomb.total == 1
    empty = decode_record(b" [ ] ")
    assert [(r.reason, r.raw) for r in empty.rejected] == [("empty_batch", b" [ ] ")]
    scalar = decode_record(b"42")
    assert [(r.reason, r.index, r.raw) for r in scalar.rejected] == [("not_an_event", None, b"42")]


def test_a_leading_byte_order_mark_is_ignored():
    evs = events(2)
    out = decode_record(b"\xef\xbb\xbf" + orjson.dumps(evs))
    assert out.wire() == evs and not out.rejected


def test_dead_letters_carry_the_original_bytes_of_the_rejected_event():
    """A re-serialisation would turn a 31-digit integer into 1.2345678901234568e+30, reorder
    keys and re-escape strings: the dead letter keeps what the producer sent."""
    import json

    evs = events(3)
    bad = dict(evs[1], ts=1234567890123456789012345678901)
    raw_bad = json.dumps(bad, indent=1, ensure_ascii=True).encode()  # its own layout
    body = (b'[ ' + orjson.dumps(evs[0]) + b' ,\n' + raw_bad + b',' + orjson.dumps(evs[2])
            + b'\t]')
    out = decode_record(body)
    assert out.wire() == [evs[0], evs[2]]
    (r,) = out.rejected
    assert r.index == 1 and r.raw == raw_bad
    assert b"1234567890123456789012345678901" in r.raw
    # brackets, commas and escaped quotes inside strings do not confuse the slicing
    tricky = dict(evs[0], agent_id='a "[x,{y}]" \\ ,]')
    unknown = dict(evs[2], type="mystery.event")
    body = orjson.dumps([tricky, unknown])
    (r,) = decode_record(body).rejected
    assert r.raw == orjson.dumps(unknown) and r.index == 1
    # a single rejected event (not an array) keeps the whole record
    single = orjson.dumps(unknown)
    assert decode_record(single).rejected[0].raw == single


def test_frame_columns_match_the_events_and_span_keys_are_computed_once():
    from agentflux.streams.frame import EventFrame
    from agentflux.streams.fields import span_of

    evs = events(200)
    frame = EventFrame.from_structs([(decode_record(orjson.dumps(evs[:150])), 3, 7),
                              (decode_record(orjson.dumps(evs[150:])), 4, 9)])
    assert frame.spans() is frame.spans()
    key_index, keys = frame.spans()
    want = [span_of(e) for e in evs]
    assert [keys[i] for i in key_index.tolist()] == [w[0] for w in want]
    assert [None if d != d else d for d in frame.duration_ms.tolist()] == [w[1] for w in want]
    assert frame.error.tolist() == [w[2] for w in want]
    assert frame.ts.tolist() == [e["ts"] for e in evs]
    assert frame.partition.tolist() == [3] * 150 + [4] * 50
    assert frame.offset.tolist() == [7] * 150 + [9] * 50


def test_hostile_but_valid_json_lands_or_is_rejected_never_crashes_the_sink(tmp_path):
    """Everything the codec accepts must convert to Arrow, land as a segment and read back
    through the DuckDB views."""
    from agentflux.sinks.catalog import connect, write_catalog
    from agentflux.sinks.history import History
    from agentflux.sinks.tables import EVENTS
    from agentflux.streams.frame import EventFrame

    base = events(1)[0]
    tool = {**base, "type": "tool.call", "attrs": {"tool": "t", "duration_ms": 1.0, "status": "ok"}}
    variants = [
        {**tool, "ts": 2 ** 63},  # out of int64: rejected
        {**tool, "ts": 1e30},  # orjson turns a 31-digit integer into a float: rejected
        {**tool, "source": {**tool["source"], "pid": -(10 ** 20)}},  # rejected
        {**tool, "attrs": {**tool["attrs"], "duration_ms": 2 ** 63}},  # a huge number: lands
        {**tool, "ts": 1.7e18, "v": 1.0},  # integral floats are integers in JSON: land
        {**tool, "agent_id": "ágent-🤖-\u0000-" + "x" * 10_000},  # unicode, NUL, long: lands
        {**tool, "attrs": {**tool["attrs"], "extra": {"nested": [1, {"deep": None}]}}},  # lands
    ]
    for i, v in enumerate(variants):
        v["id"] = base["id"][:-2] + f"{i:02d}"
    import json
    out = decode_record(json.dumps(variants).encode())  # stdlib json writes any integer
    assert [r.index for r in out.rejected] == [0, 1, 2], [r.detail for r in out.rejected]
    assert all(r.reason == "invalid_field" for r in out.rejected)
    h = History(tmp_path)
    write_catalog(h)
    h.write_segment(EVENTS, EventFrame.from_structs([(out, 0, 0)]).table(EVENTS.schema),
                    log="a" * 12, partition=0, first=0, last=0)
    assert h.count("events") == 4
    con = connect(tmp_path)
    assert con.execute("SELECT max(duration_ms) FROM events").fetchone()[0] == float(2 ** 63)
    assert con.execute("SELECT count(*) FROM events WHERE agent_id LIKE 'ágent-🤖-%'"
                       ).fetchone()[0] == 1
