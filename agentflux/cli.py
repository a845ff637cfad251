"""The ``agentflux`` command line.

User errors print one line, what is wrong and the fix (a setting, a flag or a command), and
exit 2; anything unexpected prints one line too and exits 1. ``agentflux --debug COMMAND`` (or
``AGENTFLUX_DEBUG=1``) adds the traceback.

SIGINT and SIGTERM end every command the same way: one "interrupted" line at once, then what
the command started is stopped in order (producers and the worker before the broker), within
a few seconds, what is known so far is summarised, and the exit status is 130 (``worker``: 0, a
stop is how a worker ends). A second signal only says it is still stopping; a third exits at
once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import gc
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from agentflux import tabular
from agentflux.config import ConfigError, Settings


def _console():
    """Rich output: colours and live progress bars in a terminal, plain text otherwise (rich
    would otherwise take FORCE_COLOR or TTY_COMPATIBLE as a terminal and write cursor codes)."""
    from rich.console import Console
    tty = sys.stdout.isatty()
    return Console(stderr=False, highlight=False, force_terminal=tty, force_interactive=tty,
                   no_color=not tty)


def _say(line: str) -> None:
    """Write a line to stderr unbuffered: safe in a signal handler, whatever Python was printing
    when the signal came."""
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())


class Signals:
    """SIGINT and SIGTERM as one KeyboardInterrupt, raised once.

    The first signal says so on stderr and raises KeyboardInterrupt where the main thread is,
    unless a :meth:`deferred` section runs (one that must not be cut in the middle, e.g. an
    Emitter.emit): that section calls :meth:`check` at its safe points. Later signals do not
    interrupt the clean-up (it is bounded); a third exits at once."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.count = 0
        self._defer = 0

    def handle(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.count == 1:
            self.received = signal.Signals(signum).name
            _say(f"agentflux: interrupted ({self.received}): stopping what was started "
                 "(a few seconds)")
            if not self._defer:
                raise KeyboardInterrupt
        elif self.count == 2:
            _say("agentflux: still stopping; a third signal exits at once")
        else:
            os._exit(130)

    def check(self) -> None:
        """At a safe point of a deferred section: raise if a signal came."""
        if self.received:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._defer += 1
        try:
            yield
        finally:
            self._defer -= 1

    @contextlib.contextmanager
    def installed(self) -> Iterator["Signals"]:
        """Handle SIGINT and SIGTERM for the duration (main thread only; restored after)."""
        import threading

        self.received, self.count = None, 0  # a new command (main() may run in-process)
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


SIGNALS = Signals()


def interrupted() -> bool:
    """In a ``finally`` or ``except`` block: is the code unwinding because of SIGINT/SIGTERM?
    (Clean-up then uses short timeouts.)"""
    return isinstance(sys.exc_info()[1], KeyboardInterrupt) or SIGNALS.received is not None


def agentflux_command() -> str:
    """How to run this agentflux from the user's shell, for the hints commands print:
    ``agentflux`` when that is on PATH and is this installation, else the script's path
    (relative when it is under the current directory, e.g. ``.venv/bin/agentflux``)."""
    script = Path(sys.executable).parent / "agentflux"  # the virtualenv's bin/ (not resolved)
    found = shutil.which("agentflux")
    if found and script.exists() and Path(found).resolve() == script.resolve():
        return "agentflux"
    if script.exists():
        try:
            return str(script.relative_to(Path.cwd()))
        except ValueError:
            return str(script)
    return f"{sys.executable} -m agentflux.cli"


def with_broker(settings: Settings, required: bool = True) -> Settings:
    """Fill in the broker `agentflux up` started when none is configured. A configured one is
    checked first (reachable, TLS trusted, SASL accepted): a failure is one ConfigError line."""
    if settings.bootstrap_servers:
        from agentflux.preflight import check_broker
        return check_broker(settings)
    from agentflux.localkafka import running_broker
    state = running_broker(settings.state_dir)
    if state:
        return settings.replace(bootstrap_servers=state["bootstrap"])
    if required:
        raise ConfigError("no Kafka broker: run `agentflux up` to start a local one, or set "
                          "KAFKA_BOOTSTRAP_SERVERS=host:port")
    return settings


@contextlib.contextmanager
def broker_for(settings: Settings, console=None) -> Iterator[Settings]:
    """A configured or running broker, else an ephemeral local one, stopped on exit after
    whatever the body started (its data is deleted with it, so after a signal it is given only
    a moment to stop)."""
    settings = with_broker(settings, required=False)
    if settings.bootstrap_servers:
        yield settings
        return
    from agentflux.localkafka import KafkaStartError, LocalKafka
    work = Path(tempfile.mkdtemp(prefix="agentflux-kafka-"))
    if console:
        console.print("[dim]starting a local Apache Kafka (KRaft) ...[/dim]")
    kafka = LocalKafka(work_dir=work, cache_dir=settings.state_dir)
    try:
        try:
            kafka.start()
        except KafkaStartError as exc:  # keep its log: the work directory goes below
            raise KafkaStartError(_keep_log(exc, kafka.log_path, settings.log_dir)) from None
        yield settings.replace(bootstrap_servers=kafka.bootstrap)
    finally:
        kafka.stop(timeout_s=1.0 if interrupted() else 20.0)
        shutil.rmtree(work, ignore_errors=True)


def _keep_log(exc: BaseException, log: Path, log_dir: Path) -> str:
    """``exc``'s message with ``log`` copied into ``log_dir`` (the original is deleted next)."""
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        kept = log_dir / "kafka-failed-start.log"
        shutil.copyfile(log, kept)
    except OSError:
        return str(exc)
    return str(exc).replace(str(log), str(kept))


# --- commands --------------------------------------------------------------------------------

def cmd_up(args: argparse.Namespace) -> int:
    """Start the local broker, or restart a stopped/crashed one on its data and ports;
    ``--reset`` deletes its data and starts a fresh cluster on new ports."""
    from agentflux.localkafka import up
    settings = Settings.from_env()
    if args.reset and not args.force:
        _confirm_reset(settings.state_dir)
    state = up(settings.state_dir, reset=args.reset)
    what = {"already_running": "already running at",
            "restarted": "restarted on existing data at",
            "fresh": "started a fresh cluster" + (" (old data deleted)" if args.reset else "") + " at",
            }[state["action"]]
    print(f"Kafka {state['version']} {what} {state['bootstrap']} (cluster {state.get('cluster_id')}; "
          f"pid {state['pid']}; data {state['work_dir']}; log {state['log']})")
    print(f"export KAFKA_BOOTSTRAP_SERVERS={state['bootstrap']}  # optional: commands find it anyway")
    return 0


def _confirm_reset(state_dir: Path) -> None:
    """``up --reset`` deletes the local broker's data (every topic and event on it): ask in a
    terminal, refuse otherwise unless --force. Nothing to delete: nothing to ask."""
    from agentflux.localkafka import read_state

    state = read_state(state_dir) or {}
    data = Path(state.get("work_dir") or state_dir / "local-kafka")
    if not data.exists():
        return
    if not sys.stdin.isatty():
        raise ConfigError(f"`agentflux up --reset` deletes the local Kafka's data in {data} "
                          "(every topic and event on it): add --force to do it")
    answer = input(f"delete the local Kafka's data in {data} (every topic and event on it) "
                   "and start a fresh cluster? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise ConfigError("nothing deleted (`agentflux up` without --reset resumes the "
                          "broker on its data)")


def cmd_down(args: argparse.Namespace) -> int:
    from agentflux.localkafka import down
    state = down(Settings.from_env().state_dir)
    if state:
        print(f"stopped Kafka at {state['bootstrap']}; its data is kept in {state['work_dir']} "
              "(`agentflux up` resumes it, `agentflux up --reset --force` deletes it for a fresh "
              "cluster)")
    else:
        print("no local Kafka was running")
    return 0


def _preflight_logs(settings: Settings) -> dict:
    """Create missing topics and read the cluster and topic ids their offsets count in (history
    segments are named by them); an unreachable broker is one line naming the address and the
    setting, not a traceback."""
    from aiokafka.errors import KafkaError

    from agentflux.streams.kafkameta import log_identities
    from agentflux.streams.topics import ensure_topics

    t = settings.topics
    try:
        asyncio.run(ensure_topics(settings))
        return asyncio.run(log_identities(settings, [t.events, t.kpis]))
    except (KafkaError, OSError, asyncio.TimeoutError) as exc:
        raise ConfigError(f"cannot reach the Kafka broker at {settings.bootstrap_servers} "
                          f"({type(exc).__name__}: {exc}): start it (`agentflux up`) or set "
                          "KAFKA_BOOTSTRAP_SERVERS") from None


def open_history(settings: Settings):
    """The history root, created with its schema files and catalog; a root that cannot be
    written is one line naming the setting."""
    from agentflux.sinks.catalog import write_catalog
    from agentflux.sinks.history import History

    history = History(settings.history_path)
    try:
        history.init()
        if history.local:
            write_catalog(history)
    except OSError as exc:
        raise ConfigError(f"cannot write the history at {settings.history_path} ({exc}): pass "
                          "--history PATH (or set AGENTFLUX_HISTORY) to a writable location") \
            from None
    return history


def _bind_error(host: str, port: int) -> OSError | None:
    """Why ``host:port`` cannot be listened on now, or None (port 0: never)."""
    import socket

    if not port:
        return None
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc
    return None


def _port_problem(host: str, port: int, exc: OSError, what: str, flag: str, env: str,
                  host_env: str) -> str:
    import errno

    from agentflux.localkafka import free_port

    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} for the worker's {what} is taken by another process "
                f"(another worker?): pass {flag} N or set {env}=N, e.g. {flag} {free_port()}")
    return (f"cannot listen on {host}:{port} for the worker's {what} ({exc.strerror or exc}): "
            f"set {host_env} to an address of this machine, or pass {flag} N")


