"""``agentflux replay``: rebuild a history from Kafka into a new root.

What a user does after changing a view, a table or a processor, or after losing a disk: a worker
of a consumer group of its own lands the events and KPI topics from the beginning (or from a
time, through the broker's offsets-for-times) into an empty root, with publishing switched off
(the KPI rows and dead letters it would publish are on the topics already), and stops once it
has caught up with the end the topics had when the replay started.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
import uuid
from pathlib import Path

from agentflux.config import ConfigError, Settings


async def _log_ends(settings: Settings, topics: list[str]) -> dict:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    c = AIOKafkaConsumer(**settings.kafka_client_kwargs(), enable_auto_commit=False,
                         isolation_level="read_committed")
    await c.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in await _partitions(c, t)]
        return {(tp.topic, tp.partition): o for tp, o in (await c.end_offsets(tps)).items()}
    finally:
        await c.stop()


async def _partitions(consumer, topic: str) -> set:
    """Every partition of ``topic``, from metadata fetched now (a list the client had from
    before may be short: a partition it lacks would start from the beginning)."""
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


async def _start_at(settings: Settings, topics: list[str], ts_ms: int) -> dict[str, int]:
    """Commit, for the replay's own group, the first offset at or after ``ts_ms`` of every
    partition (the end, where there is none): the worker starts there. Record times are whole
    milliseconds, so the records of ``ts_ms``'s own millisecond are in. Returns, per topic, how
    many records that leaves to replay."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import OffsetAndMetadata, TopicPartition

    c = AIOKafkaConsumer(**settings.kafka_client_kwargs(), group_id=settings.app_id,
                         enable_auto_commit=False, isolation_level="read_committed")
    await c.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in await _partitions(c, t)]
        c.assign(tps)
        found = await c.offsets_for_times({tp: ts_ms for tp in tps})
        ends = await c.end_offsets(tps)
        start = {tp: OffsetAndMetadata(found[tp].offset if found[tp] else ends[tp], "")
                 for tp in tps}
        await c.commit(start)
        return {t: sum(ends[tp] - start[tp].offset for tp in tps if tp.topic == t)
                for t in topics}
    finally:
        await c.stop()


def run_replay(settings: Settings, root: str, from_ms: int | None, console) -> int:
    """Replay into ``root`` from the beginning, or (``from_ms``, milliseconds since the epoch)
    from the first record at or after that time."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from agentflux.harness import WorkerProcess
    from agentflux.sinks.history import History

    target = History(root)
    if target.local and Path(target.base).exists() and any(Path(target.base).iterdir()):
        raise ConfigError(f"{target.base} is not empty: replay rebuilds a history into a new "
                          "root; pass another --history PATH")
    run = uuid.uuid4().hex[:8]
    rs = settings.replace(app_id=f"{settings.app_id}-replay-{run}", history_path=root,
                          replay=True)
    t = settings.topics
    topics = [t.events, t.kpis]
    ends = asyncio.run(_log_ends(rs, topics))
    if from_ms is not None:
        left = asyncio.run(_start_at(rs, topics, from_ms))
        console.print(f"from {_ms_iso(from_ms)}: " + ", ".join(
            f"{left[topic]:,} of {sum(e for (tt, _), e in ends.items() if tt == topic):,} "
            f"records of {topic}" for topic in topics))
    log = Path(tempfile.gettempdir()) / f"agentflux-replay-{run}.log"
    worker = WorkerProcess.with_free_ports(rs, log_path=log).start()
    console.print(f"replaying {', '.join(topics)} into {root} (worker pid {worker.pid}, log {log})")
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed:,} records"), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task("replayed", total=None)

            def caught_up(m: dict) -> bool:
                progress.update(task, completed=int(m.get("agentflux_records_total", 0)))
                lags = {k: v for k, v in m.items() if k.startswith("agentflux_consumer_lag{")
                        and f'topic="{t.events}"' in k}
                events_parts = sum(1 for (topic, _), end in ends.items() if topic == t.events)
                return len(lags) == events_parts and not any(lags.values())
            worker.wait_for(caught_up, 24 * 3600, "the replay to catch up")
            kpi_end = {p: end - 1 for (topic, p), end in ends.items() if topic == t.kpis and end}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the KPI topic lands beside it, usually done
                landed = History(root).landed_offsets("kpis", _kpi_log(rs))
                if all(landed.get(p, -1) >= end for p, end in kpi_end.items()):
                    break
                time.sleep(0.2)  # polling the history the worker writes
    finally:
        code = worker.stop()
    h = History(root)
    console.print(f"replayed into {root}: {h.count('events'):,} events, "
                  f"{h.count('deadletters'):,} dead letters, {h.count('kpis'):,} KPI rows "
                  f"(worker exit {code})")
    return 0 if code == 0 else 1


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def epoch_ms(when: dt.datetime) -> int:
    """An aware time in whole milliseconds since the epoch, as Kafka stamps records (exact:
    integer arithmetic, no float)."""
    return (when - _EPOCH) // dt.timedelta(milliseconds=1)


def _ms_iso(ms: int) -> str:
    return (_EPOCH + dt.timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")


def _kpi_log(settings: Settings) -> str:
    from agentflux.sinks.history import log_id
    from agentflux.streams.kafkameta import log_identities

    ident = asyncio.run(log_identities(settings, [settings.topics.kpis]))[settings.topics.kpis]
    return log_id(ident.cluster_id, ident.topic_id)
