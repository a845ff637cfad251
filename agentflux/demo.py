"""``agentflux demo``: broker, worker and a synthetic runtime end to end, then a summary.

It never replaces a history: ``--history`` must be absent or empty, and writable, which is
checked before anything starts. What it starts it stops, in order: the simulator's producer,
then the worker, then a broker it started itself. SIGINT or SIGTERM (see :mod:`agentflux.cli`)
does the same within a few seconds and prints what was done so far (exit 130); the history
stays readable. The worker's log goes to the state directory (``AGENTFLUX_HOME/logs``; the
last few runs kept, each bounded) and the demo says where.
"""

from __future__ import annotations

import shlex
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from agentflux.config import ConfigError, Settings, Topics

KEEP_LOGS = 5  # demo worker logs kept in the state directory
# The worker's own bound on a stop (--stop-timeout). The demo stops it only once every event
# and KPI window has landed, or after a signal, so a short bound loses nothing.
WORKER_STOP_TIMEOUT_S = 2.0


@dataclass
class _SoFar:
    """What an interrupted demo can report."""

    started: float = 0.0
    emitted: int = 0
    acked: int = 0
    log: Path | None = None
    alerts: list | None = None  # the alert messages read from the alerts topic, if any
    pools: dict | None = None  # the demo's pool manager: what it applied, its pools at the end
    spans: dict | None = None  # with OTLP: spans exported / dropped before the worker stopped


# how long the alerts topic must stay unchanged before the demo reads it as complete
ALERTS_QUIET_S = 3.0