_PORTS = (("metrics_host", "metrics_port", "metrics endpoint (/metrics)", "--metrics-port",
           "AGENTFLUX_METRICS_PORT", "AGENTFLUX_METRICS_HOST"),
          ("web_host", "web_port", "Faust web server", "--web-port", "AGENTFLUX_WEB_PORT",
           "AGENTFLUX_WEB_HOST"))


def _check_ports(settings: Settings) -> None:
    """The worker's two listening ports, checked before anything starts: a taken port is one
    line naming it and the flag or variable that changes it (Faust would log a traceback)."""
    if settings.metrics_port and settings.metrics_port == settings.web_port:
        raise ConfigError(f"the metrics port and the Faust web port are both "
                          f"{settings.metrics_port}: give them different ports (--metrics-port, "
                          "--web-port or AGENTFLUX_METRICS_PORT, AGENTFLUX_WEB_PORT)")
    for host_name, port_name, what, flag, env, host_env in _PORTS:
        host, port = getattr(settings, host_name), getattr(settings, port_name)
        exc = _bind_error(host, port)
        if exc is not None:
            raise ConfigError(_port_problem(host, port, exc, what, flag, env, host_env))


def _history_rows(metrics, table: str) -> int:
    value = metrics.registry.get_sample_value("agentflux_history_rows", {"table": table})
    return int(value or 0)


def _worker_class(summary):
    """The bounded-stop Faust worker, saying at once that a signal came, and summarising the
    run before it exits (also when the bounded stop cuts it short)."""
    from agentflux.streams.app import BoundedStopWorker

    class CliWorker(BoundedStopWorker):
        signal_name: str | None = None

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            if not self.stdout.isatty():  # Faust's spinner hides the cursor in any file
                self.spinner = None

        def _schedule_shutdown(self, sig) -> None:
            if not self._signal_stop_time:
                self.signal_name = sig.name
                _say(f"agentflux worker: interrupted ({sig.name}): stopping (at most "
                     f"{self.stop_timeout_s:g} s)")
            super()._schedule_shutdown(sig)

        def _exit_now(self, why: str) -> None:
            _say(summary())
            super()._exit_now(why)

    return CliWorker


def tune_gc() -> None:
    """The worker's garbage collection. The hot path allocates a few objects per batch, not per
    event, but the codec's per-event path (records the native decoder refuses) and Faust's
    allocate many, freed by reference counting; the default generation-0 threshold (700) would
    run the cyclic collector every few hundred of them. Collect rarely instead, and keep
    start-up objects out of it. (Benchmarks of worker parts call it too.)"""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def cmd_worker(args: argparse.Namespace) -> int:
    # `kill -QUIT <pid>` writes every thread's stack to the worker's stderr and the worker goes
    # on, as a JVM's thread dump does: how a worker that hangs is looked into (the harness does
    # it when a worker it started does not come up). Faust takes SIGUSR1 and SIGUSR2.
    faulthandler.register(signal.SIGQUIT, all_threads=True)
    from agentflux.memory import tune_memory
    tune_memory()  # before anything imports pyarrow

    from agentflux.sinks.prometheus import PipelineMetrics
    from agentflux.worker import create_app

    settings = Settings.from_env(history_path=args.history, metrics_port=args.metrics_port,
                                 web_port=args.web_port)
    if args.stop_timeout <= 0:
        raise ConfigError(f"--stop-timeout {args.stop_timeout:g}: give seconds > 0")
    # what needs no broker first: a taken port or an unwritable history is one line at once
    _check_ports(settings)
    history = open_history(settings)
    settings = with_broker(settings)
    identities = _preflight_logs(settings)
    metrics = PipelineMetrics()
    from agentflux.streams import native
    if not native.OPTIMISED:
        print("agentflux worker: warning: the native decoder is an unoptimised (debug) build and "
              "decodes ~15x slower; rebuild it with `make venv` (or `pip install -e .`, which "
              "builds it optimised)", file=sys.stderr)
    app = create_app(settings, metrics=metrics, history=history, identities=identities)
    at_start = {t: _history_rows(metrics, t) for t in ("events", "deadletters")}

    def summary() -> str:
        landed = {t: _history_rows(metrics, t) - n for t, n in at_start.items()}
        return (f"agentflux worker: stopped; this run landed {landed['events']:,} events and "
                f"{landed['deadletters']:,} dead letters in {history.root}")

    worker = _worker_class(summary)(app, loglevel=args.loglevel, quiet=True,
                                    redirect_stdouts=False, stop_timeout_s=args.stop_timeout)
    # Until Faust installs its own handlers (once it has started), a signal asks the worker
    # for its bounded stop too, instead of unwinding from the middle of its start-up.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: worker._schedule_shutdown(signal.Signals(signum)))
    # /metrics only now: whoever waits for it to stop the worker (a supervisor, the fault
    # harness) gets that bounded stop, not an interrupted start-up
    try:
        port = metrics.serve(settings.metrics_host, settings.metrics_port)
    except OSError as exc:  # taken since the check
        raise ConfigError(_port_problem(settings.metrics_host, settings.metrics_port, exc,
                                        *_PORTS[0][2:])) from None
    print(f"agentflux worker: {settings.bootstrap_servers} -> {history.root}; "
          f"metrics on http://{settings.metrics_host}:{port}/metrics; Faust web on "
          f"http://{settings.web_host}:{settings.web_port}", flush=True)
    tune_gc()
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:  # how a Faust worker ends
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if worker.signal_name:
        print(summary(), file=sys.stderr, flush=True)
    return code


