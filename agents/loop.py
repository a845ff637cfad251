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
demand would be wrong; they land, marked stale). Once the partition has caught up, a pool whose
last target was not sent that way gets it again in a new command (the autoscaler issues one
only when its target changes, which may be hours later).

State. The predictor's histograms are days of history (a 24-hour half-life): they are stored
with the history's state (``<history>/_state/predictor/<log>/p<partition>/<offset>.state``) at
most every :data:`STATE_EVERY_S` seconds, under the KPI offset they include, once that offset
has landed; a partition's next owner (this worker restarted, or another) restores the latest
one at or below the partition's landed offset and feeds it the landed KPI rows after it, so it
predicts as before the move. The autoscaler's state is minutes: a new owner starts with the
pool's own target as its last recommendation (it scales up at once and down only after a full
stabilisation window).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable

import orjson

from agentflux import commands as cmds
from agentflux.config import ConfigError
from agentflux.sinks.tables import KPI_DOC_COLUMNS, kpi_doc

log = logging.getLogger("agentflux.loop")

# decisions on rows further behind the wall clock than this many KPI windows are not sent
STALE_WINDOWS = 6
# the predictor's state is stored at most this often per KPI partition
STATE_EVERY_S = 60.0
STATE_KIND = "predictor"
# the KPI rows the predictor reads (restoring replays those landed after the stored state)
_PREDICTOR_ROWS = "(dim = 'resource' OR (dim = 'name' AND type = 'tool.call'))"


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
        # partition -> pools whose last target was decided on a backlog and not sent: sent
        # again once the partition has caught up (the target may not change for hours)
        self.unsent: dict[int, set[str]] = {}
        self._ready: list[tuple[str, bytes, bytes]] = []  # (kind, key, value) committed, to send
        self._warned = False
        self.log = ctx.log_of(s.topics.kpis)
        self._stored_at: dict[int, float] = {}  # partition -> monotonic time of its last store
        self._epoch = 0  # counts forget() calls: a load begun before one is not used

    # --- state ------------------------------------------------------------------------------
    async def load(self, partitions: Iterable[int], landed: dict) -> None:
        """Restore the predictors of newly owned KPI partitions as of their landed offsets."""
        import asyncio
        loop = asyncio.get_running_loop()
        epoch = self._epoch
        for p in partitions:
            if p in self.parts:
                continue
            offset = landed.get((self.ctx.settings.topics.kpis, p), -1)
            predictor = None
            if offset >= 0:
                predictor = await loop.run_in_executor(self.ctx.history_executor,
                                                       self._restore, p, offset)
            if self._epoch != epoch or p in self.parts:
                continue
            if predictor is not None:
                from agentflux.agents.autoscaler import Autoscaler
                self.parts[p] = (predictor, Autoscaler(self.policy))
                # (what it would publish now is on the compacted topic already)
                predictor.predictions(predictor_now(predictor), only_changed=True)
                self._stored_at[p] = time.monotonic()

    def _restore(self, partition: int, offset: int) -> Any:
        """The stored predictor at or below ``offset`` plus the landed rows after it (None:
        nothing stored and nothing landed to replay)."""
        from agentflux.agents.predictor import Predictor
        h = self.ctx.history
        stored = [o for o in h.state_offsets(STATE_KIND, self.log, partition) if o <= offset]
        predictor, after = Predictor(self.predictor_policy), -1
        if stored:
            data = h.get_state(STATE_KIND, self.log, partition, max(stored))
            if data is not None:
                try:
                    predictor = Predictor.from_dict(orjson.loads(data), self.predictor_policy)
                    after = max(stored)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("predictor state of KPI partition %d at %d unreadable (%r): "
                                "rebuilt from the landed rows", partition, max(stored), exc)
        for d in self._landed_rows(partition, after, offset):
            predictor.observe(d)
        return predictor

    def _landed_rows(self, partition: int, after: int, upto: int) -> list[dict]:
        """The landed KPI rows of ``partition`` the predictor reads, offsets in (after, upto];
        without a stored state (after < 0), those of the policy's memory only."""
        import duckdb
        t = self.ctx.history.read("kpis", after=after if after >= 0 else None,
                                  partitions=[partition], log=self.log)
        if not t.num_rows:
            return []
        con = duckdb.connect()
        try:
            con.register("k", t)
            since = ""
            if after < 0:
                keep_ns = int(self.predictor_policy.forget_after_s * 1e9)
                since = f" AND epoch_ns(window_end) >= {time.time_ns() - keep_ns}"
            cur = con.execute(
                f"SELECT {KPI_DOC_COLUMNS} FROM k WHERE {_PREDICTOR_ROWS} AND kafka_offset > ? "
                f"AND kafka_offset <= ?{since} ORDER BY kafka_offset", [after, upto])
            out = [kpi_doc(r) for r in cur.fetchall()]
            return out
        finally:
            con.close()

    def states_due(self, offsets: dict[int, int]) -> list[tuple[int, int, bytes]]:
        """``(partition, offset, state)`` of the predictors due to be stored, as of the KPI
        offsets about to land (stored before the segment that commits them)."""
        now = time.monotonic()
        out = []
        for p, offset in offsets.items():
            if p in self.parts and now - self._stored_at.get(p, 0.0) >= STATE_EVERY_S:
                self._stored_at[p] = now
                out.append((p, offset, orjson.dumps(self.parts[p][0].to_dict())))
        return out

    def write_states(self, states: list[tuple[int, int, bytes]]) -> None:
        """Store them, and drop the states before each (in the history's thread)."""
        h = self.ctx.history
        for p, offset, data in states:
            h.put_state(STATE_KIND, self.log, p, offset, data)
            h.drop_state(STATE_KIND, self.log, p,
                         [o for o in h.state_offsets(STATE_KIND, self.log, p) if o < offset])

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
        unsent = self.unsent.setdefault(partition, set())
        if stale and self.keys:  # (without a key nothing is sent, caught up or not)
            unsent.update(c["pool"] for c in commands)
        elif unsent:
            decided = {c["pool"] for c in commands}
            for pool in sorted(unsent - decided):
                c = scaler.reissue(pool, now, "hold: caught up; the target decided on the "
                                   "backlog was not sent")
                if c is not None:
                    commands.append(c)
            unsent.clear()
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
        self._epoch += 1
        for p in partitions:
            self.parts.pop(p, None)
            self.now.pop(p, None)
            self.unsent.pop(p, None)
            self._stored_at.pop(p, None)


def predictor_now(predictor: Any) -> int:
    """The latest window end a predictor has seen (its clock), or now."""
    return predictor.as_of_ns() or time.time_ns()
