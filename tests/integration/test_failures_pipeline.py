"""Failure patterns end to end, no mocks: simulated events with an injected incident -> the real
broker -> a worker -> an alert on ``agentflux.alerts``, in the history's ``alerts`` table, in a
real Alertmanager (Debian's) and at a Standard Webhooks receiver that verifies its signature; and
the alert fires once across a worker kill -9 and restart."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import orjson

from agentflux.harness import WorkerProcess
from agentflux.runtime.emitter import Emitter
from agentflux.runtime.simulate import IncidentSpec, SimConfig, SyntheticRuntime
from agentflux.sinks.catalog import connect

from .kafka_helpers import read_all
from .test_alert_delivery import (Receiver, alertmanager, am_alerts,  # noqa: F401 (fixture)
                                  wait_until)

RULES = Path(__file__).resolve().parents[2] / "bench" / "alert_rules.yaml"
SECRET = "whsec_" + base64.b64encode(b"pipeline-secret-0123456789").decode()


class LiveFleet:
    """A simulated fleet in live event time (event time = the wall clock when each event is
    made), publishing about ``rate`` events/s: alerts are judged as they are in production,
    windows closing as time passes."""

    def __init__(self, settings, incident: str, start_s: float, rate: float = 800.0):
        self.sim = SyntheticRuntime(SimConfig(agents=24, events=10**9, seed=77, incidents=(
            IncidentSpec(incident, start_s=start_s),)))
        self.events = self.sim.events()
        self.settings, self.rate = settings, rate

    def run_for(self, seconds: float) -> None:
        with Emitter(self.settings) as em:
            t0 = time.monotonic()
            sent = 0
            while (elapsed := time.monotonic() - t0) < seconds:
                while sent < elapsed * self.rate:
                    em.emit(next(self.events))
                    sent += 1
                time.sleep(0.01)  # pacing the producer, not synchronising the test
            assert em.flush(30)


async def _firing(settings) -> list[dict]:
    return [a for a in (orjson.loads(r.value) for r in await read_all(settings,
                                                                      settings.topics.alerts))
            if a["status"] == "firing"]


async def test_an_error_burst_pages_once_everywhere_across_a_kill(settings, alertmanager,
                                                                  tmp_path):
    settings = settings.replace(window_s=10.0, grace_s=1.0)
    fleet = LiveFleet(settings, "error_burst", start_s=20.0)
    (incident,) = fleet.sim.incidents
    async with Receiver(SECRET) as rx:
        worker = WorkerProcess(settings, log_path=tmp_path / "worker.log", extra_env={
            "AGENTFLUX_FAILURE_RULES": str(RULES), "AGENTFLUX_ALERTMANAGER_URL": alertmanager,
            "AGENTFLUX_WEBHOOK_URL": rx.url, "AGENTFLUX_WEBHOOK_SECRETS": SECRET,
            "AGENTFLUX_ALERT_RESEND_S": "2"})
        worker.start()
        try:
            # the fleet runs (its burst from 20 s on) until the burst pages
            paged = 'agentflux_alerts_total{rule="tool_error_budget",status="firing"}'
            deadline = time.monotonic() + 150
            while worker.metrics().get(paged, 0) < 1:
                assert time.monotonic() < deadline, "the error burst did not page"
                await asyncio.to_thread(fleet.run_for, 5.0)
            # ... in Alertmanager, with its labels, while it fires
            async def in_alertmanager() -> bool:
                return any(a["labels"].get("tool") == incident.labels["tool"]
                           for a in await am_alerts(alertmanager, "tool_error_budget"))
            await wait_until(in_alertmanager, 30, "the page to reach Alertmanager")
            worker.kill()  # kill -9 after the page: the restarted worker must not page again
            worker.start()
            await asyncio.to_thread(fleet.run_for, 30.0)  # the burst goes on
            await asyncio.to_thread(
                worker.wait_for, lambda m: (lag := [v for k, v in m.items()
                                                    if k.startswith("agentflux_consumer_lag{")])
                and not any(lag), 60, "the restarted worker to catch up")
            # Alertmanager still has it: the restarted worker handed the active alert back
            got = await am_alerts(alertmanager, "tool_error_budget")
            assert any(a["labels"].get("tool") == incident.labels["tool"] for a in got), got

            firing = [a for a in await _firing(settings) if a["rule"] == "tool_error_budget"
                      and a["labels"].get("tool") == incident.labels["tool"]]
            assert firing, "no page for the burst"
            # one alert per philosophy (the rule groups by tool and philosophy); the first page
            # fired once, across the kill (the topic is at-least-once: a re-send is the same
            # transition)
            episodes = {(a["fingerprint"], a["starts_at_ns"]) for a in firing}
            page = min(firing, key=lambda a: a["starts_at_ns"])
            assert [e for e in episodes if e[0] == page["fingerprint"]] == [
                (page["fingerprint"], page["starts_at_ns"])], firing
            assert incident.start_ns <= page["starts_at_ns"] <= incident.start_ns + 60 * 10**9
            # ... at the webhook receiver, verified, once per transition
            async def delivered() -> bool:
                return any(x["body"]["fingerprint"] == page["fingerprint"] for x in rx.accepted)
            await wait_until(delivered, 30, "the page at the webhook receiver")
            bodies = [x["body"] for x in rx.accepted
                      if x["body"]["fingerprint"] == page["fingerprint"]
                      and x["body"]["status"] == "firing"]
            assert len(bodies) == 1, bodies
        finally:
            assert worker.stop() == 0
    # ... and in the history, exactly once
    con = connect(settings.history_path)
    try:
        rows = con.execute("SELECT fingerprint, epoch_ns(starts_at) FROM alerts "
                           "WHERE status = 'firing' AND rule = 'tool_error_budget' "
                           "AND labels->>'tool' = ?", [incident.labels["tool"]]).fetchall()
    finally:
        con.close()
    assert sorted(rows) == sorted(episodes)
