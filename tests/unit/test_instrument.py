from agentflux.runtime.instrument import CountingEmitter, Instrumentation
from agentflux.schemas import check


def test_events_carry_the_runtime_name_and_the_childs_context():
    sink = CountingEmitter()
    instr = Instrumentation(sink, runtime="agentflux-agentsim")
    child = instr.child(agent_id="agent-3", session_id="s-1", philosophy="react")
    child.emit("tool.call", {"tool": "grep", "duration_ms": 1.0, "status": "ok"})
    [ev] = sink.of_type("tool.call")
    assert ev["source"]["runtime"] == "agentflux-agentsim"
    assert (ev["agent_id"], ev["session_id"], ev["philosophy"]) == ("agent-3", "s-1", "react")
    assert check(ev) is None
