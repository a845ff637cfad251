"""Alert delivery against real receivers, no mocks: Debian's Alertmanager (a missing binary fails,
it never skips) and a Standard Webhooks receiver (aiohttp on loopback) that verifies signatures
with the ``standardwebhooks`` package and refuses replays and stale timestamps."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from agentflux.localkafka import free_port
from agentflux.sinks.alerting import AlertmanagerSink, WebhookSink, signed_headers, webhook_secret

AM_BINARY = os.environ.get("AGENTFLUX_ALERTMANAGER", "prometheus-alertmanager")
AM_CONFIG = """\
route:
  receiver: "null"
receivers:
  - name: "null"
"""
OLD_SECRET = "whsec_" + base64.b64encode(b"old-secret-0123456789abcdef").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"new-secret-fedcba9876543210").decode()


async def wait_until(cond: Callable[[], Awaitable[Any]], deadline_s: float, what: str) -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        got = await cond()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {deadline_s} s waiting for {what}")
        await asyncio.sleep(0.05)


def alert(name: str, status: str = "firing", **kw: Any) -> dict:
    now = time.time_ns()
    a = {"fingerprint": uuid.uuid5(uuid.NAMESPACE_URL, name).hex, "status": status,
         "rule": name, "kind": "burn_rate", "severity": "page",
         "labels": {"alertname": name, "severity": "page", "tool": "search"},
         "annotations": {"summary": f"{name} is burning", "description": "fast burn"},
         "starts_at_ns": now, "ends_at_ns": None, "updated_at_ns": now,
         "value": 15.2, "threshold": 14.4}
    a.update(kw)
    return a


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    return free_port()


# ---------------------------------------------------------------------------------------------
# Alertmanager


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Alertmanager on a free loopback port, clustering off, a null receiver."""
    binary = shutil.which(AM_BINARY) or shutil.which("alertmanager")
    if binary is None:
        pytest.fail(f"{AM_BINARY} is not installed: install Debian's package "
                    "(sudo apt-get install prometheus-alertmanager, or deploy/setup-system.sh), "
                    "or set AGENTFLUX_ALERTMANAGER to an alertmanager binary")
    work = tmp_path_factory.mktemp("alertmanager")
    (work / "alertmanager.yml").write_text(AM_CONFIG)
    port = free_port()
    log_path = work / "alertmanager.log"
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(
            [binary, f"--config.file={work / 'alertmanager.yml'}",
             f"--storage.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--cluster.listen-address=", "--log.level=warn"],
            stdout=logf, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, log_path, deadline_s=30.0)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(proc: subprocess.Popen, url: str, log_path: Path, deadline_s: float) -> None:
    from agentflux.harness import wait_until as wait_sync

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"alertmanager exited with {proc.returncode}: {log_path.read_text()}")
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1.0) as r:  # OSError: not yet
            return r.status == 200

    try:
        wait_sync(ready, deadline_s, "alertmanager to be ready")
    except TimeoutError:
        pytest.fail(f"alertmanager not ready within {deadline_s} s: {log_path.read_text()}")


async def am_alerts(url: str, name: str) -> list[dict]:
    """What Alertmanager reports for alertname ``name`` (it leaves out resolved alerts)."""
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/api/v2/alerts", params={"filter": f'alertname="{name}"'}) as r:
            assert r.status == 200
            return await r.json()


