"""The closed loop's stage in the worker: the resource predictor and the pool autoscaler run on
the KPI rows of each KPI partition, and what they decide lands and goes out exactly like alerts.

Why on the KPI rows. Events are keyed by session, so one philosophy's resource samples and one
pool's acquisitions are spread over every events partition and every worker; the closed windows
are partial aggregates (mergeable sketches, sums) published to ``agentflux.kpis`` with a
partition key that brings all of a philosophy's resource rows, and all of a pool's rows, to one
KPI partition (:func:`agentflux.streams.windows.partition_key`). The owner of that partition sees
everything the predictor needs for the philosophy and the autoscaler for the pool, whichever
worker counted the events, and nothing is counted twice (rows have ids; the lander takes each
KPI offset once).

Per KPI batch the lander hands this stage each partition's documents (rows and the progress
markers that advance its clock, the event time up to which every events partition has
published); it returns the predictions (only those that moved) and the autoscaler's commands.
They land in the history's ``predictions`` and ``pool_commands`` tables with the KPI offsets
that produced them, before the KPI segment that commits the range (a batch replayed after a
crash decides again from the same rows), and are published once committed: predictions to the
compacted ``agentflux.predictions`` (key = ``philosophy`` or ``philosophy/tool``), commands,
signed with the first of ``AGENTFLUX_COMMAND_KEYS``, to ``agentflux.pool.commands`` (key = pool).

Commands are not sent when no key is set (they land, marked unpublished) or when they were
decided on rows far behind the wall clock (a backlog being caught up: acting on an hour-old
demand would be wrong; they land, marked stale). The state (histograms, recommendations inside
the stabilisation window) lives in memory per KPI partition; a partition's new owner starts
afresh (bounds wide, confidence low, no command until it has windows to go on).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable

import orjson

from agentflux import commands as cmds
from agentflux.config import ConfigError

log = logging.getLogger("agentflux.loop")

# decisions on rows further behind the wall clock than this many KPI windows are not sent
STALE_WINDOWS = 6


def load_policy(path: str | None) -> Any:
    """The autoscaler policy (with its ``predictor:`` section) from ``path``, or the defaults;
    a bad file is a :class:`ConfigError` naming the key."""
    from agentflux.agents.autoscaler import AutoscalerPolicy
    if not path:
        return AutoscalerPolicy()
    try:
        return AutoscalerPolicy.from_yaml(path)
    except FileNotFoundError:
        raise ConfigError(f"AGENTFLUX_AUTOSCALER_POLICY={path!r}: no such file (give a policy "
                          "YAML like deploy/autoscaler.yaml, or unset it for the defaults)") from None
    except ValueError as exc:
        raise ConfigError(f"autoscaler policy {path}: {exc}") from None


class ClosedLoop:
    """Predictor and autoscaler per KPI partition; what they decide, signed and published."""

    def __init__(self, ctx: Any, policy: Any = None, clock: Any = time.time_ns):
        from agentflux.agents.predictor import PredictorPolicy
        self.ctx = ctx
        s = ctx.settings
        self.policy = policy if policy is not None else load_policy(s.autoscaler_policy)
        try:
            self.predictor_policy = PredictorPolicy.from_dict(
                getattr(self.policy, "predictor", None) or {})
        except ValueError as exc:
            raise ConfigError(f"autoscaler policy, predictor section: {exc}") from None
        self.keys = cmds.keys_of(s.command_keys)
        self.stale_ns = int(STALE_WINDOWS * (s.window_s + s.grace_s) * 1e9)
        self.clock = clock
        self.parts: dict[int, tuple[Any, Any]] = {}
        self.now: dict[int, int] = {}  # partition -> its event-time clock
        self._ready: list[tuple[str, bytes, bytes]] = []  # (kind, key, value) committed, to send
        self._warned = False

    def _of(self, partition: int) -> tuple[Any, Any]:
        got = self.parts.get(partition)
        if got is None:
            from agentflux.agents.autoscaler import Autoscaler
            from agentflux.agents.predictor import Predictor
            got = self.parts[partition] = (Predictor(self.predictor_policy),
                                           Autoscaler(self.policy))
        return got

    def observe(self, partition: int, docs: Iterable[dict]) -> tuple[list[dict], list[dict]]:
        """The predictions and commands the partition's new documents lead to; each command
        carries ``published`` (False: landed only) and, with a key, its signature."""
        predictor, scaler = self._of(partition)
        now = self.now.get(partition, 0)
        for d in docs:
            kind = d.get("kind")
            if kind == "progress":
                now = max(now, int(d.get("done_before_ns") or 0))
                scaler.observe(d)
            elif kind == "kpi":
                now = max(now, int(d.get("window_end_ns") or 0))
                predictor.observe(d)
                scaler.observe(d)
        self.now[partition] = now
        if not now:
            return [], []
        worker = self.ctx.worker
        predictions = predictor.predictions(now, issuer=worker, only_changed=True)
        commands = scaler.decide(now)
        stale = self.clock() - now > self.stale_ns
        out = []
        for c in commands:
            c["issuer"] = worker
            if self.keys:
                cmds.sign(c, self.keys[0])
            out.append((c, bool(self.keys) and not stale, stale))
        return predictions, out

    def committed(self, predictions: list[dict], commands: list[tuple[dict, bool, bool]]) -> None:
        """Their rows landed: queue them for the topics."""
        metrics = self.ctx.metrics
        for p in predictions:
            self._ready.append(("prediction", p["key"].encode(), orjson.dumps(p)))
        for c, send, stale in commands:
            metrics.set_pool_target(c["pool"], c["target"])
            if send:
                self._ready.append(("command", c["pool"].encode(), orjson.dumps(c)))
            else:
                metrics.count_loop("command", "stale" if stale else "unsigned")
                if not self.keys and not self._warned:
                    self._warned = True
                    log.warning("AGENTFLUX_COMMAND_KEYS is not set: pool commands are decided "
                                "and landed in the history but not published (pool managers "
                                "accept only signed commands)")

    async def publish(self) -> None:
        """Send what is committed (kept for the next batch if the broker refuses)."""
        if not self._ready or self.ctx.settings.replay:
            self._ready.clear()
            return
        ready, self._ready = self._ready, []
        topics = self.ctx.topics
        try:
            futures = [await (topics.predictions if kind == "prediction" else
                              topics.pool_commands).send(key=key, value=value)
                       for kind, key, value in ready]
            for f in futures:
                await f
        except Exception as exc:  # around a start or a stop: kept, sent with the next batch
            log.warning("%d predictions/commands not published yet (%r); retrying", len(ready),
                        exc)
            for kind in {k for k, _, _ in ready}:
                self.ctx.metrics.count_loop(kind, "failed", sum(1 for k, _, _ in ready
                                                                 if k == kind))
            self._ready[:0] = ready
            return
        for kind in ("prediction", "command"):
            n = sum(1 for k, _, _ in ready if k == kind)
            if n:
                self.ctx.metrics.count_loop(kind, "published", n)

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.parts.pop(p, None)
            self.now.pop(p, None)
