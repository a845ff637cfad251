"""Alert delivery: the failure detector's transitions to Alertmanager (API v2) and to signed webhooks.

The detector (``agents/failures.py``) emits a transition dict per change of an alert::

    {"fingerprint", "status": "firing"|"resolved", "rule", "kind", "severity", "labels",
     "annotations", "starts_at_ns", "ends_at_ns", "updated_at_ns", "value", "threshold"}

and hands it to :meth:`submit` from the worker's event loop. Delivery must never slow the stream
down, so ``submit`` is a plain method that only records the transition in a bounded structure;
a background task does the HTTP. A receiver that is down, slow or black-holing costs bounded
memory (``max_queue``), bounded time per transition (``timeout_s`` per request, ``max_retry_s``
and, for webhooks, ``max_attempts``) and shows up in the counters; it is never silent and it
never blocks the caller.

**Alertmanager** (:class:`AlertmanagerSink`) is told the *state* of alerts, the way Prometheus
does it: a firing alert is posted with ``endsAt = now + 4 * resend_interval`` and posted again
every ``resend_interval`` while it fires, so Alertmanager keeps it active exactly as long as we
keep saying so (and expires it by itself if this worker dies); a resolved alert is posted once
with its ``endsAt`` and then forgotten. Because only the latest state per fingerprint matters,
transitions are coalesced by fingerprint: the bounded "queue" is the set of alerts we know about.

**Webhooks** (:class:`WebhookSink`) get every transition as its own POST, signed per the Standard
Webhooks specification (https://www.standardwebhooks.com) so a receiver can check origin,
integrity and freshness, and de-duplicate retries by ``webhook-id``.

**Counting.** Both sinks keep totals in ``stats`` (``sent``, ``retried``, ``dropped``,
``rejected``: alerts, not requests) and report them to an optional
``counter(sink, outcome, n)`` (e.g. a Prometheus counter's ``labels(...).inc``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import email.utils
import hashlib
import hmac
import logging
import random
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import aiohttp
import orjson

log = logging.getLogger("agentflux.alerting")

Counter = Callable[[str, str, int], Any]
OUTCOMES = ("sent", "retried", "dropped", "rejected")
BACKOFF_BASE_S = 0.2   # the first retry waits up to this long
BACKOFF_CAP_S = 10.0   # ... and no retry waits longer than this (unless Retry-After says so)
AM_BATCH_MAX = 256     # alerts per Alertmanager POST (Prometheus' notifier uses the same)
SECRET_PREFIX = "whsec_"
RETRYABLE_STATUS = frozenset({408, 429})  # plus every 5xx


# ---------------------------------------------------------------------------------------------
# helpers shared by both sinks


def backoff_delay(attempt: int, *, base_s: float = BACKOFF_BASE_S, cap_s: float = BACKOFF_CAP_S,
                  rng: Callable[[], float] = random.random) -> float:
    """How long to wait before retry number ``attempt`` (1 for the first retry).

    "Full jitter" (uniform in ``[0, min(cap, base * 2**(attempt-1))]``): many workers that lost
    the same receiver at the same moment spread their retries out instead of hitting it in
    synchronised waves when it comes back.
    """
    ceiling = min(cap_s, base_s * 2.0 ** min(max(attempt - 1, 0), 62))
    return rng() * ceiling


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def rfc3339(ns: int) -> str:
    """Epoch nanoseconds as RFC 3339 UTC with nanosecond precision (what Go's time parser reads)."""
    seconds, frac = divmod(int(ns), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


def _retryable(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_STATUS


class _Base:
    """Counting, the lifecycle of the background task and the HTTP session, shared by the sinks."""

    sink_name = ""

    def __init__(self, url: str, *, timeout_s: float, max_queue: int, max_retry_s: float,
                 counter: Counter | None) -> None:
        if max_queue < 1 or timeout_s <= 0 or max_retry_s < 0:
            raise ValueError("max_queue must be >= 1, timeout_s > 0 and max_retry_s >= 0")
        self.url = url
        self.timeout_s = float(timeout_s)
        self.max_queue = int(max_queue)
        self.max_retry_s = float(max_retry_s)
        self.counter = counter
        self.stats: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self._lock = threading.Lock()  # submit() may come from another thread than the loop's
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- counting

    def _count(self, outcome: str, n: int = 1) -> None:
        if n <= 0:
            return
        with self._lock:
            self.stats[outcome] += n
        if self.counter is not None:
            try:
                self.counter(self.sink_name, outcome, n)
            except Exception:  # a broken metric must not stop delivery
                log.exception("alert counter failed")

    # -- waking the background task from submit()

    def _notify(self) -> None:
        """Wake the delivery task; safe from the loop's thread or any other (never blocks)."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return  # not started yet: run() looks at what is pending when it starts
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
            return
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the loop closed meanwhile: the next start() sees what is pending
            pass

    # -- lifecycle

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # the total timeout bounds connect + send + read of one request; the connector's
            # limit bounds sockets (a black-holing receiver cannot make us open thousands)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=8))
        return self._session

    async def start(self) -> None:
        """Start delivering in a background task of the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name=f"agentflux-{self.sink_name}-sink")

    async def run(self) -> None:
        """Deliver until cancelled. :meth:`start` runs this as a task; :meth:`stop` ends it."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._ensure_session()
        await self._serve()

    async def stop(self, timeout_s: float | None = None) -> None:
        """Stop the task, then try once, for at most ``timeout_s`` (default: the sink's
        ``timeout_s``), to deliver what is still pending; what that does not deliver is dropped
        and counted. Closes the HTTP session."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("%s sink task failed", self.sink_name)
        budget = self.timeout_s if timeout_s is None else timeout_s
        try:
            await asyncio.wait_for(self._flush(budget), timeout=budget)
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as e:
            log.warning("%s sink: final flush incomplete: %r", self.sink_name, e)
        finally:
            self._drop_all_pending()
            if self._session is not None:
                await self._session.close()
                self._session = None
            self._loop = self._wake = None

    async def _wait(self, timeout_s: float | None) -> None:
        """Sleep until submit() wakes us or ``timeout_s`` passes."""
        assert self._wake is not None
        try:
            if timeout_s is None:
                await self._wake.wait()
            else:
                await asyncio.wait_for(self._wake.wait(), timeout=max(timeout_s, 0.0))
        except asyncio.TimeoutError:
            pass
        self._wake.clear()

    # -- the subclasses' part

    async def _serve(self) -> None:
        raise NotImplementedError

    async def _flush(self, budget_s: float) -> None:
        raise NotImplementedError

    def _drop_all_pending(self) -> None:
        raise NotImplementedError

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str]
                    ) -> tuple[int, Mapping[str, str]]:
        """One POST: the status and the response headers. Raises on network errors and timeouts
        (a seam for unit tests, which replace it with an in-process fake)."""
        session = self._ensure_session()
        async with session.post(url, data=body, headers=dict(headers),
                                allow_redirects=False) as resp:
            await resp.read()
            return resp.status, resp.headers


