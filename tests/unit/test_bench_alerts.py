"""The alert benchmark's scoring: a pure function of ground truth and alert messages."""

import pytest

from agentflux.bench.alerts import episodes, meets_targets, schedule, score
from agentflux.runtime.simulate import INCIDENTS, SimConfig, SyntheticRuntime

S = 10**9


def incident(name, labels, start_s, end_s):
    return {"name": name, "labels": labels, "start_ns": start_s * S, "end_ns": end_s * S}


def alert(kind, labels, start_s, fp=None, status="firing", severity="page"):
    return {"fingerprint": fp or f"{kind}-{sorted(labels.items())}", "status": status,
            "kind": kind, "severity": severity, "labels": labels, "starts_at_ns": start_s * S}


TRUTH = [incident("error_burst", {"tool": "web_search"}, 300, 540),
         incident("memory_climb", {"philosophy": "react"}, 315, 555),
         incident("cost_runaway", {"session": "s1-a3-runaway4", "agent": "agent-3"}, 330, 570)]
PERFECT = [alert("burn_rate", {"tool": "web_search", "philosophy": "react"}, 330),
           alert("burn_rate", {"tool": "web_search", "philosophy": "react"}, 330,
                 status="resolved"),
           alert("streak", {"tool": "web_search", "philosophy": "autonomous"}, 320,
                 severity="warning"),
           alert("threshold", {"philosophy": "react"}, 400, severity="warning"),
           alert("cost_budget", {"session": "s1-a3-runaway4"}, 420, severity="ticket")]


def test_perfect_detection_scores_full_recall_and_precision_with_delays():
    r = score(TRUTH, PERFECT)
    assert r["recall"] == 1.0 and r["precision"] == 1.0
    assert r["per_type"]["error_burst"]["delay_s"] == {"median": 20.0, "max": 20.0}
    assert r["per_type"]["memory_climb"]["delay_s"]["max"] == 85.0
    assert r["fast_burn_delay_s"] == {"median": 30.0, "max": 30.0, "missed": 0}
    assert r["missed_incidents"] == [] and r["false_alarms"] == []
    assert meets_targets(r) == {"recall": True, "precision": True, "fast_burn": True}


def test_a_missed_incident_lowers_recall_of_its_type_only():
    r = score(TRUTH, [a for a in PERFECT if a["kind"] != "threshold"])
    assert r["per_type"]["memory_climb"]["recall"] == 0.0
    assert r["per_type"]["error_burst"]["recall"] == 1.0
    assert r["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert [m["name"] for m in r["missed_incidents"]] == ["memory_climb"]
    assert meets_targets(r)["recall"] is False


def test_false_positives_wrong_target_too_late_and_unexpected_kind():
    noisy = PERFECT + [
        alert("burn_rate", {"tool": "sql_query", "philosophy": "react"}, 330),  # wrong tool
        alert("threshold", {"philosophy": "react"}, 555 + 121),  # after end + tolerance
        alert("threshold", {"philosophy": "react"}, 315 - 21, fp="early"),  # before start
        alert("mystery", {}, 400),  # a kind no incident raises
    ]
    r = score(TRUTH, noisy)
    assert r["recall"] == 1.0
    assert r["per_type"]["error_burst"]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert r["per_type"]["memory_climb"]["precision"] == pytest.approx(1 / 3, abs=1e-4)
    assert r["unexpected_kind_episodes"] == 1
    assert r["alert_episodes"] == 8 and r["matching_episodes"] == 4
    assert len(r["false_alarms"]) == 4
    assert meets_targets(r)["precision"] is False


def test_a_repeated_message_is_one_episode_and_a_later_firing_is_another():
    again = PERFECT + [dict(PERFECT[0])] + [
        alert("burn_rate", {"tool": "web_search", "philosophy": "react"}, 500)]  # re-fires
    eps = episodes(again)
    assert len(eps) == len(episodes(PERFECT)) + 1
    r = score(TRUTH, again)
    assert r["per_type"]["error_burst"]["alert_episodes"] == 3
    assert r["precision"] == 1.0
    assert r["per_type"]["error_burst"]["delay_s"]["max"] == 20.0  # the first episode counts


def test_no_page_on_an_error_burst_is_a_missed_fast_burn():
    r = score(TRUTH, [a for a in PERFECT if a["kind"] != "burn_rate"])
    assert r["per_type"]["error_burst"]["recall"] == 1.0  # the streak detected it
    assert r["fast_burn_delay_s"]["missed"] == 1
    assert meets_targets(r)["fast_burn"] is False


def test_the_schedule_has_every_incident_type_on_distinct_targets_per_round():
    specs = schedule(60)
    names = [s.name for s in specs]
    assert set(names) == set(INCIDENTS) and len(names) == 6 * names.count("error_burst")
    assert names.count("error_burst") >= 2
    for k in range(names.count("slow_model")):
        round_ = {s.name: s.resolved_target for s in specs[6 * k:6 * k + 6]}
        assert round_["slow_model"] != round_["fallback_storm"]
        assert round_["slow_model"] != "claude-sonnet-4"  # the cost runaway's model


def test_simulated_incidents_are_ground_truth_in_event_time():
    specs = tuple(schedule(30, agents=16))
    sim = SyntheticRuntime(SimConfig(agents=16, events=20_000, seed=3, start_ns=10**18,
                                     incidents=specs))
    evs = list(sim.events())
    assert [e["ts"] for e in evs] == sorted(e["ts"] for e in evs)
    burst = sim.incidents[0]
    assert burst.name == "error_burst" and burst.start_ns == 10**18 + int(specs[0].start_s * S)
    tool = burst.labels["tool"]
    inside = [e["attrs"]["status"] != "ok" for e in evs if e["type"] == "tool.call"
              and e["attrs"]["tool"] == tool and burst.active(e["ts"])]
    outside = [e["attrs"]["status"] != "ok" for e in evs if e["type"] == "tool.call"
               and e["attrs"]["tool"] == tool and not burst.active(e["ts"])]
    assert len(inside) > 20 and sum(inside) / len(inside) > 0.9
    assert sum(outside) / len(outside) < 0.01
    again = list(SyntheticRuntime(SimConfig(agents=16, events=20_000, seed=3, start_ns=10**18,
                                            incidents=specs)).events())
    assert again == evs
