"""Alert delivery without receivers: Standard Webhooks signatures checked by the reference
``standardwebhooks`` verifier, secret rotation, backoff bounds, queue bounds and their counting,
and the retry/drop decisions (with an in-process fake in place of the HTTP POST)."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import time
from typing import Any, Mapping

import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from agentflux.sinks import alerting
from agentflux.sinks.alerting import (AlertmanagerSink, WebhookSink, backoff_delay, retry_after_s,
                                      rfc3339, sign, signed_headers, webhook_id, webhook_secret)

OLD = "whsec_" + base64.b64encode(b"the old secret, 32 bytes long!!!").decode()
NEW = "whsec_" + base64.b64encode(b"the new secret, 32 bytes long!!!").decode()
OTHER = "whsec_" + base64.b64encode(b"somebody else's secret entirely").decode()


def alert(fp: str = "1f3a", status: str = "firing", **kw: Any) -> dict:
    a = {"fingerprint": fp, "status": status, "rule": "tool_error_budget_fast_burn",
         "kind": "burn_rate", "severity": "page",
         "labels": {"alertname": "tool_error_budget_fast_burn", "severity": "page",
                    "tool": "search"},
         "annotations": {"summary": "search burns its error budget", "description": "14x"},
         "starts_at_ns": 1_764_100_000_000_000_000, "ends_at_ns": None,
         "updated_at_ns": 1_764_100_000_000_000_000, "value": 12.3, "threshold": 14.4}
    a.update(kw)
    return a


async def wait_until(pred, deadline_s: float = 5.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not pred():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.005)


# -- signatures


def test_signature_verifies_with_the_reference_verifier() -> None:
    body = orjson.dumps(alert())
    headers = signed_headers([webhook_secret(NEW)], webhook_id(alert()), body)
    assert Webhook(NEW).verify(body, headers) == orjson.loads(body)


def test_signature_matches_the_reference_signer() -> None:
    body = orjson.dumps(alert())
    ts = 1_764_100_123
    import datetime as dt
    expected = Webhook(NEW).sign("msg_x", dt.datetime.fromtimestamp(ts, dt.timezone.utc),
                                 body.decode())
    assert sign([webhook_secret(NEW)], "msg_x", ts, body) == expected


def test_tampered_body_or_wrong_secret_fails() -> None:
    body = orjson.dumps(alert())
    headers = signed_headers([webhook_secret(NEW)], "msg_x", body)
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(body.replace(b"12.3", b"99.9"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(body, headers)


@pytest.mark.parametrize("receiver", [OLD, NEW], ids=["knows-old", "knows-new"])
def test_rotation_either_secret_verifies(receiver: str) -> None:
    body = orjson.dumps(alert())
    headers = signed_headers([webhook_secret(OLD), webhook_secret(NEW)], "msg_x", body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert all(s.startswith("v1,") for s in headers["webhook-signature"].split(" "))
    Webhook(receiver).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(body, headers)


def test_secret_forms() -> None:
    raw = b"the new secret, 32 bytes long!!!"
    b64 = base64.b64encode(raw).decode()
    # whsec_ prefix or not, padded or not: the same key the reference library reads
    assert webhook_secret(NEW) == webhook_secret(b64) == webhook_secret(b64.rstrip("=")) == raw
    assert webhook_secret(raw) == raw  # bytes are the key itself
    body = orjson.dumps(alert())
    Webhook(b64).verify(body, signed_headers([webhook_secret(b64)], "msg_x", body))
    with pytest.raises(ValueError, match="base64"):
        webhook_secret("not base64 at all!")
    with pytest.raises(ValueError, match="empty"):
        webhook_secret("whsec_")
    with pytest.raises(ValueError):
        WebhookSink("http://127.0.0.1:9/hook", [])


def test_webhook_id_is_stable_per_transition() -> None:
    firing = alert()
    assert webhook_id(firing) == webhook_id(dict(firing, value=20.0, updated_at_ns=1))
    resolved = alert(status="resolved", ends_at_ns=1_764_100_600_000_000_000)
    assert webhook_id(resolved) != webhook_id(firing)
    assert webhook_id(alert(fp="other")) != webhook_id(firing)
    refired = alert(starts_at_ns=1_764_100_900_000_000_000)
    assert webhook_id(refired) != webhook_id(firing)


# -- backoff


def test_backoff_is_full_jitter_and_capped() -> None:
    for attempt in range(1, 40):
        ceiling = min(alerting.BACKOFF_CAP_S, alerting.BACKOFF_BASE_S * 2 ** (attempt - 1))
        assert backoff_delay(attempt, rng=lambda: 0.0) == 0.0
        assert backoff_delay(attempt, rng=lambda: 1.0) == pytest.approx(ceiling)
        assert 0.0 <= backoff_delay(attempt) <= ceiling
    assert backoff_delay(10_000, base_s=1.0, cap_s=3.0, rng=lambda: 1.0) == 3.0
    assert backoff_delay(1, base_s=1.0, cap_s=3.0, rng=lambda: 1.0) == 1.0
    assert backoff_delay(2, base_s=1.0, cap_s=3.0, rng=lambda: 1.0) == 2.0


def test_retry_after() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_s(date, now=now) == pytest.approx(30, abs=1.0)
    assert retry_after_s(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


# -- Alertmanager payload


def test_alertmanager_render_firing_and_resolved() -> None:
    sink = AlertmanagerSink("http://am:9093/", resend_interval_s=30.0)
    assert sink.endpoint == "http://am:9093/api/v2/alerts"
    now = 1_764_100_060_000_000_000
    firing = sink.render(alert(), now)
    assert firing["startsAt"] == "2025-11-25T19:46:40.000000000Z"
    assert firing["endsAt"] == rfc3339(now + 120 * 10**9)
    assert firing["labels"]["tool"] == "search"
    assert firing["annotations"]["summary"] == "search burns its error budget"
    resolved = sink.render(alert(status="resolved", ends_at_ns=now - 10**9), now)
    assert resolved["endsAt"] == rfc3339(now - 10**9)
    # an ends_at from a clock ahead is not allowed to keep the alert active
    ahead = sink.render(alert(status="resolved", ends_at_ns=now + 60 * 10**9), now)
    assert ahead["endsAt"] == rfc3339(now)
    unnamed = sink.render(alert(labels={"tool": "x"}), now)
    assert unnamed["labels"]["alertname"] == "tool_error_budget_fast_burn"


# -- queue bounds


def test_alertmanager_full_drops_new_fingerprints_but_keeps_resolutions() -> None:
    counted: list[tuple[str, str, int]] = []
    sink = AlertmanagerSink("http://127.0.0.1:9", max_queue=2,
                            counter=lambda *c: counted.append(c))
    sink.submit(alert("a"))
    sink.submit(alert("b"))
    sink.submit(alert("a", value=99.0))           # an update: replaces, does not grow
    assert sink.pending == 2 and sink.stats["dropped"] == 0
    sink.submit(alert("c"))                       # a third alert: dropped, counted
    assert sink.pending == 2 and sink.stats["dropped"] == 1
    assert counted == [("alertmanager", "dropped", 1)]
    sink.submit(alert("a", status="resolved", ends_at_ns=1))  # a resolution always fits
    assert sink.pending == 2 and sink.stats["dropped"] == 1
    sink.submit({"status": "firing"})             # not a transition: rejected, not raised
    assert sink.stats["rejected"] == 1


def test_webhook_full_drops_the_oldest() -> None:
    counted: list[tuple[str, str, int]] = []
    sink = WebhookSink("http://127.0.0.1:9/hook", NEW, max_queue=3,
                       counter=lambda *c: counted.append(c))
    for i in range(5):
        sink.submit(alert(f"fp{i}"))
    assert sink.pending == 3
    assert sink.stats["dropped"] == 2
    assert counted == [("webhook", "dropped", 1), ("webhook", "dropped", 1)]
    assert [orjson.loads(o.body)["fingerprint"] for o in sink._queue] == ["fp2", "fp3", "fp4"]


def test_submit_is_fast_without_a_loop_and_a_broken_counter_is_harmless() -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("metrics down")

    sink = WebhookSink("http://127.0.0.1:9/hook", NEW, max_queue=1, counter=broken)
    t0 = time.perf_counter()
    for i in range(1000):
        sink.submit(alert(f"fp{i}"))
    assert time.perf_counter() - t0 < 0.5
    assert sink.stats["dropped"] == 999


# -- retry decisions, with a fake POST


class FakePost:
    """Answers POSTs from a script of statuses (or exceptions), recording each request."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, bytes, dict]] = []

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]):
        self.requests.append((url, body, dict(headers)))
        step = self.script.pop(0) if self.script else 200
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, tuple):
            return step
        return step, {}


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerting, "backoff_delay", lambda attempt: 0.001)