def run_demo(events: int, history: str, agents: int, seed: int, console,
             incidents: tuple = (), otlp: bool = False) -> int:
    """``incidents``: :class:`~agentflux.runtime.simulate.IncidentSpec` to inject; the simulator
    then runs in accelerated event time ending now, and the summary lists the alerts raised.
    ``otlp``: start a local Jaeger too, export the run's traces to it and print its UI address
    (an ``OTEL_EXPORTER_OTLP_ENDPOINT`` of the environment is used as it is, without it)."""
    from agentflux.cli import SIGNALS, agentflux_command

    for flag, value in (("--events", events), ("--agents", agents)):
        if value < 1:
            raise ConfigError(f"{flag} {value}: give a number >= 1")
    root = Path(history).resolve()
    run = uuid.uuid4().hex[:8]
    base = Settings.from_env(history_path=str(root), window_s=2.0, grace_s=1.0,
                             app_id=f"agentflux-demo-{run}",
                             topics=Topics.with_prefix(f"agentflux-demo-{run}"))
    if not base.command_keys:  # the loop's commands are signed: a key for this run
        import secrets

        from agentflux.config import SecretStr
        base = base.replace(command_keys=SecretStr(secrets.token_hex(16)))
    if root.is_dir() and any(root.iterdir()):  # before anything is written, logs included
        _prepare_root(root)
    from agentflux.cli import synthetic_config
    sim_config = synthetic_config(agents, events, seed, incidents)  # checked before it starts
    so_far = _SoFar(started=time.monotonic(), log=_worker_log(base.log_dir, run))
    # (before the history root is made: a Jaeger that cannot start leaves nothing behind)
    jaeger = _start_jaeger(base, run, console) if otlp else None
    policy_file = None
    try:
        if not base.autoscaler_policy:  # targets within the demo pool manager's bounds
            # (in the state directory, known writable since the worker's log found its place)
            policy_file = Path(base.state_dir) / f"demo-autoscaler-{run}.yaml"
            policy_file.write_text(f"autoscaler:\n  max_size: {DemoPoolManager.MAX_SIZE}\n")
            base = base.replace(autoscaler_policy=str(policy_file))
        created = _prepare_root(root)
        env = {} if jaeger is None else {
            "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_grpc, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "AGENTFLUX_OTLP_SESSION_IDLE_S": "2"}
        try:
            st, elapsed = _run(base, sim_config, console, so_far, SIGNALS, env)
        except BaseException as exc:
            if created and root.is_dir() and not any(root.iterdir()):
                root.rmdir()  # nothing was written: leave no empty directory behind
            if isinstance(exc, KeyboardInterrupt):
                _interrupted(console, root, so_far)
                return 130
            raise
        code = _summary(console, root, st, elapsed, agentflux_command())
        _print_pools(console, so_far.pools)
        _print_alerts(console, so_far.alerts, bool(incidents))
        if so_far.spans is not None:
            _print_traces(console, so_far.spans, jaeger)
        if jaeger is not None and sys.stdin.isatty() and sys.stdout.isatty():
            console.print(f"Jaeger's UI: {jaeger.query_url} (press Enter to stop Jaeger and end)")
            try:
                input()
            except (EOFError, KeyboardInterrupt):
                pass
        return code
    finally:
        if policy_file is not None:
            policy_file.unlink(missing_ok=True)
        if jaeger is not None:
            jaeger.close()
            import shutil
            shutil.rmtree(jaeger.work_dir, ignore_errors=True)


def _start_jaeger(base: Settings, run: str, console):
    """A local Jaeger for the demo's traces (built once by `make`; a container where podman's
    Docker API is available)."""
    from agentflux.localjaeger import LocalJaeger
    work = base.state_dir / "demo-jaeger" / run
    try:
        jaeger = LocalJaeger(base.state_dir, work).start()
    except BaseException:
        import shutil
        shutil.rmtree(work, ignore_errors=True)  # (what it started, start() stopped)
        raise
    how = "in a container" if jaeger.mode == "container" else "as a process"
    console.print(f"Jaeger {how}: OTLP {jaeger.otlp_grpc}, UI {jaeger.query_url}",
                  soft_wrap=True)
    return jaeger


def _print_traces(console, spans: dict, jaeger) -> None:
    """The worker's OTLP counts and, with the demo's Jaeger, what it holds."""
    line = (f"traces: {spans.get('exported', 0):,.0f} spans exported over OTLP, "
            f"{spans.get('dropped', 0):,.0f} dropped (before the worker's last flush)")
    if jaeger is not None:
        try:
            services = [s for s in jaeger.services() if s != "jaeger"]
            n = sum(len(jaeger.traces(s)) for s in services)
            line += (f"; Jaeger holds {n:,} traces of {', '.join(services) or 'no service'}: "
                     f"{jaeger.query_url}/search")
        except OSError as exc:
            line += f"; Jaeger's query API did not answer ({exc})"
    console.print(line, soft_wrap=True)


def _prepare_root(root: Path) -> bool:
    """Refuse a history root that holds anything, or that cannot be written; True if it had to
    be created."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--history {root} is a file: pass the path of a new directory "
                          "(the demo never replaces anything)")
    if root.is_dir() and any(root.iterdir()):
        raise ConfigError(f"{root} already exists and is not empty: pass another --history PATH "
                          "(the demo never replaces a history), or delete it first")
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".agentflux-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write the demo's history at {root} ({exc.strerror or exc}): "
                          "pass --history PATH in a directory you can write") from None
    return created


def _worker_log(log_dir: Path, run: str) -> Path:
    """This run's worker log in the state directory; older demo logs beyond the last
    ``KEEP_LOGS`` are deleted."""
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the state directory {log_dir.parent} "
                          f"({exc.strerror or exc}): set AGENTFLUX_HOME to a writable "
                          "directory") from None
    old = sorted(log_dir.glob("demo-worker-*.log"), key=lambda p: p.stat().st_mtime)
    for path in old[:max(0, len(old) - (KEEP_LOGS - 1))]:
        for part in (path, path.with_name(path.name + ".1")):
            part.unlink(missing_ok=True)
    return log_dir / f"demo-worker-{run}.log"


def _run(base: Settings, sim_config, console, so_far: _SoFar, signals,
         env: dict | None = None) -> tuple:
    import asyncio

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from agentflux.cli import broker_for, interrupted
    from agentflux.harness import WorkerProcess
    from agentflux.runtime.emitter import Emitter
    from agentflux.runtime.simulate import SyntheticRuntime
    from agentflux.streams.topics import ensure_topics

    events = sim_config.events
    with broker_for(base, console) as settings:
        console.print(f"broker {settings.bootstrap_servers}; topics {settings.topics.events} ...")
        asyncio.run(ensure_topics(settings))
        log = so_far.log
        worker = WorkerProcess.with_free_ports(settings, log_path=log, extra_env=env or {},
                                               stop_timeout_s=WORKER_STOP_TIMEOUT_S).start()
        manager = DemoPoolManager(settings, list(sim_config.philosophies)).start()
        try:
            console.print(f"worker pid {worker.pid}, metrics {worker.metrics_url}, log {log}",
                          soft_wrap=True)
            console.print(f"pool manager for {', '.join(sim_config.philosophies)} (containers: "
                          "local processes; the worker's signed commands size them)",
                          soft_wrap=True)
            sim = SyntheticRuntime(sim_config)
            from agentflux.cli import _incidents_line
            if sim.incidents:
                console.print(_incidents_line(sim), soft_wrap=True, markup=False)
            cols = (TextColumn("{task.description:<10}"), BarColumn(),
                    TextColumn("{task.completed:>9,}/{task.total:,}"), TimeElapsedColumn())
            with Progress(*cols, console=console) as progress:
                t_emit = progress.add_task("emitted", total=events)
                t_land = progress.add_task("landed", total=events)
                t0 = time.monotonic()
                em = Emitter(settings, runtime="agentflux-demo").start()
                try:
                    def emit(event) -> None:
                        signals.check()  # a signal ends the run between two events, never in one
                        em.emit(event)

                    with signals.deferred():
                        sim.run(emit, lambda n: (progress.advance(t_emit, n),
                                                 progress.update(t_land, completed=_landed(worker))))
                    signals.check()
                    em.flush(120)
                finally:
                    em.close(1.0 if interrupted() else 30.0)  # the producer first
                    st = em.stats()
                    so_far.emitted, so_far.acked = st.emitted, st.acked
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
            so_far.alerts = _read_alerts(settings, signals)
            if env:  # (the worker exports its open sessions' roots as it stops, after this)
                m = worker.metrics()
                so_far.spans = {k: m.get(f'agentflux_otlp_spans_total{{outcome="{k}"}}', 0.0)
                                for k in ("exported", "dropped")}
        finally:
            so_far.pools = manager.stop()  # before the worker and the broker
            worker.stop(3.0 if interrupted() else 30.0)  # then the broker (leaving broker_for)
    return st, elapsed


class DemoPoolManager:
    """A :class:`~agentflux.runtime.poolmanager.PoolManager` on a thread of its own for the
    demo: it consumes the worker's signed commands for the simulated pools and applies them to
    a :class:`~agentflux.runtime.pool.ContainerPool` of local processes (``cat``: a container
    engine is not needed to watch the loop close); :meth:`stop` drains the pool and returns
    what it applied."""

    MAX_SIZE = 10  # per pool: the demo keeps its processes few

    def __init__(self, settings: Settings, pools: list[str]):
        self.settings, self.pools = settings, pools
        self._thread = None
        self._loop = None
        self._stop = None
        self._ready = None
        self.result: dict | None = None
        self.error: BaseException | None = None

    def start(self) -> "DemoPoolManager":
        import asyncio
        import threading
        self._ready = threading.Event()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported in the summary, never a crash of the demo
                self.error = exc
            finally:
                self._ready.set()
                self._loop.close()

        self._thread = threading.Thread(target=main, name="demo-pool-manager", daemon=True)
        self._thread.start()
        self._ready.wait(60)
        return self

    async def _serve(self) -> None:
        import asyncio

        from agentflux.runtime.pool import ContainerPool, ProcessBackend
        from agentflux.runtime.poolmanager import PoolManager
        run = self.settings.app_id
        pool = ContainerPool(pool_size=0, backend=ProcessBackend(["cat"]))
        m = PoolManager(self.settings, pool, pools=self.pools, min_size=0,
                        max_size=self.MAX_SIZE, name=run, report_every_s=2.0,
                        state_file=Path(self.settings.state_dir) / "pool-manager" / f"{run}.json")
        self._stop = asyncio.Event()
        try:
            await m.start()
            self._ready.set()
            await m.run_until(self._stop)
        finally:
            self.result = m.summary()
            await m.stop()
            await pool.drain()
            m.state_file.unlink(missing_ok=True)  # a demo's pools do not outlive it

    def stop(self) -> dict:
        """Stop consuming, remove the processes; what was applied (or ``{"error": ...}``)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)
        if self.error is not None:
            return {"error": f"{type(self.error).__name__}: {self.error}"}
        return self.result or {}