def rfc3339_s(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_firing_alert_reaches_alertmanager(alertmanager: str) -> None:
    sink = AlertmanagerSink(alertmanager, resend_interval_s=30.0)
    await sink.start()
    try:
        name = f"fast_burn_{uuid.uuid4().hex[:8]}"
        sink.submit(alert(name))
        got = await wait_until(lambda: am_alerts(alertmanager, name), 10.0, "the alert")
        assert len(got) == 1
        a = got[0]
        assert a["labels"] == {"alertname": name, "severity": "page", "tool": "search"}
        assert a["annotations"] == {"summary": f"{name} is burning", "description": "fast burn"}
        assert a["status"]["state"] == "active"
        # endsAt is 4 resend intervals ahead, as Prometheus sends it
        assert 100 < rfc3339_s(a["endsAt"]) - time.time() <= 121
        assert sink.stats["sent"] >= 1 and sink.stats["dropped"] == 0
    finally:
        await sink.stop()


async def test_firing_alert_is_resent_beyond_its_first_endsat(alertmanager: str) -> None:
    """With resend 0.4 s the first endsAt is ~1.6 s away; without re-sends Alertmanager would
    have expired the alert by then."""
    sink = AlertmanagerSink(alertmanager, resend_interval_s=0.4)
    await sink.start()
    try:
        name = f"streak_{uuid.uuid4().hex[:8]}"
        sink.submit(alert(name))
        first = await wait_until(lambda: am_alerts(alertmanager, name), 10.0, "the alert")
        first_ends = rfc3339_s(first[0]["endsAt"])

        async def active_past_first_ends() -> list[dict] | None:
            if time.time() < first_ends + 1.0:
                return None
            got = await am_alerts(alertmanager, name)
            assert got, "Alertmanager expired the alert: it was not re-sent"
            return got

        later = await wait_until(active_past_first_ends, 15.0, "time past the first endsAt")
        assert later[0]["status"]["state"] == "active"
        assert rfc3339_s(later[0]["endsAt"]) > time.time() > first_ends
        assert sink.stats["sent"] >= 3
    finally:
        await sink.stop()


async def test_resolved_alert_ends_in_alertmanager_and_is_forgotten(alertmanager: str) -> None:
    sink = AlertmanagerSink(alertmanager, resend_interval_s=0.5)
    await sink.start()
    try:
        name = f"latency_slo_{uuid.uuid4().hex[:8]}"
        firing = alert(name)
        sink.submit(firing)
        await wait_until(lambda: am_alerts(alertmanager, name), 10.0, "the firing alert")
        sink.submit(dict(firing, status="resolved", ends_at_ns=time.time_ns(),
                         updated_at_ns=time.time_ns()))

        async def gone() -> bool:
            return not await am_alerts(alertmanager, name)

        await wait_until(gone, 10.0, "Alertmanager to stop reporting the resolved alert")
        await wait_until(_async(lambda: sink.pending == 0), 5.0, "the sink to forget it")
        assert sink.stats["dropped"] == 0 and sink.stats["rejected"] == 0
    finally:
        await sink.stop()


async def test_unreachable_alertmanager_drops_within_bound() -> None:
    counted: list[tuple[str, str, int]] = []
    sink = AlertmanagerSink(f"http://127.0.0.1:{closed_port()}", resend_interval_s=30.0,
                            max_retry_s=0.5, timeout_s=1.0,
                            counter=lambda *c: counted.append(c))
    await sink.start()
    try:
        t0 = time.monotonic()
        sink.submit(alert("unreachable_am"))
        assert time.monotonic() - t0 < 0.1, "submit() blocked"
        await wait_until(_async(lambda: sink.stats["dropped"] == 1), 5.0, "the counted drop")
        assert time.monotonic() - t0 < 0.5 + 1.0 + 1.0  # max_retry_s + one timeout + slack
        assert ("alertmanager", "dropped", 1) in counted
        assert sink.stats["sent"] == 0
    finally:
        await sink.stop(timeout_s=1.0)


def _async(pred: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def cond() -> Any:
        return pred()
    return cond


# ---------------------------------------------------------------------------------------------
# Standard Webhooks


class Receiver:
    """A Standard Webhooks receiver: verifies with the reference package (which also refuses
    timestamps more than 5 minutes off), 409 for a webhook-id it already accepted, and answers
    the statuses in ``script`` first (e.g. 500, 500), then 200."""

    def __init__(self, secret: str, script: list[int] | None = None) -> None:
        self.webhook = Webhook(secret)
        self.script = list(script or [])
        self.attempts: list[dict] = []    # every request: headers and the outcome
        self.accepted: list[dict] = []    # verified, first-time deliveries: id and the body
        self.seen: set[str] = set()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        record = {"headers": headers}
        self.attempts.append(record)
        try:
            payload = self.webhook.verify(body, headers)
        except WebhookVerificationError as e:
            record["outcome"] = f"401 {e}"
            return web.Response(status=401, text=str(e))
        msg_id = request.headers["webhook-id"]
        if msg_id in self.seen:
            record["outcome"] = "409"
            return web.Response(status=409, text="replayed webhook-id")
        if self.script:
            status = self.script.pop(0)
            record["outcome"] = str(status)
            return web.Response(status=status)
        self.seen.add(msg_id)
        self.accepted.append({"id": msg_id, "body": payload})
        record["outcome"] = "200"
        return web.Response(status=200)

    async def __aenter__(self) -> "Receiver":
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def test_webhook_delivered_and_verified() -> None:
    async with Receiver(NEW_SECRET) as rx:
        sink = WebhookSink(rx.url, NEW_SECRET)
        await sink.start()
        try:
            a = alert("webhook_ok")
            sink.submit(a)
            await wait_until(_async(lambda: rx.accepted), 5.0, "the delivery")
            assert rx.accepted[0]["body"] == orjson.loads(orjson.dumps(a))
            await wait_until(_async(lambda: sink.stats["sent"] == 1), 5.0, "the sent count")
            assert sink.stats == {"sent": 1, "retried": 0, "dropped": 0, "rejected": 0}
        finally:
            await sink.stop()


async def test_webhook_retried_after_500s_with_the_same_id() -> None:
    async with Receiver(NEW_SECRET, script=[500, 500]) as rx:
        sink = WebhookSink(rx.url, NEW_SECRET, max_retry_s=30.0)
        await sink.start()
        try:
            sink.submit(alert("webhook_flaky"))
            await wait_until(_async(lambda: rx.accepted), 15.0, "the delivery after retries")
            await wait_until(_async(lambda: sink.stats["sent"] == 1), 5.0, "the sent count")
            assert [r["outcome"] for r in rx.attempts] == ["500", "500", "200"]
            ids = {r["headers"]["webhook-id"] for r in rx.attempts}
            assert ids == {rx.accepted[0]["id"]}
            assert sink.stats == {"sent": 1, "retried": 2, "dropped": 0, "rejected": 0}
        finally:
            await sink.stop()


async def test_receiver_refuses_replays_and_stale_timestamps() -> None:
    """The receiver the other tests trust is strict: a transition submitted twice carries the same
    id (the second is a replay, 409, counted as rejected), and an old timestamp is refused."""
    async with Receiver(NEW_SECRET) as rx:
        sink = WebhookSink(rx.url, NEW_SECRET)
        await sink.start()
        try:
            a = alert("webhook_replay")
            sink.submit(a)
            sink.submit(a)
            await wait_until(_async(lambda: sink.stats["rejected"] == 1), 5.0, "the 409")
            assert sink.stats["sent"] == 1 and len(rx.accepted) == 1
            assert [r["outcome"] for r in rx.attempts] == ["200", "409"]
        finally:
            await sink.stop()
        body = orjson.dumps(alert("webhook_stale"))
        stale = signed_headers([webhook_secret(NEW_SECRET)], "msg_stale", body,
                               timestamp=int(time.time()) - 600)
        async with aiohttp.ClientSession() as s:
            async with s.post(rx.url, data=body, headers=stale) as r:
                assert r.status == 401
                assert "too old" in await r.text()
            fresh = signed_headers([webhook_secret(NEW_SECRET)], "msg_stale", body)
            async with s.post(rx.url, data=body, headers=fresh) as r:
                assert r.status == 200


async def test_unreachable_webhook_never_blocks_and_drops_within_bound() -> None:
    max_retry_s = 0.6
    sink = WebhookSink(f"http://127.0.0.1:{closed_port()}/hook", NEW_SECRET, timeout_s=1.0,
                       max_retry_s=max_retry_s, max_attempts=8)
    await sink.start()
    lags: list[float] = []

    async def ticker() -> None:  # measures how late the event loop runs a 10 ms timer
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - t - 0.01)

    tick = asyncio.create_task(ticker())
    try:
        t0 = time.monotonic()
        for i in range(3):
            sink.submit(alert(f"webhook_unreachable_{i}"))
        assert time.monotonic() - t0 < 0.1, "submit() blocked"
        await wait_until(_async(lambda: sink.stats["dropped"] == 3), 10.0, "three counted drops")
        # each transition: retries only while younger than max_retry_s (+ one refused connect)
        assert time.monotonic() - t0 < 3 * (max_retry_s + 0.5)
        # (one at a time: the first is retried; a later one may be older than max_retry_s by
        # its first attempt, then it is dropped without a retry, as the bound says)
        assert sink.stats["sent"] == 0 and sink.stats["retried"] >= 1
        # a blocking connect or retry would stall it for a timeout (1 s) or a backoff; the
        # margin is for a busy CI machine
        assert max(lags) < 0.5, f"the event loop stalled {max(lags):.3f} s"
    finally:
        tick.cancel()
        await sink.stop(timeout_s=1.0)


@pytest.mark.parametrize("receiver_knows", [OLD_SECRET, NEW_SECRET], ids=["old", "new"])
async def test_webhook_secret_rotation(receiver_knows: str) -> None:
    async with Receiver(receiver_knows) as rx:
        sink = WebhookSink(rx.url, [OLD_SECRET, NEW_SECRET])
        await sink.start()
        try:
            sink.submit(alert("webhook_rotation"))
            await wait_until(_async(lambda: rx.accepted), 5.0, "the verified delivery")
            assert len(rx.attempts[0]["headers"]["webhook-signature"].split(" ")) == 2
        finally:
            await sink.stop()
