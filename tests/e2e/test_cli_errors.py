"""What a user who gets something wrong sees: one line on stderr, saying what is wrong and the
fix (the setting, flag or command), a non-zero exit, and no traceback unless they ask for it
(``agentflux --debug`` or ``AGENTFLUX_DEBUG=1``). Every case runs the real CLI in a subprocess;
none needs a broker (an address where nothing listens stands for an unreachable one)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


NOWHERE = "127.0.0.1:1"  # nothing listens on port 1


def cli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentflux.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A user's environment: a state directory and temporary files of this test's own, no
    broker configured (each case sets the one it needs)."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("KAFKA_", "AGENTFLUX_"))}
    (tmp_path / "tmp").mkdir()
    return {**e, "AGENTFLUX_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp")}


@contextlib.contextmanager
def listening() -> int:
    """A port another process listens on (a first worker, say)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A directory nobody can write: a read-only tmpfs when running as root (root ignores file
    modes; CI runs as root), else mode 0555."""
    d = tmp_path / "read-only"
    d.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(d)], check=True)
        yield d
        subprocess.run(["umount", "-l", str(d)], check=False)
    else:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)


def a_file(tmp_path: Path) -> Path:
    f = tmp_path / "notes.txt"
    f.write_text("not a history\n")
    return f


def not_a_history_dir(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    (d / "cat.jpg").write_bytes(b"\xff\xd8")
    return d


def non_empty(tmp_path: Path) -> Path:
    d = tmp_path / "earlier-history"
    d.mkdir()
    (d / "keep-me.parquet").write_bytes(b"PAR1")
    return d


# (id, argv (with {tmp}, {file}, ... filled in), extra environment, words the line must hold)
CASES = [
    ("bench-pipeline-too-few-landing-rows", ["bench", "pipeline", "--landing-rows", "10"], {},
     ["--landing-rows must be >= 1000, got 10"]),
    ("bench-pipeline-negative-freshness", ["bench", "pipeline", "--freshness-seconds", "-1"], {},
     ["--freshness-seconds must be 0 (skips the phase) or a number of seconds >= 0.0001",
      "got -1"]),
    ("bench-pipeline-freshness-not-a-number", ["bench", "pipeline", "--freshness-seconds", "nan"],
     {}, ["--freshness-seconds must be 0", "got nan"]),
    ("worker-unreachable-broker", ["worker", "--history", "{tmp}/h"],
     {"KAFKA_BOOTSTRAP_SERVERS": NOWHERE},
     [NOWHERE, "connection refused", "KAFKA_BOOTSTRAP_SERVERS", "agentflux up"]),
    ("simulate-unreachable-broker", ["simulate", "--synthetic", "--events", "10"],
     {"KAFKA_BOOTSTRAP_SERVERS": NOWHERE},
     [NOWHERE, "KAFKA_BOOTSTRAP_SERVERS", "agentflux up"]),
    ("worker-broker-without-port", ["worker", "--history", "{tmp}/h"],
     {"KAFKA_BOOTSTRAP_SERVERS": "localhost"},
     ["'localhost' is not host:port", "KAFKA_BOOTSTRAP_SERVERS=localhost:9092", "agentflux up"]),
    ("simulate-broker-as-url", ["simulate"], {"KAFKA_BOOTSTRAP_SERVERS": "http://broker:9092"},
     ["'http://broker:9092' is not host:port", "KAFKA_BOOTSTRAP_SERVERS"]),
    ("worker-unknown-broker-host", ["worker", "--history", "{tmp}/h"],
     {"KAFKA_BOOTSTRAP_SERVERS": "kafka.invalid:9092"},
     ["cannot resolve", "kafka.invalid:9092", "KAFKA_BOOTSTRAP_SERVERS", "agentflux up"]),
    ("no-broker-at-all", ["simulate"], {},
     ["no Kafka broker", "agentflux up", "KAFKA_BOOTSTRAP_SERVERS"]),
    ("history-in-read-only-dir", ["history", "init", "--history", "{read_only}/h"], {},
     ["cannot write the history at {read_only}/h", "--history", "AGENTFLUX_HISTORY"]),
    ("worker-history-in-read-only-dir", ["worker", "--history", "{read_only}/h"],
     {"KAFKA_BOOTSTRAP_SERVERS": NOWHERE},
     ["cannot write the history at {read_only}/h", "--history"]),
    ("history-in-missing-dir", ["history", "init", "--history", "{file}/h"], {},
     ["cannot write the history at {file}/h", "Not a directory", "--history"]),
    ("sql-on-a-file", ["sql", "--history", "{file}", "SELECT 1"], {},
     ["{file} is a file, not a history root", "--history", "agentflux demo"]),
    ("sql-on-another-dir", ["sql", "--history", "{other_dir}", "SELECT 1"], {},
     ["{other_dir} is not a history root", "--history"]),
    ("sql-on-a-missing-dir", ["sql", "--history", "{tmp}/nothing-here", "SELECT 1"], {},
     ["no history at {tmp}/nothing-here", "--history"]),
    ("second-worker-metrics-port", ["worker", "--history", "{tmp}/h", "--metrics-port", "{busy}"],
     {"KAFKA_BOOTSTRAP_SERVERS": NOWHERE},
     ["port {busy} on 127.0.0.1", "metrics", "is taken", "--metrics-port",
      "AGENTFLUX_METRICS_PORT"]),
    ("second-worker-web-port", ["worker", "--history", "{tmp}/h", "--web-port", "{busy}"],
     {"KAFKA_BOOTSTRAP_SERVERS": NOWHERE},
     ["port {busy} on 127.0.0.1", "Faust web server", "is taken", "--web-port",
      "AGENTFLUX_WEB_PORT"]),
    ("second-worker-web-port-from-env", ["worker", "--history", "{tmp}/h"],
     {"KAFKA_BOOTSTRAP_SERVERS": NOWHERE, "AGENTFLUX_WEB_PORT": "{busy}"},
     ["port {busy} on 127.0.0.1", "--web-port", "AGENTFLUX_WEB_PORT"]),
    ("worker-port-out-of-range", ["worker", "--metrics-port", "70000"], {},
     ["metrics_port=70000", "--metrics-port"]),
    ("demo-history-under-a-file", ["demo", "--events", "10", "--history", "{file}/h"],
     {"KAFKA_BOOTSTRAP_SERVERS": NOWHERE},
     ["cannot write the demo's history at {file}/h", "--history"]),
    ("demo-history-read-only", ["demo", "--events", "10", "--history", "{read_only}/h"],
     {"KAFKA_BOOTSTRAP_SERVERS": NOWHERE},
     ["cannot write the demo's history at {read_only}/h", "--history"]),
    ("demo-never-replaces-a-history", ["demo", "--events", "10", "--history", "{non_empty}"],
     {"KAFKA_BOOTSTRAP_SERVERS": NOWHERE},
     ["{non_empty} already exists and is not empty", "another --history"]),
    ("demo-no-events", ["demo", "--events", "0", "--history", "{tmp}/d"], {},
     ["--events 0", ">= 1"]),
    ("simulate-no-agents", ["simulate", "--agents", "0"], {"KAFKA_BOOTSTRAP_SERVERS": NOWHERE},
     ["--agents 0", ">= 1"]),
    ("bad-number-setting", ["worker"], {"AGENTFLUX_WINDOW_S": "ten"},
     ["AGENTFLUX_WINDOW_S='ten'", "float"]),
    ("history-import-not-duckdb", ["history", "import", "--db", "{file}", "--history", "{tmp}/h"],
     {}, ["--db {file} is not a DuckDB database file"]),
    ("state-dir-unwritable", ["demo", "--events", "10", "--history", "{tmp}/d"],
     {"AGENTFLUX_HOME": "{file}/home", "KAFKA_BOOTSTRAP_SERVERS": NOWHERE},
     ["cannot write the state directory {file}/home", "AGENTFLUX_HOME"]),
    ("up-reset-deletes-data", ["up", "--reset"], {},
     ["--reset", "deletes", "local-kafka", "--force"]),
]


@pytest.mark.parametrize("args,extra,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_user_error_is_one_line_with_the_fix(args, extra, needles, env, tmp_path,
                                               read_only_dir):
    home = Path(env["AGENTFLUX_HOME"])
    # a local broker's data, as `agentflux up` leaves it (for `up --reset`; never started here)
    data = home / "local-kafka" / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text("cluster.id=abc\n")
    with listening() as busy:
        names = {"tmp": str(tmp_path), "read_only": str(read_only_dir),
                 "file": str(a_file(tmp_path)), "other_dir": str(not_a_history_dir(tmp_path)),
                 "non_empty": str(non_empty(tmp_path)),
                 "busy": str(busy)}
        argv = [a.format(**names) for a in args]
        run_env = {**env, **{k: v.format(**names) for k, v in extra.items()}}
        proc = cli(argv, run_env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert lines[0].startswith("agentflux: error: "), lines[0]
    for needle in needles:
        assert needle.format(**names) in lines[0], (needle, lines[0])
    # nothing was started or replaced
    assert (data / "meta.properties").exists() and not (home / "local-kafka.json").exists()
    assert (Path(names["non_empty"]) / "keep-me.parquet").exists()
    assert not os.listdir(env["TMPDIR"]), os.listdir(env["TMPDIR"])


def test_debug_adds_the_traceback_and_keeps_the_line(env, tmp_path):
    line = f"agentflux: error: no history at {tmp_path}/none (no such directory)"
    plain = cli(["sql", "--history", f"{tmp_path}/none", "SELECT 1"], env)
    flag = cli(["--debug", "sql", "--history", f"{tmp_path}/none", "SELECT 1"], env)
    variable = cli(["sql", "--history", f"{tmp_path}/none", "SELECT 1"],
                   {**env, "AGENTFLUX_DEBUG": "1"})
    assert "Traceback" not in plain.stderr and plain.stderr.startswith(line)
    for proc in (flag, variable):
        assert proc.returncode == 2
        assert "Traceback (most recent call last)" in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith(line), proc.stderr


def test_up_reset_with_force_is_not_refused(env):
    """--force passes the confirmation (the broker then fails to start for want of its jars
    here: a different line, so the refusal above is the confirmation, nothing else)."""
    home = Path(env["AGENTFLUX_HOME"])
    (home / "local-kafka" / "data").mkdir(parents=True)
    proc = cli(["up", "--reset", "--force"], {**env, "PATH": "/nonexistent"})
    assert proc.returncode == 2 and "--force" not in proc.stderr, proc.stderr
    assert "Java not found" in proc.stderr or "Maven not found" in proc.stderr, proc.stderr
    assert not (home / "local-kafka").exists()  # the data was deleted, as asked
