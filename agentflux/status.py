"""``agentflux status``: what a running worker is doing, for an operator at a terminal.

One snapshot (:func:`collect`) reads the worker's ``/metrics`` twice, ``interval_s`` apart
(rates are the difference), and the topics the worker writes:

* from ``/metrics``: consumer lag per partition (``agentflux_consumer_lag``), records and
  valid events per second, dead letters by reason, open KPI windows, history rows, alerts
  firing (``agentflux_alerts_active``), pool targets (``agentflux_pool_target_containers``) and
  the loop's outputs;
* from the alerts topic: the alerts firing now (the last transition of each alert is
  ``firing``), with rule, subject, value and since when;
* from the compacted predictions topic: the latest prediction per key (philosophy, or
  philosophy/tool).

``agentflux status`` shows it as a live view (rich) refreshed every ``--interval`` seconds
until Ctrl-C; ``--once --json`` prints one snapshot as one JSON object, for scripts.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from agentflux.config import ConfigError, Settings

_SAMPLE = re.compile(r"^(?P<name>[a-z_:]+)(\{(?P<labels>.*)\})?$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _parse(metrics: dict[str, float]) -> dict[str, list[tuple[dict[str, str], float]]]:
    """``{"name{labels}": value}`` (:func:`agentflux.harness.scrape`) by name, labels parsed."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for key, value in metrics.items():
        m = _SAMPLE.match(key)
        if m:
            labels = dict(_LABEL.findall(m.group("labels") or ""))
            out.setdefault(m.group("name"), []).append((labels, value))
    return out


def _total(parsed: dict, name: str) -> float:
    return sum(v for _, v in parsed.get(name, ()))


def metrics_url_of(settings: Settings) -> str:
    """Where the worker configured by ``settings`` serves Prometheus metrics."""
    return f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"


def from_metrics(before: dict[str, float], after: dict[str, float], seconds: float) -> dict:
    """The snapshot's figures from two scrapes ``seconds`` apart."""
    a, b = _parse(before), _parse(after)
    rate = (lambda name: round(max(0.0, _total(b, name) - _total(a, name)) / seconds, 1)
            if seconds > 0 else 0.0)
    lag = {f"{lb.get('topic', '')}[{lb.get('partition', '')}]": int(v)
           for lb, v in b.get("agentflux_consumer_lag", ())}
    dead: dict[str, int] = {}
    for lb, v in b.get("agentflux_deadletter_total", ()):
        reason = lb.get("reason", "?")
        dead[reason] = dead.get(reason, 0) + int(v)
    return {
        "records_per_s": rate("agentflux_records_total"),
        "events_per_s": rate("agentflux_events_total"),
        "records_total": int(_total(b, "agentflux_records_total")),
        "events_total": int(_total(b, "agentflux_events_total")),
        "consumer_lag": dict(sorted(lag.items())),
        "consumer_lag_total": sum(lag.values()),
        "dead_letters": dict(sorted(dead.items())),
        "dead_letters_total": sum(dead.values()),
        "open_windows": int(_total(b, "agentflux_open_windows")),
        "history_rows": {lb.get("table", "?"): int(v)
                         for lb, v in b.get("agentflux_history_rows", ())},
        "alerts_active": int(_total(b, "agentflux_alerts_active")),
        "pool_targets": {lb.get("pool", "?"): int(v)
                         for lb, v in b.get("agentflux_pool_target_containers", ())},
        "loop_outputs": {f"{lb.get('kind', '?')}/{lb.get('outcome', '?')}": int(v)
                         for lb, v in b.get("agentflux_loop_outputs_total", ())},
    }


async def read_topic(settings: Settings, topic: str, *, last: int | None = None,
                     timeout_s: float = 10.0) -> list[tuple[bytes | None, Any]]:
    """``(key, decoded JSON value)`` of the messages on ``topic`` now (the last ``last`` of each
    partition, or all), read without a consumer group."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # the cluster's metadata
        parts = consumer.partitions_for_topic(topic)
        if not parts:  # a topic created since the client started
            await consumer._client.force_metadata_update()  # noqa: SLF001
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        begin = await consumer.beginning_offsets(tps)
        for tp in tps:
            start = begin[tp] if last is None else max(begin[tp], end[tp] - last)
            consumer.seek(tp, start)
        out: list[tuple[bytes | None, Any]] = []
        deadline = time.monotonic() + timeout_s

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in tps])

        while await behind():
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: not at its end after {timeout_s:g} s")
            batch = await consumer.getmany(*tps, timeout_ms=500)
            for records in batch.values():
                for r in records:
                    if r.value:
                        try:
                            out.append((r.key, json.loads(r.value)))
                        except ValueError:
                            continue  # not ours to judge here: the worker's topics hold JSON
        return out
    finally:
        await consumer.stop()


def active_alerts(messages: list[tuple[bytes | None, Any]]) -> list[dict]:
    """The alerts whose last transition is ``firing`` (by fingerprint), oldest first."""
    last: dict[Any, dict] = {}
    for _, a in messages:
        if isinstance(a, dict):
            last[a.get("fingerprint") or (a.get("rule"), a.get("subject"))] = a
    keep = ("rule", "kind", "severity", "subject", "value", "threshold", "starts_at_ns")
    firing = [{k: a.get(k) for k in keep} for a in last.values() if a.get("status") == "firing"]
    return sorted(firing, key=lambda a: a.get("starts_at_ns") or 0)


def latest_predictions(messages: list[tuple[bytes | None, Any]]) -> dict[str, dict]:
    """The latest prediction per key (the topic is compacted: the last message of a key):
    each metric's recommended target beside mean x 1.2, the samples and the confidence."""
    out: dict[str, dict] = {}
    for key, p in messages:
        if not isinstance(p, dict) or "recommendation" not in p:
            continue
        k = p.get("key") or (key.decode(errors="replace") if key else "?")
        rec, mean = p.get("recommendation") or {}, p.get("mean_x_1_2") or {}
        out[k] = {"samples": p.get("samples"), "confidence": p.get("confidence"),
                  "issued_at_ns": p.get("issued_at_ns"),
                  **{m: {"target": (r or {}).get("target"), "mean_x_1_2": mean.get(m)}
                     for m, r in rec.items()}}
    return dict(sorted(out.items()))