def _valid(alert: Any) -> bool:
    return (isinstance(alert, dict) and isinstance(alert.get("fingerprint"), str)
            and alert.get("status") in ("firing", "resolved"))


# ---------------------------------------------------------------------------------------------
# Alertmanager


class AlertmanagerSink(_Base):
    """Alert state to Alertmanager's API v2 (``POST {url}/api/v2/alerts``), as Prometheus sends it.

    Pending state is one entry per fingerprint (a newer transition replaces the older one, so a
    burst of updates of one alert costs nothing). When ``max_queue`` alerts are known, a
    transition of a *new* fingerprint is dropped and counted; transitions of known alerts are
    always kept, so a resolution is never lost to a full queue and no alert is left firing
    forever. A POST that fails (network, timeout, 5xx, 429) is retried with full-jitter backoff
    for at most ``max_retry_s``, then its alerts are counted as dropped: a firing one is still
    re-sent at the next resend; a resolved one is forgotten, and Alertmanager expires it by
    itself at the last ``endsAt`` it got (at most ``4 * resend_interval_s`` later). A 4xx other
    than 408/429 means Alertmanager refused the alerts: counted as rejected, not retried.
    """

    sink_name = "alertmanager"


    resends_active = True  # keeps firing alerts alive: hand it the active ones after a restart

    def __init__(self, url: str, *, resend_interval_s: float = 30.0, timeout_s: float = 5.0,
                 max_queue: int = 10_000, max_retry_s: float = 60.0,
                 counter: Counter | None = None, generator_url: str = "") -> None:
        super().__init__(url, timeout_s=timeout_s, max_queue=max_queue, max_retry_s=max_retry_s,
                         counter=counter)
        if resend_interval_s <= 0:
            raise ValueError("resend_interval_s must be > 0")
        self.resend_interval_s = float(resend_interval_s)
        self.generator_url = generator_url
        self.endpoint = f"{url.rstrip('/')}/api/v2/alerts"
        self._alerts: dict[str, dict] = {}  # fingerprint -> latest transition not yet forgotten
        self._dirty: dict[str, None] = {}   # fingerprints to send now (ordered set)
        self._last_resend = 0.0             # monotonic time every firing alert was last sent

    @property
    def pending(self) -> int:
        """Alerts this sink still knows about (firing, or resolved and not yet sent)."""
        return len(self._alerts)

    def submit(self, alert: dict) -> None:
        """Record a transition for delivery; O(1), never blocks, never raises on bad input."""
        if not _valid(alert):
            log.warning("alertmanager sink: not an alert transition, rejected: %r", alert)
            self._count("rejected")
            return
        fp = alert["fingerprint"]
        with self._lock:
            if fp not in self._alerts and len(self._alerts) >= self.max_queue:
                dropped = True
            else:
                dropped = False
                self._alerts[fp] = alert
                self._dirty[fp] = None
        if dropped:
            self._count("dropped")
            return
        self._notify()

    # -- payload

    def render(self, alert: dict, now_ns: int | None = None) -> dict:
        """An alert transition as Alertmanager's ``postableAlert``.

        Firing: ``endsAt = now + 4 * resend_interval`` (computed per attempt, so a retried POST
        never carries an ``endsAt`` already in the past, which would resolve the alert).
        Resolved: ``endsAt = ends_at_ns``, but never later than now: an event time from a clock
        ahead of Alertmanager's would otherwise keep the alert active until then. ``startsAt`` is
        never after ``endsAt`` (Alertmanager rejects that).
        """
        now_ns = time.time_ns() if now_ns is None else now_ns
        if alert["status"] == "firing":
            ends = now_ns + int(4 * self.resend_interval_s * 1e9)
        else:
            ends = min(int(alert.get("ends_at_ns") or now_ns), now_ns)
        starts = min(int(alert.get("starts_at_ns") or now_ns), ends)
        labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
        labels.setdefault("alertname", str(alert.get("rule") or "agentflux"))
        out = {
            "labels": labels,
            "annotations": {str(k): str(v) for k, v in (alert.get("annotations") or {}).items()},
            "startsAt": rfc3339(starts),
            "endsAt": rfc3339(ends),
        }
        url = alert.get("generator_url") or self.generator_url
        if url:
            out["generatorURL"] = url
        return out

    # -- delivery

    def _take_due(self, now: float) -> list[dict]:
        """What to send now: every known alert when a resend is due, else the changed ones."""
        with self._lock:
            if now - self._last_resend >= self.resend_interval_s:
                self._last_resend = now
                batch = list(self._alerts.values())
            else:
                batch = [self._alerts[fp] for fp in self._dirty if fp in self._alerts]
            self._dirty.clear()
        return batch

    def _forget_resolved(self, batch: Iterable[dict]) -> None:
        """Forget the resolved alerts of a batch that is done (sent or given up on), unless a
        newer transition of the same fingerprint arrived meanwhile."""
        with self._lock:
            for a in batch:
                if a["status"] == "resolved" and self._alerts.get(a["fingerprint"]) is a:
                    del self._alerts[a["fingerprint"]]
                    self._dirty.pop(a["fingerprint"], None)

    def _requeue(self, batch: Iterable[dict]) -> None:
        with self._lock:
            for a in batch:
                if self._alerts.get(a["fingerprint"]) is a:
                    self._dirty[a["fingerprint"]] = None

    async def _serve(self) -> None:
        while True:
            batch = self._take_due(time.monotonic())
            for i in range(0, len(batch), AM_BATCH_MAX):
                chunk = batch[i:i + AM_BATCH_MAX]
                try:
                    await self._deliver(chunk)
                except asyncio.CancelledError:
                    self._requeue(batch[i:])  # stop() flushes them
                    raise
            next_resend = self._last_resend + self.resend_interval_s - time.monotonic()
            await self._wait(next_resend if self._alerts else None)

    async def _deliver(self, batch: list[dict]) -> None:
        """POST one batch, retrying within ``max_retry_s``; count the outcome."""
        deadline = time.monotonic() + self.max_retry_s
        attempt = 0
        while True:
            status, wait_s = await self._attempt(batch)
            if status == "sent" or status == "rejected":
                self._count(status, len(batch))
                break
            attempt += 1
            delay = max(backoff_delay(attempt), wait_s or 0.0)
            if time.monotonic() + delay > deadline:
                log.warning("alertmanager sink: giving up on %d alerts after %d attempts",
                            len(batch), attempt)
                self._count("dropped", len(batch))
                break
            self._count("retried", len(batch))
            await asyncio.sleep(delay)
        self._forget_resolved(batch)

    async def _attempt(self, batch: list[dict]) -> tuple[str, float | None]:
        """One POST: ("sent" | "rejected" | "retry", the Retry-After wait if any)."""
        now_ns = time.time_ns()
        body = orjson.dumps([self.render(a, now_ns) for a in batch])
        try:
            status, headers = await self._post(self.endpoint, body,
                                               {"Content-Type": "application/json"})
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            log.debug("alertmanager sink: POST failed: %r", e)
            return "retry", None
        if 200 <= status < 300:
            return "sent", None
        if _retryable(status):
            return "retry", retry_after_s(headers.get("Retry-After"))
        log.warning("alertmanager sink: %d alerts rejected with HTTP %d", len(batch), status)
        return "rejected", None

    async def _flush(self, budget_s: float) -> None:
        """One attempt for what changed since the last POST (new, updated, resolved alerts)."""
        with self._lock:
            batch = [self._alerts[fp] for fp in self._dirty if fp in self._alerts]
            self._dirty.clear()
        for i in range(0, len(batch), AM_BATCH_MAX):
            chunk = batch[i:i + AM_BATCH_MAX]
            try:
                status, _ = await self._attempt(chunk)
            except asyncio.CancelledError:
                self._requeue(batch[i:])  # out of time: _drop_all_pending counts them
                raise
            self._count("dropped" if status == "retry" else status, len(chunk))
            self._forget_resolved(chunk)

    def _drop_all_pending(self) -> None:
        with self._lock:
            unsent = sum(1 for fp in self._dirty if fp in self._alerts)
            self._dirty.clear()
            self._alerts.clear()
        self._count("dropped", unsent)