def _docker_client(url: str | None):
    """A docker SDK client that answered a ping, or one ConfigError line saying how to get one."""
    import docker
    url = url or os.environ.get("DOCKER_HOST") or None
    try:
        client = docker.DockerClient(base_url=url) if url else docker.from_env()
        client.ping()
    except Exception as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"cannot reach the Docker API at {url or 'the default socket'} ({why}): "
                          "start a Docker engine, or podman's (`podman system service --time=0 "
                          "unix:///tmp/podman.sock`), and pass --docker-url "
                          "unix:///tmp/podman.sock (or set DOCKER_HOST)") from None
    return client


def cmd_pool_manager(args: argparse.Namespace) -> int:
    """Apply the autoscaler's signed pool commands to containers through the Docker API. Runs
    until SIGTERM / SIGINT, which stop it cleanly (exit 0): the containers stay, and the next
    start adopts them by their labels."""
    from agentflux.commands import keys_of
    from agentflux.localdocker import IMAGE

    settings = Settings.from_env()
    if not keys_of(settings.command_keys):
        raise ConfigError("pool commands are signed: set AGENTFLUX_COMMAND_KEYS to the key(s) the "
                          "autoscaler signs with (comma-separated; the first signs, any verifies)")
    if not 0 <= args.min_size <= args.max_size:
        raise ConfigError(f"--min-size {args.min_size} / --max-size {args.max_size}: give "
                          "0 <= min <= max")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise ConfigError(f"--metrics-port {args.metrics_port}: a TCP port is 0..65535")
    if args.report_every <= 0:
        raise ConfigError(f"--report-every {args.report_every:g}: give seconds > 0")
    image = args.image or IMAGE
    allow = set(args.allow_image or [image])
    if image not in allow:
        raise ConfigError(f"--image {image} is not in the --allow-image list: add it there")
    client = _docker_client(args.docker_url)
    try:
        client.images.get(image)
    except Exception as exc:
        raise ConfigError(f"the image {image} is not at the Docker API ({type(exc).__name__}): "
                          "pull or import it (e.g. `podman import rootfs.tar IMAGE`), or pass "
                          "--image") from None
    settings = with_broker(settings)
    from agentflux.runtime.emitter import Emitter
    from agentflux.runtime.instrument import Instrumentation
    from agentflux.runtime.pool import ContainerPool, DockerBackend
    from agentflux.runtime.poolmanager import PoolManager
    from agentflux.streams.topics import ensure_topics

    # the state file is read first: an unreadable one is one line before anything starts
    instr = Instrumentation(agent_id=f"pool-manager-{args.name}",
                            session_id=f"pool-manager-{args.name}")
    pool = ContainerPool(pool_size=0, instrumentation=instr, backend=DockerBackend(client, image))
    manager = PoolManager(settings, pool, pools=args.pool, min_size=args.min_size,
                          max_size=args.max_size, image_allowlist=allow, instrumentation=instr,
                          name=args.name, state_file=args.state_file,
                          report_every_s=args.report_every, metrics_port=args.metrics_port,
                          metrics_host=settings.metrics_host)
    asyncio.run(ensure_topics(settings))
    em = Emitter(settings, runtime="agentflux-pool-manager").start()
    instr.sink = em  # pool.state events to Kafka
    signalled: list[str] = []
    started = False

    async def run() -> None:
        nonlocal started
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(sig: signal.Signals) -> None:
            signalled.append(sig.name)
            if len(signalled) == 1:
                _say(f"agentflux: interrupted ({sig.name}): stopping the pool manager (its "
                     "containers stay; the next start adopts them)")
                stop.set()
            elif len(signalled) == 2:
                _say("agentflux: still stopping; a third signal exits at once")
            else:
                os._exit(130)

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_signal, sig)
        try:
            await manager.start()
            started = True
            pools = ", ".join(manager.managed_pools()) or "every pool a command names"
            metrics = (f"; metrics on http://{manager.metrics_host}:{manager.metrics_port}/metrics"
                       if manager.metrics_port is not None else "")
            print(f"agentflux pool-manager: {settings.topics.pool_commands} at "
                  f"{settings.bootstrap_servers} -> {pools} (image {image}, sizes "
                  f"{args.min_size}..{args.max_size}); state {manager.state_file}{metrics}",
                  flush=True)
            await manager.run_until(stop)
        finally:
            await manager.stop()

    try:
        asyncio.run(run())
    finally:
        # the loop's handlers are gone with it: the command's own take over again for the
        # bounded close below (a second signal says so, a third exits at once)
        if signalled:
            SIGNALS.received, SIGNALS.count = signalled[0], len(signalled)
        with contextlib.suppress(ValueError):  # not the main thread: nothing to restore
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, SIGNALS.handle)
        with SIGNALS.deferred():
            em.close(3 if signalled else 30)
        if started:
            s = manager.summary()
            rejected = ", ".join(f"{k} {v}" for k, v in sorted(s["rejected"].items())) or "none"
            print(f"agentflux pool-manager: stopped; applied {s['applied']}, duplicates "
                  f"{s['duplicate']}, rejected {sum(s['rejected'].values())} ({rejected})",
                  file=sys.stderr, flush=True)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from agentflux.replay import epoch_ms, run_replay

    if not args.history:
        raise ConfigError("replay needs --history PATH: a new, empty root to rebuild into")
    from_ms = epoch_ms(_iso_time("--from-time", args.from_time)) if args.from_time else None
    settings = with_broker(Settings.from_env())
    return run_replay(settings, args.history, from_ms, _console())