async def test_webhook_retries_5xx_429_and_network_errors_then_sends(fast_backoff) -> None:
    sink = WebhookSink("http://rx/hook", [OLD, NEW])
    sink._post = fake = FakePost([503, OSError("refused"), (429, {"Retry-After": "0"}), 200])
    await sink.start()
    try:
        sink.submit(alert())
        await wait_until(lambda: sink.stats["sent"] == 1)
        assert sink.stats == {"sent": 1, "retried": 3, "dropped": 0, "rejected": 0}
        ids = {h["webhook-id"] for _, _, h in fake.requests}
        assert ids == {webhook_id(alert())}
        for _, body, h in fake.requests:
            Webhook(OLD).verify(body, h)
    finally:
        await sink.stop()


async def test_webhook_4xx_is_rejected_not_retried(fast_backoff) -> None:
    sink = WebhookSink("http://rx/hook", NEW)
    sink._post = fake = FakePost([400])
    await sink.start()
    try:
        sink.submit(alert())
        await wait_until(lambda: sink.stats["rejected"] == 1)
        assert len(fake.requests) == 1 and sink.stats["retried"] == 0
    finally:
        await sink.stop()


async def test_webhook_bounded_by_attempts(fast_backoff) -> None:
    sink = WebhookSink("http://rx/hook", NEW, max_attempts=3)
    sink._post = fake = FakePost([500] * 10)
    await sink.start()
    try:
        sink.submit(alert())
        await wait_until(lambda: sink.stats["dropped"] == 1)
        assert len(fake.requests) == 3 and sink.stats["retried"] == 2
    finally:
        await sink.stop()