def collect(settings: Settings, metrics_url: str | None = None, interval_s: float = 1.0) -> dict:
    """One snapshot (see the module docstring)."""
    from agentflux.harness import scrape
    url = metrics_url or metrics_url_of(settings)
    try:
        t0 = time.monotonic()
        before = scrape(url)
        time.sleep(interval_s)  # the rate's interval: two scrapes this far apart
        after = scrape(url)
        seconds = time.monotonic() - t0
    except OSError as exc:
        raise ConfigError(f"cannot read the worker's metrics at {url} ({exc}): is a worker "
                          "running? Pass --metrics-url for another one") from None
    out: dict[str, Any] = {"metrics_url": url, "at_ns": time.time_ns(),
                           **from_metrics(before, after, seconds)}

    async def topics() -> tuple[list, list]:
        return (await read_topic(settings, settings.topics.alerts, last=2000),
                await read_topic(settings, settings.topics.predictions))

    try:
        alerts, predictions = asyncio.run(topics())
        out["alerts"] = active_alerts(alerts)
        out["predictions"] = latest_predictions(predictions)
    except Exception as exc:  # the metrics stand without the topics: say why they are missing
        out["alerts"] = out["predictions"] = None
        out["topics_error"] = f"cannot read the topics at {settings.bootstrap_servers}: {exc!r}"
    return out


def render(snap: dict):
    """The snapshot as rich renderables (the live view)."""
    from rich.console import Group
    from rich.table import Table

    head = Table.grid(padding=(0, 2))
    head.add_row("records/s", f"{snap['records_per_s']:,.1f}", "events/s",
                 f"{snap['events_per_s']:,.1f}", "open windows", f"{snap['open_windows']:,}")
    head.add_row("dead letters", f"{snap['dead_letters_total']:,}", "lag (total)",
                 f"{snap['consumer_lag_total']:,}", "alerts firing", f"{snap['alerts_active']}")
    lag = Table(title="consumer lag per partition")
    lag.add_column("topic[partition]")
    lag.add_column("lag", justify="right")
    for k, v in snap["consumer_lag"].items():
        lag.add_row(k, f"{v:,}")
    parts = [head, lag]
    if snap.get("alerts"):
        t = Table(title="alerts firing")
        for c in ("rule", "severity", "subject", "value", "threshold"):
            t.add_column(c)
        for a in snap["alerts"]:
            t.add_row(*[str(a.get(c, "")) for c in ("rule", "severity", "subject", "value",
                                                     "threshold")])
        parts.append(t)
    if snap["pool_targets"]:
        t = Table(title="pool targets (warm containers kept ready)")
        t.add_column("pool")
        t.add_column("target", justify="right")
        for p, v in snap["pool_targets"].items():
            t.add_row(p, str(v))
        parts.append(t)
    if snap.get("predictions"):
        t = Table(title="last predictions (CPU %: p90 + margin, mean x 1.2)")
        for c in ("key", "cpu target", "mean x 1.2", "samples"):
            t.add_column(c)
        for k, p in snap["predictions"].items():
            cpu = p.get("cpu_percent") or {}
            t.add_row(k, str(cpu.get("target")), str(cpu.get("mean_x_1_2")), str(p.get("samples")))
        parts.append(t)
    if snap.get("topics_error"):
        parts.append(snap["topics_error"])
    return Group(*parts)


def main(settings: Settings, metrics_url: str | None, once: bool, as_json: bool,
         interval_s: float, console: Any) -> int:
    if interval_s <= 0:
        raise ConfigError(f"--interval {interval_s:g}: give seconds > 0")
    if once:
        snap = collect(settings, metrics_url, interval_s)
        if as_json:
            print(json.dumps(snap))
        else:
            console.print(render(snap))
        return 0
    from rich.live import Live
    with Live(console=console, auto_refresh=False) as live:
        try:
            while True:
                live.update(render(collect(settings, metrics_url, interval_s)), refresh=True)
        except KeyboardInterrupt:
            return 0


__all__ = ["active_alerts", "collect", "from_metrics", "latest_predictions", "main",
           "read_topic", "render"]
