import copy
import dataclasses
import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from agentflux.schemas import (EVENT_TYPES, Event, InvalidEvent, Source, ToolCall, check, uuid7,
                               validate)
from agentflux.schemas.jsonschema import SCHEMA_DIR, all_schemas, render
from agentflux.schemas.wire import envelope
from agentflux.runtime.simulate import SimConfig, SyntheticRuntime


def sample_events(n=400):
    return list(SyntheticRuntime(SimConfig(events=n, seed=7, start_ns=1_700_000_000 * 10**9)).events())


def test_schema_files_are_generated_from_the_models():
    generated = all_schemas()
    on_disk = {p.name for p in SCHEMA_DIR.glob("*.json")}
    assert on_disk == set(generated), "run: python -m agentflux.schemas.jsonschema --write"
    for name, schema in generated.items():
        assert (SCHEMA_DIR / name).read_bytes() == render(schema), f"{name} is stale"


def test_every_design_type_has_a_versioned_schema():
    expected = {"tool.call", "llm.call", "cache.lookup", "cache.evict", "cache.invalidate",
                "cache.stats", "prompt_cache.lookup", "context.compress", "routing.decision",
                "executor.task", "pool.acquire", "pool.release", "pool.state", "resource.sample",
                "memory.gc", "checkpoint.restore"}
    assert expected <= set(EVENT_TYPES)
    for name in expected:
        assert (SCHEMA_DIR / f"{name}.v1.json").exists()


def _mutations(ev):
    """Invalid variants of a valid event, each with the field it breaks."""
    out = []
    for field in ("id", "ts", "session_id", "source", "attrs", "type"):
        e = copy.deepcopy(ev); del e[field]; out.append((e, field))
    e = copy.deepcopy(ev); e["ts"] = "yesterday"; out.append((e, "ts"))
    e = copy.deepcopy(ev); e["ts"] = True; out.append((e, "ts"))
    e = copy.deepcopy(ev); e["source"]["pid"] = "12"; out.append((e, "source.pid"))
    e = copy.deepcopy(ev); e["type"] = "tool.explode"; out.append((e, "type"))
    e = copy.deepcopy(ev); e["v"] = 99; out.append((e, "v"))
    e = copy.deepcopy(ev); e["id"] = "short"; out.append((e, "id"))
    spec = EVENT_TYPES[ev["type"]].attrs
    for f in dataclasses.fields(spec):
        e = copy.deepcopy(ev); e["attrs"][f.name] = {"nested": {"deep": True}}; out.append((e, "attrs." + f.name))
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            e = copy.deepcopy(ev); del e["attrs"][f.name]; out.append((e, "attrs." + f.name))
    return out


def test_fast_validator_agrees_with_json_schema_on_valid_and_invalid_events():
    schemas = {name: jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / f"{name}.v1.json").read_text()))
               for name in EVENT_TYPES}
    seen_types = set()
    for ev in sample_events():
        seen_types.add(ev["type"])
        assert check(ev) is None
        assert schemas[ev["type"]].is_valid(ev)
        for bad, field in _mutations(ev):
            problem = check(bad)
            assert problem is not None, f"{field} mutation accepted"
            assert problem.field == field or problem.field.startswith(field), (field, problem)
            target = schemas.get(bad.get("type"), schemas[ev["type"]])
            if bad.get("type") in schemas:
                assert not target.is_valid(bad), f"JSON Schema accepted a broken {field}"
    assert len(seen_types) >= 6


def test_integral_floats_are_integers_as_in_json_schema():
    ev = sample_events(1)[0]
    ev["ts"] = float(ev["ts"] // 10**9 * 10**9)
    assert check(ev) is None


def test_validation_error_names_event_id_field_and_reason():
    ev = sample_events(1)[0]
    ev["attrs"]["startup_ms" if ev["type"] == "pool.acquire" else "duration_ms"] = "slow"
    with pytest.raises(InvalidEvent) as err:
        validate(ev)
    msg = str(err.value)
    assert ev["id"] in msg and "attrs." in msg and "must be" in msg
    assert err.value.problem.reason == "invalid_field"


def test_unknown_type_and_newer_version_have_their_own_reasons():
    ev = sample_events(1)[0]
    assert check({**ev, "type": "telepathy"}).reason == "unknown_type"
    assert check({**ev, "v": 2}).reason == "unsupported_version"
    assert check([ev]).reason == "not_an_event"


def test_model_round_trip_through_the_wire_form():
    e = Event(id=uuid7(), ts=1, source=Source("rt", "h", 1), agent_id="a", session_id="s",
              philosophy="react", attrs=ToolCall(tool="grep", duration_ms=3.5, status="ok"))
    d = e.to_dict()
    assert d["type"] == "tool.call" and d["v"] == 1
    assert check(d) is None
    assert Event.from_dict(d) == e


def test_uuid7_is_time_ordered_and_canonical():
    a, b = uuid7(10**18), uuid7(10**18 + 10**6)
    assert len(a) == 36 and a[14] == "7" and a[19] in "89ab"
    assert a < b


def test_envelope_builds_the_models_wire_form_byte_for_byte():
    e = Event(id=uuid7(5 * 10**18), ts=5 * 10**18, source=Source("rt", "h", 1), agent_id="a",
              session_id="s", philosophy="react", attrs=ToolCall(tool="grep", duration_ms=3.5,
                                                                  status="ok"),
              trace_id="t" * 32, span_id="p" * 16, parent_span_id="q" * 16)
    d = e.to_dict()
    built = envelope("tool.call", d["attrs"], source=d["source"], agent_id="a", session_id="s",
                     philosophy="react", ts=e.ts, id=e.id, trace_id=e.trace_id, span_id=e.span_id,
                     parent_span_id=e.parent_span_id)
    assert orjson.dumps(built) == orjson.dumps(d)


def test_envelope_defaults_a_time_ordered_id_of_its_ts_and_the_registered_version():
    ev = envelope("llm.call", {}, source={}, agent_id="a", session_id="s", philosophy="react",
                  ts=10**18)
    assert ev["v"] == EVENT_TYPES["llm.call"].version and ev["ts"] == 10**18
    assert ev["id"][:13] == uuid7(10**18)[:13]  # the same millisecond prefix
    assert not {"trace_id", "span_id", "parent_span_id"} & set(ev)
    with pytest.raises(ValueError, match="unknown event type"):
        envelope("telepathy", {}, source={}, agent_id="a", session_id="s", philosophy="react")


def test_the_simulator_is_byte_identical_for_a_seed_and_uses_the_envelope_order():
    a, b = sample_events(300), sample_events(300)
    assert orjson.dumps(a) == orjson.dumps(b)
    ev = a[0]
    rebuilt = envelope(ev["type"], ev["attrs"], source=ev["source"], agent_id=ev["agent_id"],
                       session_id=ev["session_id"], philosophy=ev["philosophy"], ts=ev["ts"],
                       id=ev["id"], trace_id=ev["trace_id"], span_id=ev["span_id"])
    assert orjson.dumps(rebuilt) == orjson.dumps(ev)