def _interrupted(console, root: Path, so_far: _SoFar) -> None:
    """The summary of an interrupted demo: what was emitted, acknowledged and landed."""
    landed = _history_count(root)
    console.print(f"interrupted after {time.monotonic() - so_far.started:.1f} s: emitted "
                  f"{so_far.emitted:,}, acked {so_far.acked:,}, landed {landed:,}"
                  + (f"; the history so far is in {root}" if landed else "")
                  + (f"; worker log {so_far.log}" if so_far.log and so_far.log.exists() else ""),
                  soft_wrap=True, markup=False)


def _history_count(root: Path) -> int:
    from agentflux.sinks.catalog import connect

    try:
        con = connect(root)
    except Exception:  # nothing landed yet (no history), or no catalog: nothing to count
        return 0
    try:
        return con.execute("SELECT count(*) FROM events").fetchone()[0]
    except Exception:
        return 0
    finally:
        con.close()


def _summary(console, root: Path, st, elapsed: float, command: str) -> int:
    from rich.table import Table

    from agentflux.sinks.catalog import connect

    con = connect(root)
    try:
        n_events, n_dead, n_kpis = (con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                                    for t in ("events", "deadletters", "kpis"))
        loop = _closed_loop_figures(con)
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
    console.print(loop, soft_wrap=True, markup=False)
    console.print(f"history: {root} (Parquet segments; DuckDB views in {root}/history.duckdb)")
    query = "SELECT * FROM latency ORDER BY window_start DESC LIMIT 10"
    console.print(f"next: {command} sql --history {shlex.quote(_shown(root))} "
                  f"{shlex.quote(query)}", soft_wrap=True, markup=False)
    return 0 if n_events + n_dead == st.emitted else 1


