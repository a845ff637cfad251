"""``agentflux demo``: broker, worker and a synthetic runtime end to end, then a summary."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from agentflux.config import Settings, Topics


def run_demo(events: int, history: str, agents: int, seed: int, console) -> int:
    import asyncio

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from agentflux.cli import broker_for
    from agentflux.harness import WorkerProcess
    from agentflux.runtime.emitter import Emitter
    from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
    from agentflux.sinks.catalog import connect
    from agentflux.streams.topics import ensure_topics

    if events < 1:
        from agentflux.config import ConfigError
        raise ConfigError(f"--events must be >= 1, got {events}")
    root = Path(history).resolve()
    if root.exists() and any(root.iterdir()):
        from agentflux.config import ConfigError
        raise ConfigError(f"{root} already exists and is not empty: pass another --history PATH "
                          "(the demo never replaces a history), or delete it first")
    run = uuid.uuid4().hex[:8]
    base = Settings.from_env(history_path=str(root), window_s=2.0, grace_s=1.0,
                             app_id=f"agentflux-demo-{run}",
                             topics=Topics.with_prefix(f"agentflux-demo-{run}"))
    with broker_for(base, console) as settings:
        console.print(f"broker {settings.bootstrap_servers}; topics {settings.topics.events} ...")
        asyncio.run(ensure_topics(settings))
        log = Path(tempfile.gettempdir()) / f"agentflux-demo-worker-{run}.log"
        worker = WorkerProcess.with_free_ports(settings, log_path=log).start()
        console.print(f"worker pid {worker.pid}, metrics {worker.metrics_url}, log {log}")
        try:
            sim = SyntheticRuntime(SimConfig(agents=agents, events=events, seed=seed))
            cols = (TextColumn("{task.description:<10}"), BarColumn(), TextColumn("{task.completed:>9,}/{task.total:,}"),
                    TimeElapsedColumn())
            with Progress(*cols, console=console) as progress:
                t_emit = progress.add_task("emitted", total=events)
                t_land = progress.add_task("landed", total=events)
                t0 = time.monotonic()
                with Emitter(settings, runtime="agentflux-demo") as em:
                    sim.run(em.emit, lambda n: (progress.advance(t_emit, n),
                                                progress.update(t_land, completed=_landed(worker))))
                    em.flush(120)
                    st = em.stats()
                deadline = time.monotonic() + 300
                while (landed := _landed(worker)) < st.acked:
                    progress.update(t_land, completed=landed)
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"only {landed} of {st.acked} events landed; see {log}")
                    time.sleep(0.1)  # progress display cadence; the loop waits on a condition
                progress.update(t_land, completed=landed)
                elapsed = time.monotonic() - t0
            worker.wait_for(lambda m: m.get("agentflux_open_windows", 1) == 0
                            and m.get('agentflux_history_rows{table="kpis"}', -1)
                            == m.get("agentflux_kpi_windows_total", -2), 60, "KPI windows to land")
        finally:
            worker.stop()
    con = connect(root)
    try:
        n_events, n_dead, n_kpis = (con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                                    for t in ("events", "deadletters", "kpis"))
        rows = con.execute("""
            SELECT type, name, count(*) AS n, round(avg(error::INT) * 100, 1) AS err_pct,
                   round(quantile_disc(duration_ms, 0.5), 1) AS p50,
                   round(quantile_disc(duration_ms, 0.99), 1) AS p99
            FROM events WHERE type IN ('tool.call', 'llm.call') GROUP BY ALL ORDER BY type, n DESC"""
                           ).fetchall()
    finally:
        con.close()
    table = Table(title="latency per tool and model (ms, from the Parquet history via DuckDB)")
    for c in ("type", "name", "calls", "errors %", "p50", "p99"):
        table.add_column(c, justify="right" if c not in ("type", "name") else "left")
    for r in rows:
        table.add_row(*[str(x) for x in r])
    console.print(table)
    console.print(f"events emitted {st.emitted:,}  acked {st.acked:,}  landed {n_events:,}  "
                  f"dead letters {n_dead:,}  KPI rows {n_kpis:,}")
    console.print(f"throughput {n_events / elapsed:,.0f} events/s end to end "
                  f"({elapsed:.1f} s, emitter write-to-ack p99 {st.ack_p99_ms or 0:.1f} ms)")
    console.print(f"history: {root} (Parquet segments; DuckDB views in {root}/history.duckdb)")
    console.print(f"next: .venv/bin/agentflux sql --history {root} "
                  "\"SELECT * FROM latency ORDER BY window_start DESC LIMIT 10\"")
    return 0 if n_events + n_dead == st.emitted else 1


def _landed(worker) -> int:
    try:
        m = worker.metrics()
    except OSError:
        return 0
    return int(m.get('agentflux_history_rows{table="events"}', 0)
               + m.get('agentflux_history_rows{table="deadletters"}', 0))