def cmd_history(args: argparse.Namespace) -> int:
    settings = Settings.from_env(history_path=args.history)
    if args.action == "init":
        history = open_history(settings)
        print(f"history at {history.root}: tables "
              + ", ".join(sorted(_tables())) + (f"; catalog {history.root}/history.duckdb "
                                                 "(views only; open it read-only any time)"
                                                 if history.local else ""))
        return 0
    if args.action == "import":
        from agentflux.migrate import import_duckdb

        if not args.db:
            raise ConfigError("history import needs --db PATH: the old DuckDB history file")
        _check_duckdb_file(args.db)
        history = open_history(settings)
        t = settings.topics
        counts = import_duckdb(args.db, history, t.events, t.kpis)
        print(f"imported {args.db} into {history.root}: "
              + ", ".join(f"{n:,} {table}" for table, n in counts.items()))
        return 0
    raise ConfigError(f"unknown history action {args.action!r}")


def _check_duckdb_file(db: str) -> None:
    """A file that is not a DuckDB database is named as such (opening it would say only that
    it cannot be opened). DuckDB's files say "DUCK" at byte 8."""
    try:
        with open(db, "rb") as f:
            head = f.read(12)
    except (FileNotFoundError, IsADirectoryError):
        return  # the import says there is no history there
    except OSError as exc:
        raise ConfigError(f"cannot read --db {db} ({exc.strerror or exc})") from None
    if head[8:12] != b"DUCK":
        raise ConfigError(f"--db {db} is not a DuckDB database file: pass the old layout's "
                          "DuckDB history file")