# ---------------------------------------------------------------------------------------------
# Standard Webhooks


def webhook_secret(secret: str | bytes) -> bytes:
    """The HMAC key of a configured secret.

    A string is base64, with or without the ``whsec_`` prefix (padding optional), exactly as
    the standardwebhooks libraries read it, so sender and receiver configured with the same
    string use the same key. Bytes are the key itself. A string that is not valid base64 is
    refused (ValueError) instead of being read differently from how a receiver would read it.
    """
    if isinstance(secret, (bytes, bytearray)):
        key = bytes(secret)
    else:
        text = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
        text = text.strip().rstrip("=")
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError("a webhook secret string must be base64 (optionally whsec_...)"
                             ) from e
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def webhook_id(alert: Mapping[str, Any]) -> str:
    """The ``webhook-id`` of a transition: the same for every retry (and every re-submission)
    of one transition, different for its resolution, so receivers can de-duplicate."""
    ends = alert.get("ends_at_ns") if alert["status"] == "resolved" else None
    key = f"{alert['fingerprint']}:{alert['status']}:{alert.get('starts_at_ns') or ''}:{ends or ''}"
    return "msg_" + hashlib.sha256(key.encode()).hexdigest()[:32]


def sign(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,<base64 HMAC-SHA256>`` per key, space-separated
    (several keys while a secret is rotated: a receiver that knows any one of them verifies)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode()
                    for k in keys)


