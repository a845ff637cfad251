"""Failure patterns on the KPI stream, and the alerts they raise, exactly once.

The worker that owns a partition of ``agentflux.kpis`` (the KPI lander,
:class:`agentflux.agents.history.KpiHistory`) feeds each batch of KPI rows to a
:class:`~agentflux.agents.failures.FailureDetector` for that partition. Its state is stored with the
history's offsets, as the windows' is (:mod:`agentflux.agents.kpis`): before a batch's ``kpis``
segment lands, the detector's state as of that batch and the alert transitions it raised are
written (``<history>/_state/failures/...``; the transitions also as rows of the ``alerts`` table),
and the segment is the commit. A restarted worker, or the partition's next owner, restores the
detector at the landed offset: an alert fires once, across restarts and rebalances.

A committed transition is then delivered: to ``agentflux.alerts`` (key = fingerprint), and to
Alertmanager and a signed webhook when configured (:mod:`agentflux.sinks.alerting`, bounded
queues, never in the way of the stream). A transition stays in the stored *outbox* until the
alerts topic has it, so a crash re-sends it (the same transition; Alertmanager and webhook
receivers de-duplicate by labels and ``webhook-id``).

All KPI rows of a key go to one partition of the KPI topic (key ``dim|type|name|philosophy``);
rules that combine several keys (a fallback storm over the models of a philosophy) see them all
with the default of one KPI partition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, Iterable

import orjson

from agentflux.agents.failures import FailureDetector, Rules
from agentflux.streams.context import PipelineContext

log = logging.getLogger("agentflux.alerts")

STATE_KIND = "failures"
# A partition's detector state is stored with each batch as the delta since the state stored
# with the previous batch (what the batch changed), and in full when the deltas since the last
# full state reach this many, or weigh more than it: restoring reads the full state and the
# deltas after it. (In full every time, it was the whole state per batch: every session of
# the cost horizon.)
MAX_DELTAS = 64


class Alerting:
    def __init__(self, ctx: PipelineContext, rules: Rules, sinks: Iterable[Any] = ()):
        self.ctx = ctx
        # the detector ticks on the windows the worker makes
        self.rules = dataclasses.replace(rules, window_ns=int(ctx.settings.window_s * 1e9))
        self.sinks = list(sinks)
        self.topic = ctx.settings.topics.kpis
        self.log = ctx.log_of(self.topic)
        self.detectors: dict[int, FailureDetector] = {}
        self.outbox: dict[int, list[dict]] = {}  # partition -> transitions not on the topic yet
        self._ready: list[tuple[int, dict]] = []  # committed, to send
        self._epoch = 0  # counts revocations: state read before one is not used after it
        # partition -> offsets of its stored full state and of the deltas after it; and the
        # sizes that decide when the next state is stored in full
        self._chain: dict[int, list[int]] = {}
        self._sizes: dict[int, list[int]] = {}  # [full bytes, delta bytes since]
        self._full_at: dict[int, int] = {}  # a full state written, not committed yet

    async def load(self, partitions: Iterable[int], landed: dict) -> None:
        """Restore the detectors of newly assigned partitions as of their landed offsets."""
        loop = asyncio.get_running_loop()
        epoch = self._epoch
        for p in partitions:
            if p in self.detectors or self._epoch != epoch:
                continue
            offset = landed.get((self.topic, p), -1)
            chain = None
            if offset >= 0:
                chain = await loop.run_in_executor(self.ctx.history_executor, self._read_chain,
                                                   p, offset)
            if self._epoch != epoch or p in self.detectors:  # revoked, or loaded meanwhile
                continue
            if chain is None:
                self.detectors[p] = FailureDetector(self.rules, progress=True)
                self.outbox[p] = []
                continue
            offsets, docs, sizes = chain
            try:
                det = FailureDetector.from_state(self.rules, docs[0]["detector"], progress=True)
                for delta in docs[1:]:
                    det.apply(delta["delta"])
                self._chain[p], self._sizes[p] = offsets, sizes
            except ValueError as exc:  # other rules or window size: start over, say so
                log.warning("failure detector state of partition %d not used (%s): starting "
                            "empty", p, exc)
                det = FailureDetector(self.rules, progress=True)
            self.detectors[p] = det
            self.outbox[p] = docs[-1]["outbox"]
            self._ready += [(p, t) for t in self.outbox[p]]
            # Alertmanager forgets an alert that is not re-sent: the active ones go to it again
            # (a webhook got each transition once already)
            for t in self.detectors[p].active():
                for sink in self.sinks:
                    if getattr(sink, "resends_active", False):
                        sink.submit(t)
        self._set_active()

    def observe(self, partition: int, rows: list[dict]) -> list[dict]:
        det = self.detectors[partition]
        out = det.observe(rows)
        self.outbox[partition] += out
        for rule, n in det.take_evicted().items():
            self.ctx.metrics.count_alert_keys_evicted(rule, n)
        for rule, n in det.take_overflowed().items():
            self.ctx.metrics.count_alert_rows_overflowed(rule, n)
        return out

    def _read_chain(self, partition: int, offset: int) -> tuple[list, list, list] | None:
        """The state stored under ``offset``: the offsets, documents and sizes of its full
        state and the deltas after it, oldest first (None: nothing stored, or a link of the
        chain missing, said in the log)."""
        offsets, docs, sizes = [], [], []
        while True:
            raw = self.ctx.history.get_state(STATE_KIND, self.log, partition, offset)
            if raw is None:
                if docs:
                    log.warning("failure detector state of partition %d: offset %d, which "
                                "the state at %d follows, is missing: starting empty",
                                partition, offset, offsets[0])
                return None
            doc = orjson.loads(raw)
            offsets.append(offset)
            docs.append(doc)
            sizes.append(len(raw))
            if "base" not in doc:
                break
            offset = doc["base"]
        return offsets[::-1], docs[::-1], [sizes[-1], sum(sizes[:-1])]

    def state(self, partition: int, offset: int) -> bytes:
        """The state to store under ``offset`` (the batch's last): the delta since the state
        stored before it, or in full (see :data:`MAX_DELTAS`)."""
        det, chain, sizes = (self.detectors[partition], self._chain.get(partition),
                             self._sizes.get(partition))
        outbox = self.outbox[partition]
        if not chain or len(chain) > MAX_DELTAS or sizes[1] > sizes[0]:
            data = orjson.dumps({"detector": det.state(), "outbox": outbox})
            self._chain[partition], self._sizes[partition] = [offset], [len(data), 0]
            self._full_at[partition] = offset
            return data
        data = orjson.dumps({"base": chain[-1], "delta": det.delta(), "outbox": outbox})
        chain.append(offset)
        sizes[1] += len(data)
        return data

    def write_states(self, states: list[tuple[int, int, bytes]]) -> None:
        for p, offset, data in states:
            self.ctx.history.put_state(STATE_KIND, self.log, p, offset, data)

    def committed(self, partition: int, transitions: list[dict]) -> None:
        """The batch that raised ``transitions`` landed: send them; if its state was stored in
        full, the states stored before it are not needed any more."""
        self._ready += [(partition, t) for t in transitions]
        for t in transitions:
            self.ctx.metrics.count_alert(t["rule"], t["status"])
        full = self._full_at.pop(partition, None)
        if full is not None:
            self.ctx.upkeep_executor.submit(self._drop_before, partition, full)
        self._set_active()

    def _drop_before(self, partition: int, offset: int) -> None:
        h = self.ctx.history
        h.drop_state(STATE_KIND, self.log, partition,
                     [o for o in h.state_offsets(STATE_KIND, self.log, partition) if o < offset])

    def _set_active(self) -> None:
        self.ctx.metrics.set_active_alerts(sum(len(d.active()) for d in self.detectors.values()))

    async def publish(self) -> None:
        """Send the committed transitions to the alerts topic (awaited) and the sinks."""
        if not self._ready or self.ctx.settings.replay:
            return
        ready, self._ready = self._ready, []
        try:
            futures = [await self.ctx.topics.alerts.send(
                key=t["fingerprint"].encode(), value=orjson.dumps(t)) for _, t in ready]
            for f in futures:
                await f
        except Exception as exc:  # around a start or a stop: kept, sent at the next batch
            log.warning("%d alert transitions not published yet (%r); retrying", len(ready), exc)
            self._ready[:0] = ready
            return
        for p, t in ready:
            box = self.outbox.get(p)
            if box is not None and t in box:
                box.remove(t)
            for sink in self.sinks:
                sink.submit(t)

    def forget(self, partitions: Iterable[int]) -> None:
        self._epoch += 1
        for p in partitions:
            self.detectors.pop(p, None)
            self.outbox.pop(p, None)
            self._chain.pop(p, None)
            self._sizes.pop(p, None)
            self._full_at.pop(p, None)
        self._set_active()


def alert_sinks(ctx: PipelineContext) -> list[Any]:
    """The delivery sinks the settings ask for (none: alerts go to the topic and history)."""
    from agentflux.sinks.alerting import AlertmanagerSink, WebhookSink
    s = ctx.settings
    out: list[Any] = []
    counter = ctx.metrics.count_delivery
    if s.alertmanager_url:
        out.append(AlertmanagerSink(s.alertmanager_url, resend_interval_s=s.alert_resend_s,
                                    counter=counter))
    if s.webhook_url:
        secrets = [x.strip() for x in s.webhook_secrets.get_secret_value().split(",")
                   if x.strip()]
        out.append(WebhookSink(s.webhook_url, secrets, counter=counter))
    return out