async def test_webhook_retry_after_beyond_the_time_bound_drops(fast_backoff) -> None:
    sink = WebhookSink("http://rx/hook", NEW, max_retry_s=1.0)
    sink._post = fake = FakePost([(503, {"Retry-After": "3600"})])
    await sink.start()
    try:
        sink.submit(alert())
        await wait_until(lambda: sink.stats["dropped"] == 1)
        assert len(fake.requests) == 1  # did not retry before the receiver asked
    finally:
        await sink.stop()


async def test_alertmanager_retries_batches_then_drops_and_keeps_firing(fast_backoff) -> None:
    sink = AlertmanagerSink("http://am", max_retry_s=0.05, resend_interval_s=3600)
    sink._post = fake = FakePost([500] * 1000)
    await sink.start()
    try:
        sink.submit(alert("a"))
        sink.submit(alert("b", status="resolved", ends_at_ns=time.time_ns()))
        await wait_until(lambda: sink.stats["dropped"] == 2)
        assert sink.stats["retried"] >= 2 and sink.stats["retried"] % 2 == 0
        assert len(orjson.loads(fake.requests[0][1])) == 2  # one batch
        assert sink.pending == 1  # the firing alert stays, for the next resend; the resolved goes
    finally:
        await sink.stop(timeout_s=0.5)


async def test_alertmanager_stop_flushes_once(fast_backoff) -> None:
    sink = AlertmanagerSink("http://am", resend_interval_s=3600)
    sink._post = fake = FakePost([])
    sink.submit(alert("a"))   # before start: kept until the flush
    await sink.stop()
    assert len(fake.requests) == 1 and sink.stats["sent"] == 1 and sink.pending == 0
