"""`agentflux demo` end to end: broker, worker, simulator, summary, a Parquet history."""

import os
import subprocess
import sys

from agentflux.sinks.catalog import connect


def test_demo_runs_end_to_end_and_leaves_a_history(kafka_bootstrap, tmp_path):
    root = tmp_path / "demo-history"
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "AGENTFLUX_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"),
           "COLUMNS": "160"}
    proc = subprocess.run([sys.executable, "-m", "agentflux.cli", "demo", "--events", "8000",
                           "--history", str(root)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "landed 8,000" in out and "dead letters 0" in out and "events/s" in out
    assert "llm.call" in out and "tool.call" in out
    # the loop closed: the worker's signed commands applied by the demo's pool manager
    import re
    applied = re.search(r"pool manager: applied (\d+) signed commands \((\d+) duplicates, "
                        r"(\d+) rejected\)", out.replace("\n", ""))
    assert applied, out[-2000:]
    assert int(applied.group(1)) >= 1 and applied.group(3) == "0"
    assert "warm (target" in out.replace("\n", "")
    assert f"agentflux sql --history {root}" in out.replace("\n", "")
    # the worker's log is in the state directory (the demo says where), nothing in /tmp
    logs = list((tmp_path / "home" / "logs").glob("demo-worker-*.log"))
    assert len(logs) == 1 and str(logs[0]) in out.replace("\n", "")
    assert not list((tmp_path / "tmp").iterdir())
    con = connect(root)
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone() == (8000, 8000)
    assert con.execute("SELECT count(*) FROM kpis").fetchone()[0] > 0
    assert con.execute("SELECT count(*) FROM kpi_timing").fetchone()[0] > 0
    con.close()
    # a second run never replaces the history: one line, the fix, nothing touched
    again = subprocess.run([sys.executable, "-m", "agentflux.cli", "demo", "--events", "10",
                            "--history", str(root)], env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 2 and "another --history" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    con = connect(root)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 8000


def test_demo_with_otlp_starts_jaeger_and_its_traces_are_there(kafka_bootstrap, tmp_path):
    from agentflux.config import Settings
    from agentflux.localjaeger import ensure_jaeger
    binary = ensure_jaeger(Settings.from_env().state_dir)  # (built by make; not built again)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "AGENTFLUX_HOME": str(tmp_path / "home"), "AGENTFLUX_JAEGER_BIN": str(binary),
           "COLUMNS": "160"}
    env.pop("DOCKER_HOST", None)  # (the demo starts podman's Docker API of its own)
    proc = subprocess.run([sys.executable, "-m", "agentflux.cli", "demo", "--otlp", "--events",
                           "3000", "--history", str(tmp_path / "h")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout.replace("\n", " ")
    assert "Jaeger in a container: OTLP http://127.0.0.1:" in out
    import re
    m = re.search(r"traces: ([\d,]+) spans exported over OTLP, 0 dropped .*Jaeger holds "
                  r"([\d,]+) traces of agentflux-sim: http://127\.0\.0\.1:\d+/search", out)
    assert m, out[-2000:]
    assert int(m.group(1).replace(",", "")) > 1000 and int(m.group(2).replace(",", "")) > 50
    # what it started, it stopped: no Jaeger left running, its work directory gone
    assert not list((tmp_path / "home").glob("demo-jaeger/*"))