def _tables() -> list[str]:
    from agentflux.sinks.tables import TABLES
    return list(TABLES)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Publish a simulated runtime's events and print every emitter counter. Exit 0 only if
    every event was acknowledged, or the rest is safe in the spool (AGENTFLUX_SPOOL_DIR; the
    next emitter on it delivers it). SIGTERM / SIGINT end the run early: what is not delivered
    within 3 s goes to the spool, or is counted as dropped; exit 130 then."""
    from rich.progress import Progress

    from agentflux.runtime.emitter import Emitter
    from agentflux.streams.topics import ensure_topics

    for flag, value in (("--agents", args.agents), ("--sessions", args.sessions),
                        ("--events", args.events)):
        if value < 1:
            raise ConfigError(f"{flag} {value}: give a number >= 1")
    incidents = incident_specs(args.incident)
    if incidents is None:
        return 0  # --incident list: printed
    if incidents and not args.synthetic:
        print("agentflux simulate: --incident runs the synthetic generator (as --synthetic)",
              file=sys.stderr, flush=True)
        args.synthetic = True
    sim_config = None
    if args.synthetic:
        sim_config = synthetic_config(args.agents, args.events, args.seed, incidents)
    settings = with_broker(Settings.from_env())
    asyncio.run(ensure_topics(settings))
    em = Emitter(settings, runtime="agentflux-simulate").start()

    # A signal must not unwind from inside Emitter.emit (it would leave an event counted as
    # emitted and in none of the other counters): while events are emitted a signal is only
    # recorded, and the next emit() raises KeyboardInterrupt before it touches the emitter.
    # Once the events are all emitted, a signal interrupts the final flush at once.
    emit_one = em.emit

    def emit(event):
        SIGNALS.check()  # unwinds like Ctrl-C: the emitter below still closes
        return emit_one(event)

    em.emit = emit  # the component runtime emits through the emitter too
    what = (f"{args.events:,} synthetic events" if args.synthetic
            else f"{args.sessions:,} sessions of {args.agents} agents")
    rt = None
    interrupted = False
    try:
        print(f"agentflux simulate: publishing {what} to {settings.topics.events} at "
              f"{settings.bootstrap_servers} (Ctrl-C stops)", file=sys.stderr, flush=True)
        with Progress(console=_console()) as progress, SIGNALS.deferred():
            if args.synthetic:
                from agentflux.runtime.simulate import SyntheticRuntime
                sim = SyntheticRuntime(sim_config)
                if incidents:
                    print(_incidents_line(sim), file=sys.stderr, flush=True)
                task = progress.add_task("events", total=args.events)
                sim.run(emit, lambda n: progress.advance(task, n))
            else:
                from agentflux.runtime.agentsim import AgentSimConfig, ComponentRuntime
                rt = ComponentRuntime(em, AgentSimConfig(agents=args.agents,
                                                         sessions=args.sessions, seed=args.seed))
                task = progress.add_task("sessions", total=args.sessions)
                asyncio.run(rt.run(lambda n: progress.advance(task, n)))
        SIGNALS.check()
        em.flush(60)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: delivering what is left (at most 3 s), then stopping",
              file=sys.stderr, flush=True)
    finally:
        em.close(3 if interrupted else 30)  # spools (or counts as dropped) what is left
    st = em.stats()
    if rt is not None and not interrupted:
        m = rt.optimizer.get_performance_metrics()
        print(f"tool-result cache hit rate {rt.tool_cache.get_stats()['hit_rate_percent']} %, "
              f"prompt-prefix hit rate {rt.prefixes.get_stats()['hit_rate_percent']} %, "
              f"warm starts {m['warm_start_rate_percent']} %")
    print(f"emitted {st.emitted}, acked {st.acked}, failed {st.failed}, dropped {st.dropped}, "
          f"pending {st.pending} (spooled {st.spooled})"
          + (f", recovered {st.recovered} from an earlier run's spool" if st.recovered else "")
          + (f", {st.spool_torn} torn spool records cut off" if st.spool_torn else "")
          + f"; write-to-ack p99 {st.ack_p99_ms or 0:.2f} ms", flush=True)
    total = st.emitted + st.recovered
    if st.acked == total:
        rc = 0
    elif st.failed == 0 and st.dropped == 0 and st.pending == st.spooled:
        print(f"{st.spooled} events are not delivered yet but safe in the spool {em.spool_dir}: "
              f"the next emitter started with AGENTFLUX_SPOOL_DIR={em.spool_dir} delivers them")
        rc = 0
    else:
        hint = ("" if em.spool_dir is not None else
                "; set AGENTFLUX_SPOOL_DIR to keep undelivered events across broker outages")
        print(f"agentflux: {total - st.acked} of {total} events were not delivered "
              f"(failed {st.failed}, dropped {st.dropped}, pending {st.pending}){hint}",
              file=sys.stderr)
        rc = 1
    return 130 if interrupted else rc


def incident_specs(names: list[str] | None) -> tuple | None:
    """``--incident NAME[:TARGET]`` flags as incident specs; None after printing the list for
    ``--incident list``. An unknown name or target is a ConfigError naming the valid ones."""
    from agentflux.runtime.simulate import IncidentSpec, incident_names

    if names and "list" in names:
        print("incidents (--incident NAME or NAME:TARGET, repeatable):\n" + incident_names())
        return None
    out = []
    for name in names or ():
        try:
            out.append(IncidentSpec.parse(name))
        except ValueError as exc:
            raise ConfigError(f"--incident {name}: {exc} (`--incident list` says what each "
                              "does)") from None
    return tuple(out)


def synthetic_config(agents: int, events: int, seed: int, incidents: tuple):
    """The synthetic generator's configuration: live event time, or with incidents accelerated
    event time that ends now, each incident starting after the first fifth of the run and
    lasting to its end (so a few seconds of publishing show an alert firing)."""
    from agentflux.runtime.simulate import SimConfig, accelerated

    try:
        config = SimConfig(agents=agents, events=events, seed=seed, incidents=incidents)
    except ValueError as exc:
        raise ConfigError(f"--incident: {exc}") from None
    return accelerated(config) if incidents else config


def _incidents_line(sim) -> str:
    import datetime as dt

    def at(ns: int) -> str:
        return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%H:%M:%S")

    return ("incidents (event time, UTC; the run spans "
            f"{at(sim.start_ns)} .. now): " + "; ".join(
                f"{i.name} on {', '.join(f'{k}={v}' for k, v in i.labels.items())} from "
                f"{at(i.start_ns)}" for i in sim.incidents))


def cmd_demo(args: argparse.Namespace) -> int:
    from agentflux.demo import run_demo
    incidents = incident_specs(args.incident)
    if incidents is None:
        return 0  # --incident list: printed
    return run_demo(events=args.events, history=args.history, agents=args.agents,
                    seed=args.seed, console=_console(), incidents=incidents, otlp=args.otlp)


def cmd_sql(args: argparse.Namespace) -> int:
    """Print a query's result; rows beyond --limit are counted in a note on stderr, so stdout
    holds only the result (a csv or json file stays valid)."""
    import duckdb

    from agentflux.sinks.catalog import connect

    if args.limit < 0:
        raise ConfigError(f"--limit {args.limit}: give a number of rows, or 0 for all of them")
    root = Settings.from_env(history_path=args.history).history_path
    try:
        con = connect(root)
    except (OSError, duckdb.Error) as exc:  # (FileNotFoundError is an OSError)
        raise ConfigError(_not_a_history(root, exc)) from None
    tty = sys.stdout.isatty()
    try:
        cur = con.execute(args.query)
        if cur.description is None:  # a statement without a result
            return 0
        columns = [d[0] for d in cur.description]
        if args.limit:
            rows = cur.fetchmany(args.limit + 1)
            more, rows = len(rows) > args.limit, rows[:args.limit]
        else:
            rows, more = _all_rows(cur), False
        sys.stdout.writelines(tabular.render(
            args.format, columns, rows, width=shutil.get_terminal_size().columns if tty else None,
            color=tty))
        sys.stdout.flush()
        if more:
            print(_more_rows(con, args.query, args.limit), file=sys.stderr)
    except duckdb.Error as exc:
        raise ConfigError(f"the query failed: {exc}") from None
    except BrokenPipeError:
        # `agentflux sql ... | head`: the reader stopped; no traceback when Python flushes stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        con.close()
    return 0


def _not_a_history(root: str, exc: BaseException) -> str:
    """Why ``root`` cannot be read as a history, and the fix, in one line."""
    fix = ("pass --history PATH (or set AGENTFLUX_HISTORY) to a history root: the directory a "
           "worker or `agentflux demo` writes")
    if "://" not in root:
        path = Path(root)
        if path.is_file():
            return f"{root} is a file, not a history root: {fix}"
        if not path.exists():
            return f"no history at {root} (no such directory): {fix}"
        if not (path / "events").is_dir():
            return f"{root} is not a history root (it has no events/ directory): {fix}"
    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    return f"cannot read the history at {root} ({reason}): {fix}"


def _all_rows(cur) -> Iterator[tuple]:
    """Every row, a batch at a time: --limit 0 --format csv can export more than fits in memory."""
    while batch := cur.fetchmany(10_000):
        yield from batch


def _more_rows(con, query: str, limit: int) -> str:
    left = (_count_rows(con, query) or 0) - limit
    if left > 1:
        return f"… {left:,} more rows (use --limit to see more)"
    if left == 1:
        return "… 1 more row (use --limit to see more)"
    # not counted (or fewer by now: retention deleted some since the query ran)
    return "… more rows (use --limit to see more)"


def _count_rows(con, query: str) -> int | None:
    """How many rows ``query`` returns, by running it again as ``SELECT count(*) FROM (query)``:
    DuckDB then reads only what counting needs (for a plain SELECT over the history's views,
    the Parquet footers' row counts). None when it is not one SELECT, or the count fails."""
    import duckdb

    try:
        statements = con.extract_statements(query)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            return None
        select = statements[0].query.rstrip().rstrip(";")  # the newline ends a trailing comment
        return con.execute(f"SELECT count(*) FROM (\n{select}\n)").fetchone()[0]
    except duckdb.Error:
        return None


def cmd_status(args: argparse.Namespace) -> int:
    from agentflux.status import main as status_main
    if args.json and not args.once:
        raise ConfigError("--json prints one snapshot: add --once (the live view is for a "
                          "terminal)")
    settings = Settings.from_env(metrics_port=args.metrics_port)
    return status_main(settings, args.metrics_url, args.once, args.json, args.interval,
                       _console())


def cmd_whatif(args: argparse.Namespace) -> int:
    """The autoscaler and predictor replayed offline over a recorded history with a policy (and
    another, side by side): the benchmark's figures, before deploying it."""
    from agentflux.whatif import render, run_whatif
    root = Settings.from_env(history_path=args.history).history_path
    for flag, path in (("--policy", args.policy), ("--other", args.other)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{flag} {path}: no such file (a policy YAML like "
                              "deploy/autoscaler.yaml)")
    try:
        result = run_whatif(root, args.policy, args.pool or None, other=args.other)
    except FileNotFoundError as exc:
        raise ConfigError(_not_a_history(root, exc)) from None
    except ValueError as exc:  # a policy's key and the fix
        raise ConfigError(f"policy: {exc}") from None
    if args.json:
        print(json.dumps(result, default=str))
    else:
        _console().print(render(result), markup=False, highlight=False)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """The history of a period as one self-contained HTML file (or Markdown), with the trends
    against the period before it."""
    from rich.progress import BarColumn, Progress, TextColumn

    from agentflux import analysis, report
    root = Settings.from_env(history_path=args.history).history_path
    if not args.days > 0 or args.days != args.days or args.days == float("inf"):
        raise ConfigError(f"--days {args.days:g}: give a positive number of days (0.25 is six "
                          "hours)")
    end = _iso_time("--end", args.end) if args.end else None
    out = args.out or ("report.html" if args.format == "html" else "report.md")
    if out != "-" and Path(out).is_dir():
        raise ConfigError(f"--out {out} is a directory: give a file's path, e.g. "
                          f"{Path(out) / ('report.' + args.format)}")
    try:
        con = analysis.connect(root)
    except FileNotFoundError as exc:
        raise ConfigError(_not_a_history(root, exc)) from None
    console = _console()
    try:
        steps = [k for k, _ in report.SECTIONS]
        with Progress(TextColumn("report"), BarColumn(), TextColumn("{task.description}"),
                      console=_stderr_console(), transient=True) as bar:
            task = bar.add_task("", total=len(steps))
            seen: list[str] = []

            def step(name: str) -> None:
                if seen:
                    bar.advance(task)
                seen.append(name)
                bar.update(task, description=name)

            r = report.build(con, str(root), args.days, end, progress=step)
            bar.advance(task)
    finally:
        con.close()
    text = report.render_html(r) if args.format == "html" else report.render_markdown(r)
    if out == "-":
        sys.stdout.write(text)
        return 0
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    plots = sum(isinstance(p, report.Figure) for s in r.sections for p in s.parts)
    worse = [report.FIGURE_LABELS.get(t["figure"], t["figure"]) for t in r.trends
             if t["verdict"] == "worse"]
    console.print(f"wrote {out} ({len(text.encode()) / 1024:,.0f} KB, {len(r.sections)} sections"
                  + (f", {plots} plots" if args.format == "html" else "") + "): "
                  f"{report.fmt_time(r.start)} to {report.fmt_time(r.end)} UTC, "
                  f"{r.summary['events']:,} events"
                  + (f"; worse than the period before: {', '.join(worse)}" if worse else ""),
                  markup=False, highlight=False)
    return 0


def _iso_time(flag: str, text: str):
    """``text`` as an aware datetime (UTC when it names no zone), or a ConfigError saying so."""
    import datetime as dt
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{flag} {text}: not an ISO 8601 time, e.g. 2026-11-25T08:00 or "
                          "2026-11-25T08:00:00+01:00 (UTC if no zone)") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _stderr_console():
    """A console like :func:`_console`, on standard error (progress while stdout is a file)."""
    from rich.console import Console
    tty = sys.stderr.isatty()
    return Console(stderr=True, highlight=False, force_terminal=tty, force_interactive=tty,
                   no_color=not tty)


def cmd_bench(args: argparse.Namespace) -> int:
    args.events_given = args.events is not None
    if args.what == "runtime":
        from agentflux.bench.runtime import main as bench_runtime
        return bench_runtime(as_json=args.json, console=_console())
    if args.what == "pipeline":
        from agentflux.bench.pipeline import FRESHNESS_S, LANDING_ROWS
        from agentflux.bench.pipeline import main as bench_main
        return bench_main(events=args.events or 2_000_000, peer_events=args.peer_events,
                          skip_peers=args.skip_peers, as_json=args.json, console=_console(),
                          freshness_s=FRESHNESS_S if args.freshness_seconds is None
                          else args.freshness_seconds,
                          landing_rows=LANDING_ROWS if args.landing_rows is None
                          else args.landing_rows)
    if args.what == "faults":
        from agentflux.bench.faults import DEFAULT_EVENTS
        from agentflux.bench.faults import main as bench_faults
        return bench_faults(events=args.events if args.events_given else DEFAULT_EVENTS,
                            only=args.scenario, as_json=args.json, console=_console())
    if args.what == "soak":
        from agentflux.bench.soak import main as bench_soak
        return bench_soak(minutes=args.minutes, rate=args.rate if args.rate is not None else
                          10_000.0, as_json=args.json, console=_console())
    if args.what == "profile":
        return cmd_bench_profile(args)
    if args.what == "detector":
        from agentflux.bench.detector import main as bench_detector
        return bench_detector(events=args.events or 300_000, seed=args.seed, as_json=args.json,
                              console=_console(), tool_names=args.tool_names)
    if args.what == "autoscale":
        from agentflux.bench.closedloop import main as bench_autoscale
        return bench_autoscale(duration_s=args.duration, seed=args.seed, backend=args.backend,
                               as_json=args.json, console=_console())
    if args.what == "alerts":
        from agentflux.bench.alerts import main as bench_alerts
        return bench_alerts(minutes=args.minutes_of_event_time, seed=args.seed,
                            as_json=args.json, console=_console())
    raise ConfigError(f"unknown benchmark {args.what!r}")


def cmd_bench_profile(args: argparse.Namespace) -> int:
    """py-spy over one worker draining a backlog: µs per event by bucket and thread group."""
    from agentflux.bench.profile import main as bench_profile
    return bench_profile(events=args.events or 500_000, out=args.out,
                         rate=args.rate if args.rate is not None else 100.0,
                         python=args.python, as_json=args.json, console=_console())


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("agentflux")
    except PackageNotFoundError:
        return "unknown"


class _Version(argparse.Action):
    """``--version``, looked up only when asked: importlib.metadata adds ~20 ms to every start."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the installed version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"agentflux {version()}")
        parser.exit()


class _HelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default, when it has one. None means "not set" (the
    help says what applies then: an environment variable, a per-benchmark figure) and a flag's
    False is its absence, so neither is shown."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help, default = action.help or "", action.default
        if default is None or default is False or default is argparse.SUPPRESS:
            return help
        shown = f"{default:,}" if isinstance(default, int) else str(default)
        return f"{help} (default: {shown.replace('%', '%%')})"


class _OverviewFormatter(argparse.HelpFormatter):
    """The overview, with the help column past the longest command name (argparse measures
    the options but not the commands: "pool-manager" would push its help to the next line)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog)
        self._action_max_length = 18


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="agentflux", description="Telemetry pipeline for AI-agent runtimes: Kafka, stream "
        "processors, a Parquet history to query.",
        epilog="`agentflux COMMAND --help` shows a command's options and their defaults.",
        formatter_class=_OverviewFormatter)
    ap.add_argument("--version", action=_Version)
    ap.add_argument("--debug", action="store_true",
                    help="print the traceback with an error (also AGENTFLUX_DEBUG=1); give it "
                         "before the command: agentflux --debug worker")
    # in the order a user needs them; `agentflux` alone prints this list
    sub = ap.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=description or help,
                              formatter_class=_HelpFormatter)

    history_help = ("the history's root: a directory or s3://bucket/prefix (env "
                    "AGENTFLUX_HISTORY; default ./agentflux-history)")
    p = command("up", "start a local Kafka (KRaft) in the background",
                "Start (or restart on its data) a local Apache Kafka (KRaft) in the background; "
                "the other commands find it.")
    p.add_argument("--reset", action="store_true",
                   help="delete the local broker's data and start a fresh cluster on new ports "
                        "(asks first in a terminal; elsewhere it needs --force)")
    p.add_argument("--force", action="store_true",
                   help="with --reset: delete the data without asking")
    p.set_defaults(fn=cmd_up)
    p = command("demo", "broker, worker and simulator end to end, a summary",
                "Broker + worker + simulator end to end, then a summary; what it started, it "
                "stops.")
    p.add_argument("--events", type=int, default=50_000, help="events to publish")
    p.add_argument("--agents", type=int, default=16, help="simulated agents")
    p.add_argument("--seed", type=int, default=42, help="the simulation's random seed")
    p.add_argument("--history", default="agentflux-demo-history",
                   help="the history root the demo writes (must be empty or absent)")
    p.add_argument("--incident", action="append", metavar="NAME[:TARGET]",
                   help="inject an incident (repeatable; `--incident list` names them): the "
                        "simulator then runs in accelerated event time, the incident from a "
                        "fifth of the run to its end, and the demo prints the alerts raised")
    p.add_argument("--otlp", action="store_true",
                   help="start a local Jaeger too (built once by `make`), export the run's "
                        "traces to it over OTLP and print its UI address (to send them "
                        "elsewhere, set OTEL_EXPORTER_OTLP_ENDPOINT instead)")
    p.set_defaults(fn=cmd_demo)
    p = command("simulate", "publish a simulated agent runtime's events",
                "Run a synthetic agent runtime on the real runtime components and publish its "
                "events.")
    p.add_argument("--agents", type=int, default=8, help="simulated agents")
    p.add_argument("--sessions", type=int, default=200, help="agent sessions to run")
    p.add_argument("--synthetic", action="store_true",
                   help="generate events directly (fast, exactly --events) instead")
    p.add_argument("--events", type=int, default=10_000, help="with --synthetic: events to publish")
    p.add_argument("--seed", type=int, default=42, help="the simulation's random seed")
    p.add_argument("--incident", action="append", metavar="NAME[:TARGET]",
                   help="inject an incident into the synthetic generator's events (repeatable; "
                        "implies --synthetic; `--incident list` names them): accelerated event "
                        "time ending now, the incident from a fifth of the run to its end")
    p.set_defaults(fn=cmd_simulate)
    p = command("worker", "run the stream processors into a history",
                "Run the stream processors (Faust worker): events and KPIs land in the history; "
                "Prometheus metrics on /metrics.")
    p.add_argument("--history", help=history_help)
    p.add_argument("--metrics-port", type=int, help="Prometheus port (env AGENTFLUX_METRICS_PORT; "
                   "default 9464)")
    p.add_argument("--web-port", type=int, help="the Faust web server's port (env "
                   "AGENTFLUX_WEB_PORT; default 6066): a second worker on this machine needs "
                   "other ports")
    p.add_argument("--loglevel", default="warning",
                   help="the worker's log level: debug, info, warning or error")
    p.add_argument("--stop-timeout", type=float, default=4.0,
                   help="seconds a stop (SIGTERM/SIGINT) may take before the worker exits "
                        "anyway, e.g. when the broker is unreachable; nothing is lost: the "
                        "history resumes after its landed segments")
    p.set_defaults(fn=cmd_worker)
    p = command("status", "what a running worker is doing: lag, rates, alerts, pools",
                "A live view of a running worker: consumer lag per partition, records and "
                "events per second, dead letters, open windows, alerts firing, pool targets and "
                "the last predictions, from its /metrics and the topics it writes.")
    p.add_argument("--metrics-port", type=int, help="the worker's Prometheus port (env "
                   "AGENTFLUX_METRICS_PORT; default 9464)")
    p.add_argument("--metrics-url", help="the worker's /metrics URL (instead of the port)")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between the two scrapes a snapshot's rates come from, and "
                        "between refreshes of the live view")
    p.add_argument("--once", action="store_true", help="one snapshot, then exit")
    p.add_argument("--json", action="store_true", help="with --once: one JSON object")
    p.set_defaults(fn=cmd_status)
    p = command("pool-manager", "apply the autoscaler's pool commands to containers",
                "Apply the autoscaler's signed pool commands (AGENTFLUX_COMMAND_KEYS) to warm "
                "container pools through the Docker API; reports pool.state events. SIGTERM / "
                "SIGINT stop it; its containers stay and the next start adopts them.")
    p.add_argument("--pool", action="append", metavar="NAME",
                   help="a pool to manage (repeatable; default: every pool a command names)")
    p.add_argument("--image", help="the containers' image (default: the local busybox image "
                   "that `make` and the tests import, localhost/agentflux-busybox:latest)")
    p.add_argument("--allow-image", action="append", metavar="IMAGE",
                   help="an image a command may name (repeatable; default: --image only)")
    p.add_argument("--min-size", type=int, default=0, help="the smallest target applied")
    p.add_argument("--max-size", type=int, default=50, help="the largest target applied")
    p.add_argument("--docker-url", help="the Docker API, e.g. unix:///run/podman.sock "
                   "(default: DOCKER_HOST, else the default socket)")
    p.add_argument("--state-file", help="where the last applied generation per pool is kept "
                   "(default: AGENTFLUX_HOME/pool-manager/NAME.json)")
    p.add_argument("--name", default="default", help="this manager's name: its consumer group "
                   "is agentflux-pool-manager-NAME")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port "
                   "(AGENTFLUX_METRICS_HOST, default 127.0.0.1; default: not served)")
    p.add_argument("--report-every", type=float, default=10.0,
                   help="seconds between pool.state reports (and retries of a failed reconcile)")
    p.set_defaults(fn=cmd_pool_manager)
    p = command("sql", "query a history (read-only, also while workers write)",
                "Query a history through its DuckDB views (read-only; works while workers "
                "write).")
    p.add_argument("query", help='e.g. "SELECT * FROM kpi_timing LIMIT 10"')
    p.add_argument("--history", help=history_help)
    p.add_argument("--format", choices=tabular.FORMATS, default="table",
                   help="table: to read (values never cut: a wide one folds onto more lines; "
                        "numbers rounded to 4 significant digits, integers and times exact); "
                        "csv (with a header row), json (one array of objects), markdown (a "
                        "GitHub pipe table): every value at full precision")
    p.add_argument("--limit", type=int, default=50,
                   help="rows to print at most, 0 for all. When rows are left out, a note on "
                        "stderr says how many: a single SELECT is run again as SELECT count(*) "
                        "FROM (query) to count them (DuckDB reads only what counting needs); "
                        "other statements say only that there are more")
    p.set_defaults(fn=cmd_sql)
    p = command("history", "create a history root, or import an old DuckDB one",
                "The Parquet history: `init` creates a root's tables and its DuckDB catalog of "
                "views; `import --db OLD` brings in a history of the earlier single-DuckDB-file "
                "layout.")
    p.add_argument("action", choices=["init", "import"],
                   help="init: create the tables and the catalog; import: bring in --db")
    p.add_argument("--db", help="import: the old DuckDB history file")
    p.add_argument("--history", help=history_help)
    p.set_defaults(fn=cmd_history)
    p = command("replay", "rebuild a history from Kafka into a new root",
                "Rebuild a history from Kafka into a new root (after changing a view or a "
                "processor, or losing a disk).")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--from-beginning", action="store_true",
                      help="from the start of the topics' retained logs")
    when.add_argument("--from-time", help="from the first record at or after this time (ISO "
                      "8601; UTC if no zone; records of its millisecond are in)")
    p.add_argument("--history", help="the new root to write (must be empty or absent)")
    p.set_defaults(fn=cmd_replay)
    p = command("whatif", "replay a history through another autoscaler policy",
                "Run the autoscaler and predictor offline over a recorded history with a "
                "policy (and --other, side by side): warm-start rate, idle container-seconds, "
                "cold starts and p99 acquire latency, as `bench autoscale` reports them.")
    p.add_argument("--history", help="the history root (default: AGENTFLUX_HISTORY)")
    p.add_argument("--policy", help="the policy YAML (default: the built-in defaults)")
    p.add_argument("--other", help="a second policy YAML, compared side by side")
    p.add_argument("--pool", action="append", help="only this pool (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(fn=cmd_whatif)
    p = command("report", "a period of the history as one HTML file with plots and trends",
                "A period of the history as one self-contained HTML file (plots embedded, no "
                "network requests) or Markdown: summary, latency and errors per tool and model, "
                "caching and compression, cost, alerts, pools and autoscaling, resource usage, "
                "and the trends against the period before it.")
    p.add_argument("--history", help=history_help)
    p.add_argument("--days", type=float, default=7.0,
                   help="the period's length in days (a fraction is fine: 0.25 is six hours)")
    p.add_argument("--end", help="the period's end (ISO 8601; UTC if no zone; default: the last "
                   "event, alert, prediction or command in the history)")
    p.add_argument("--out", help="the file to write (default report.html, or report.md with "
                   "--format md; - for standard output)")
    p.add_argument("--format", choices=["html", "md"], default="html",
                   help="html (plots as embedded SVG) or md (the tables and trends)")
    p.set_defaults(fn=cmd_report)
    command("down", "stop the local Kafka started by `up`",
            "Stop the local Kafka started by `up`; its data is kept for the next `up`.") \
        .set_defaults(fn=cmd_down)
    p = command("bench", "benchmarks (figures, not tests)", "Benchmarks: figures, not tests.")
    p.add_argument("what", choices=["pipeline", "runtime", "faults", "soak", "profile",
                                    "alerts", "detector", "autoscale"],
                   help="the benchmark to run")
    p.add_argument("--events", type=int, default=None,
                   help="events per run (pipeline: 2,000,000; faults: 100,000 per scenario; "
                        "detector: 300,000; "
                        "profile: 500,000)")
    p.add_argument("--peer-events", "--baseline-events", type=int, default=500_000,
                   help="pipeline: events for each peer (per-event Faust, Quix Streams, raw "
                        "consumer)")
    p.add_argument("--skip-peers", action="store_true",
                   help="pipeline: measure the worker and the emitter only")
    p.add_argument("--freshness-seconds", type=float, default=None,
                   help="pipeline: seconds of the live freshness phase at 10,000 events/s "
                        "(default 20; 0 skips it)")
    p.add_argument("--landing-rows", type=int, default=None,
                   help="pipeline: event rows of the landing and query measurements (default "
                        "1,000,000; at least 1,000)")
    p.add_argument("--scenario", action="append",
                   help="faults: run only this scenario (repeatable; default: all)")
    p.add_argument("--minutes", type=float, default=30.0, help="soak: duration")
    p.add_argument("--rate", type=float, default=None,
                   help="soak: events per second to hold (default 10,000); profile: py-spy "
                        "samples per second (default 100)")
    p.add_argument("--out", help="profile: directory for profile.json, profile.md and the "
                   "stacks (default: a new temporary directory)")
    p.add_argument("--python", help="profile: the worker's interpreter (default: this one), "
                   "e.g. another checkout's virtualenv")
    p.add_argument("--minutes-of-event-time", type=float, default=60.0,
                   help="alerts: minutes of the simulated fleet's event time (published in "
                        "accelerated time), incidents every 8 minutes after a 5-minute warm-up")
    p.add_argument("--duration", type=float, default=150.0,
                   help="autoscale: seconds of the bursty trace (a compressed day; each of the "
                        "three legs replays it in real time)")
    p.add_argument("--backend", default="podman", choices=["podman", "process"],
                   help="autoscale: containers through podman's Docker API, or local processes")
    p.add_argument("--seed", type=int, default=7,
                   help="alerts, detector, autoscale: the simulation's random seed")
    p.add_argument("--tool-names", type=int, default=0,
                   help="detector: give the first N tool calls N distinct tool names (a flood "
                        "of keys, as a hostile or careless runtime sends)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(fn=cmd_bench)
    return ap


def _debug(args: argparse.Namespace | None = None) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("AGENTFLUX_DEBUG") == "1"


def _one_line(text: str) -> str:
    """The first line of a message (a KafkaStartError may carry a log's tail after it)."""
    lines = str(text).strip().splitlines() or [""]
    return lines[0] + (" (`agentflux --debug ...` shows the rest)" if len(lines) > 1 else "")


def main(argv: list[str] | None = None) -> int:
    """Run a command. ``agentflux`` alone asks what there is: the commands, one line each, and
    exit 0 (not argparse's "the following arguments are required")."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    debug = _debug(args)
    if debug:
        os.environ["AGENTFLUX_DEBUG"] = "1"  # the processes a command starts inherit it
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if debug:
        logging.getLogger("agentflux").setLevel(logging.DEBUG)
    from agentflux.harness import WorkerExited
    from agentflux.localkafka import KafkaStartError

    def fail(line: str, code: int) -> int:
        if debug:
            import traceback
            traceback.print_exc()
        print(line, file=sys.stderr, flush=True)
        return code

    with SIGNALS.installed():
        try:
            return args.fn(args)
        except (ConfigError, KafkaStartError) as exc:
            return fail(f"agentflux: error: {_one_line(exc) if not debug else exc}", 2)
        except WorkerExited as exc:
            return fail(f"agentflux: error: {exc.summary()}", 1)
        except TimeoutError as exc:
            return fail(f"agentflux: timed out: {_one_line(exc)}", 3)
        except KeyboardInterrupt:
            # the signal handler said "interrupted" when it came; a command that had started
            # something has stopped it by now
            if SIGNALS.received is None:  # a KeyboardInterrupt Python raised on its own
                _say("agentflux: interrupted")
            return 130
        except BrokenPipeError:  # `agentflux ... | head`: the reader went away
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except Exception as exc:  # a bug, or an error not foreseen: still one line
            text = _one_line(exc) or type(exc).__name__
            return fail(f"agentflux: error: {type(exc).__name__}: {text} (a bug? `agentflux "
                        f"--debug {args.command} ...` or AGENTFLUX_DEBUG=1 shows the "
                        "traceback)", 1)


if __name__ == "__main__":
    sys.exit(main())