def signed_headers(keys: Sequence[bytes], msg_id: str, body: bytes,
                   timestamp: int | None = None) -> dict[str, str]:
    """The headers of one attempt (the timestamp is the attempt's: receivers reject stale ones)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign(keys, msg_id, ts, body),
            "content-type": "application/json"}


class _Outgoing:
    """A transition waiting for its webhook: the exact body bytes and id every attempt reuses."""

    __slots__ = ("msg_id", "body", "enqueued")

    def __init__(self, alert: dict) -> None:
        self.msg_id = webhook_id(alert)
        self.body = orjson.dumps(alert)
        self.enqueued = time.monotonic()


class WebhookSink(_Base):
    """Every transition to ``url`` as one POST, body = the transition's JSON, signed per the
    Standard Webhooks specification with each of ``secrets`` (see :func:`webhook_secret`).

    Transitions are sent one at a time in order (a resolution never overtakes its firing). When
    ``max_queue`` are waiting, the *oldest* is dropped and counted: the newest says the most
    about the present. A POST that fails (network, timeout, 408, 429, 5xx) is retried with the
    same ``webhook-id`` and a fresh timestamp and signature, after a full-jitter backoff (or the
    ``Retry-After`` asked for, if longer), at most ``max_attempts`` attempts and only while the
    transition is younger than ``max_retry_s`` (its first attempt is always made); then it is
    dropped and counted. Another 4xx is the receiver refusing it: counted as rejected.
    """

    sink_name = "webhook"

    def __init__(self, url: str, secrets: str | bytes | Sequence[str | bytes], *,
                 timeout_s: float = 5.0, max_queue: int = 10_000, max_attempts: int = 8,
                 max_retry_s: float = 60.0, counter: Counter | None = None) -> None:
        super().__init__(url, timeout_s=timeout_s, max_queue=max_queue, max_retry_s=max_retry_s,
                         counter=counter)
        if isinstance(secrets, (str, bytes, bytearray)):
            secrets = [secrets]
        self.keys = [webhook_secret(s) for s in secrets]
        if not self.keys:
            raise ValueError("at least one webhook secret is needed")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.max_attempts = int(max_attempts)
        self._queue: collections.deque[_Outgoing] = collections.deque()

    @property
    def pending(self) -> int:
        """Transitions waiting for their first attempt."""
        return len(self._queue)

    def submit(self, alert: dict) -> None:
        """Queue a transition; O(1) but for serialising it, never blocks, never raises on bad
        input (counted as rejected)."""
        if not _valid(alert):
            log.warning("webhook sink: not an alert transition, rejected: %r", alert)
            self._count("rejected")
            return
        try:
            item = _Outgoing(alert)
        except (TypeError, orjson.JSONEncodeError):
            log.warning("webhook sink: alert not serialisable, rejected: %r", alert)
            self._count("rejected")
            return
        with self._lock:
            dropped = 0
            while len(self._queue) >= self.max_queue:
                self._queue.popleft()
                dropped += 1
            self._queue.append(item)
        self._count("dropped", dropped)
        self._notify()

    def _pop(self) -> _Outgoing | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    async def _serve(self) -> None:
        while True:
            item = self._pop()
            if item is None:
                await self._wait(None)
                continue
            try:
                await self._deliver(item)
            except asyncio.CancelledError:
                with self._lock:
                    self._queue.appendleft(item)  # stop() flushes it
                raise

    async def _deliver(self, item: _Outgoing) -> None:
        deadline = item.enqueued + self.max_retry_s
        for attempt in range(1, self.max_attempts + 1):
            outcome, wait_s = await self._attempt(item)
            if outcome != "retry":
                self._count(outcome)
                return
            delay = max(backoff_delay(attempt), wait_s or 0.0)
            if attempt == self.max_attempts or time.monotonic() + delay > deadline:
                break
            self._count("retried")
            await asyncio.sleep(delay)
        log.warning("webhook sink: dropping %s after %d attempts", item.msg_id, attempt)
        self._count("dropped")

    async def _attempt(self, item: _Outgoing) -> tuple[str, float | None]:
        headers = signed_headers(self.keys, item.msg_id, item.body)
        try:
            status, resp_headers = await self._post(self.url, item.body, headers)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            log.debug("webhook sink: POST %s failed: %r", item.msg_id, e)
            return "retry", None
        if 200 <= status < 300:
            return "sent", None
        if _retryable(status):
            return "retry", retry_after_s(resp_headers.get("Retry-After"))
        log.warning("webhook sink: %s rejected with HTTP %d", item.msg_id, status)
        return "rejected", None

    async def _flush(self, budget_s: float) -> None:
        """One attempt per waiting transition, oldest first, within the budget."""
        while (item := self._pop()) is not None:
            try:
                outcome, _ = await self._attempt(item)
            except asyncio.CancelledError:
                with self._lock:
                    self._queue.appendleft(item)
                raise
            self._count("dropped" if outcome == "retry" else outcome)

    def _drop_all_pending(self) -> None:
        with self._lock:
            n = len(self._queue)
            self._queue.clear()
        self._count("dropped", n)