def _closed_loop_figures(con) -> str:
    """One line on what the predictor and autoscaler landed: the latest CPU recommendation per
    philosophy and target per pool (commands are landed, not sent, without a command key)."""
    preds = con.execute("""
        SELECT philosophy, arg_max(cpu_percent_target, issued_at),
               arg_max(cpu_percent_mean_x_1_2, issued_at)
        FROM predictions WHERE tool IS NULL GROUP BY ALL ORDER BY 1""").fetchall()
    cmds = con.execute("""
        SELECT pool, arg_max(target, generation), count(*), bool_or(published)
        FROM pool_commands GROUP BY ALL ORDER BY 1""").fetchall()
    p = ", ".join(f"{ph} {t:.0f} % (mean x 1.2: {m:.0f} %)" for ph, t, m in preds
                  if t is not None and m is not None) or "none yet"
    c = ", ".join(f"{pool} -> {t} warm ({n} command{'s' if n != 1 else ''})"
                  for pool, t, n, _ in cmds) or "none yet"
    sent = any(x[3] for x in cmds)
    return (f"closed loop: CPU recommendations (p90 + margin) {p}; pool targets {c}"
            + ("" if sent or not cmds else " (landed, not sent: no AGENTFLUX_COMMAND_KEYS, or "
                                            "decided on a backlog behind the wall clock)"))


