"""`agentflux status`'s figures from two scrapes and from the topics' messages."""

from agentflux.status import active_alerts, from_metrics, latest_predictions, render


def test_rates_lag_dead_letters_and_pools_from_two_scrapes():
    before = {"agentflux_records_total": 100.0, 'agentflux_events_total{type="tool.call"}': 300.0,
              'agentflux_events_total{type="llm.call"}': 100.0}
    after = {"agentflux_records_total": 150.0, 'agentflux_events_total{type="tool.call"}': 500.0,
             'agentflux_events_total{type="llm.call"}': 200.0,
             'agentflux_consumer_lag{partition="1",topic="ev"}': 7.0,
             'agentflux_consumer_lag{partition="0",topic="ev"}': 0.0,
             'agentflux_deadletter_total{reason="invalid_json"}': 2.0,
             'agentflux_deadletter_total{reason="oversize"}': 1.0,
             "agentflux_open_windows": 12.0, "agentflux_alerts_active": 1.0,
             'agentflux_pool_target_containers{pool="react"}': 4.0,
             'agentflux_history_rows{table="events"}': 700.0}
    s = from_metrics(before, after, 2.0)
    assert s["records_per_s"] == 25.0 and s["events_per_s"] == 150.0
    assert s["events_total"] == 700 and s["records_total"] == 150
    assert s["consumer_lag"] == {"ev[0]": 0, "ev[1]": 7} and s["consumer_lag_total"] == 7
    assert s["dead_letters"] == {"invalid_json": 2, "oversize": 1} and s["dead_letters_total"] == 3
    assert s["open_windows"] == 12 and s["alerts_active"] == 1
    assert s["pool_targets"] == {"react": 4} and s["history_rows"] == {"events": 700}
    # a counter that went down (a restarted worker) is no negative rate
    assert from_metrics(after, before, 1.0)["records_per_s"] == 0.0


def test_alerts_firing_are_those_whose_last_transition_fires():
    msgs = [(b"a", {"fingerprint": "a", "status": "firing", "rule": "r1", "starts_at_ns": 2}),
            (b"b", {"fingerprint": "b", "status": "firing", "rule": "r2", "starts_at_ns": 1}),
            (b"a", {"fingerprint": "a", "status": "resolved", "rule": "r1", "starts_at_ns": 2}),
            (b"c", {"fingerprint": "c", "status": "firing", "rule": "r3", "starts_at_ns": 3}),
            (None, "not an alert")]
    assert [a["rule"] for a in active_alerts(msgs)] == ["r2", "r3"]


def test_latest_prediction_per_key():
    def doc(key, target, n):
        return {"key": key, "samples": n, "confidence": 0.5, "issued_at_ns": n,
                "recommendation": {"cpu_percent": {"target": target, "lower": 1, "upper": 2}},
                "mean_x_1_2": {"cpu_percent": 10.0}}
    msgs = [(b"react", doc("react", 30.0, 1)), (b"react", doc("react", 40.0, 2)),
            (b"cot", doc("cot", 5.0, 3)), (b"x", {"not": "a prediction"})]
    p = latest_predictions(msgs)
    assert list(p) == ["cot", "react"]
    assert p["react"]["cpu_percent"] == {"target": 40.0, "mean_x_1_2": 10.0}
    assert p["react"]["samples"] == 2


def test_the_live_view_renders_a_snapshot():
    from rich.console import Console
    snap = {**from_metrics({}, {'agentflux_consumer_lag{partition="0",topic="ev"}': 3.0}, 1.0),
            "alerts": [{"rule": "r", "severity": "page", "subject": "react", "value": 1,
                        "threshold": 0}], "predictions": {}}
    console = Console(record=True, width=120)
    console.print(render(snap))
    text = console.export_text()
    assert "ev[0]" in text and "alerts firing" in text and "records/s" in text