def _print_pools(console, pools: dict | None) -> None:
    """What the demo's pool manager did with the worker's commands."""
    if not pools:
        return
    if "error" in pools:
        console.print(f"pool manager: stopped with {pools['error']}", soft_wrap=True,
                      markup=False)
        return
    sizes = ", ".join(f"{p} {s['available']} warm (target {s['target']})"
                      for p, s in sorted(pools.get("pools", {}).items()) if s["generation"])
    rejected = sum(pools.get("rejected", {}).values())
    console.print(f"pool manager: applied {pools.get('applied', 0)} signed commands "
                  f"({pools.get('duplicate', 0)} duplicates, {rejected} rejected); "
                  f"pools at the end: {sizes or 'no command applied yet'}", soft_wrap=True,
                  markup=False)


def _shown(path: Path) -> str:
    """``path`` relative to the current directory when it is under it (as a user typed it)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _landed(worker) -> int:
    try:
        m = worker.metrics()
    except OSError:
        return 0
    return int(m.get('agentflux_history_rows{table="events"}', 0)
               + m.get('agentflux_history_rows{table="deadletters"}', 0))


def _read_alerts(settings: Settings, signals) -> list | None:
    """The alert messages on the demo's alerts topic once it has been unchanged for
    ``ALERTS_QUIET_S`` (the detector judges a window when later KPI rows arrive: the last alerts
    follow the last rows within a moment); None when the topic cannot be read."""
    import asyncio

    from agentflux.bench.alerts import _read_alerts as read_topic

    try:
        alerts = asyncio.run(read_topic(settings))
        stable = time.monotonic()
        while time.monotonic() - stable < ALERTS_QUIET_S:
            signals.check()
            time.sleep(0.5)  # polling the topic for the last alerts
            again = asyncio.run(read_topic(settings))
            if len(again) != len(alerts):
                alerts, stable = again, time.monotonic()
    except (OSError, TimeoutError, ValueError) as exc:
        import logging
        logging.getLogger("agentflux.demo").warning("cannot read the alerts topic: %r", exc)
        return None
    return alerts


def _print_alerts(console, alerts: list | None, asked: bool) -> None:
    """The alert episodes the pipeline raised (firing, with resolved ones marked)."""
    from rich.table import Table

    from agentflux.sinks.tables import TABLES

    if alerts is None:
        console.print("alerts: the alerts topic could not be read")
        return
    if not alerts:
        if "alerts" not in TABLES:
            console.print("alerts: none; this worker does not detect failure patterns yet (no "
                          "alerts table in its history)")
        else:
            console.print("alerts: none raised" + (" (the incident may need more events: "
                                                   "try --events 200000)" if asked else ""))
        return
    episodes: dict[tuple, dict] = {}
    for a in alerts:
        key = (a.get("fingerprint"), a.get("starts_at_ns"))
        ep = episodes.setdefault(key, dict(a))
        if a.get("status") == "resolved":
            ep["status"] = "resolved"
    import datetime as dt
    rows = []
    for ep in sorted(episodes.values(), key=lambda e: e.get("starts_at_ns") or 0):
        labels = ep.get("labels") or {}
        subject = " ".join(f"{k}={v}" for k, v in labels.items()
                           if k not in ("alertname", "severity"))
        at = dt.datetime.fromtimestamp((ep.get("starts_at_ns") or 0) / 1e9,
                                       dt.timezone.utc).strftime("%H:%M:%S")
        rows.append((str(ep.get("status")), str(ep.get("rule")), str(ep.get("severity")),
                     subject, _number(ep.get("value", 0)), _number(ep.get("threshold", 0)), at))
    title = f"alerts raised ({len(episodes)}; from the alerts topic)"
    if console.width < 110:  # a log, a pipe, a narrow terminal: a line each, not a crushed table
        console.print(title)
        for status, rule, severity, subject, value, threshold, at in rows:
            console.print(f"  {at} {status:<8} {rule} ({severity}) {subject}: {value} "
                          f"(threshold {threshold})", highlight=False, soft_wrap=True)
        return
    table = Table(title=title)
    for c in ("status", "rule", "severity", "subject"):
        table.add_column(c)
    for c in ("value", "threshold", "at (UTC)"):
        table.add_column(c, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _number(x: float) -> str:
    """36,691 rather than 3.669e+04; 0.7703 as it is."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"
