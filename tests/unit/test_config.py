import subprocess
import sys

import pytest

from agentflux.config import ConfigError, SecretStr, Settings


def test_argument_beats_environment_beats_default():
    env = {"AGENTFLUX_WINDOW_S": "5", "AGENTFLUX_METRICS_PORT": "9999"}
    s = Settings.from_env(env, metrics_port=1234)
    assert s.window_s == 5.0 and s.metrics_port == 1234 and s.grace_s == 2.0


def test_errors_name_the_setting():
    with pytest.raises(ConfigError, match="AGENTFLUX_WINDOW_S"):
        Settings.from_env({"AGENTFLUX_WINDOW_S": "ten"})
    with pytest.raises(ConfigError, match="window_s"):
        Settings(window_s=0)
    with pytest.raises(ConfigError, match="KAFKA_SASL_MECHANISM"):
        Settings(security_protocol="SASL_SSL")


def test_topic_prefix_and_secrets():
    s = Settings.from_env({"AGENTFLUX_TOPIC_PREFIX": "acme", "KAFKA_SASL_PASSWORD": "hunter2",
                           "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                           "KAFKA_SASL_MECHANISM": "PLAIN"})
    assert s.topics.events == "acme.events" and s.topics.pool_commands == "acme.pool.commands"
    assert "hunter2" not in repr(s)
    assert isinstance(s.sasl_password, SecretStr)
    assert s.sasl_password.get_secret_value() == "hunter2"


def test_bind_defaults_are_loopback():
    s = Settings()
    assert s.metrics_host == "127.0.0.1" and s.web_host == "127.0.0.1"


def test_cli_user_error_is_one_line_not_a_traceback(tmp_path):
    env = {"AGENTFLUX_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "agentflux.cli", "simulate", "--events", "1"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "agentflux up" in proc.stderr and "KAFKA_BOOTSTRAP_SERVERS" in proc.stderr


def test_missing_java_or_maven_is_a_one_line_error(tmp_path):
    env = {"AGENTFLUX_HOME": str(tmp_path), "PATH": str(tmp_path)}  # no java, no mvn
    proc = subprocess.run([sys.executable, "-m", "agentflux.cli", "up"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "apt-get install" in proc.stderr and "KAFKA_BOOTSTRAP_SERVERS" in proc.stderr


def test_sql_command_prints_rows_and_reports_bad_queries_in_one_line(tmp_path):
    from agentflux.sinks.catalog import write_catalog
    from agentflux.sinks.history import History
    from agentflux.sinks.tables import EVENTS
    from tests.unit.test_history import rows

    h = History(tmp_path / "h")
    write_catalog(h)
    h.write_segment(EVENTS, rows(range(42)), log="a" * 12, partition=0, first=0, last=41)
    run = lambda *a: subprocess.run([sys.executable, "-m", "agentflux.cli", "sql", "--history",
                                     str(tmp_path / "h"), *a], capture_output=True, text=True,
                                    timeout=60, env={"COLUMNS": "120"})
    ok = run("SELECT philosophy, count(*) AS n FROM events GROUP BY ALL")
    assert ok.returncode == 0 and "react" in ok.stdout and "42" in ok.stdout, ok.stderr
    bad = run("SELEC nonsense")
    assert bad.returncode == 2 and "query failed" in bad.stderr and "Traceback" not in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "agentflux.cli", "sql", "--history",
                              str(tmp_path / "none"), "SELECT 1"], capture_output=True, text=True)
    assert missing.returncode == 2 and "agentflux demo" in missing.stderr
    assert "Traceback" not in missing.stderr

def test_kpi_dimensions_from_the_environment_and_their_errors():
    assert Settings().kpi_dimensions == ("name", "agent", "session", "tool", "cold", "resource")
    env = {"AGENTFLUX_KPI_DIMENSIONS": " name, agent ,tool"}
    assert Settings.from_env(env).kpi_dimensions == ("name", "agent", "tool")
    for bad in ("agent,tool", "name,sessions"):
        with pytest.raises(ConfigError, match="AGENTFLUX_KPI_DIMENSIONS"):
            Settings.from_env({"AGENTFLUX_KPI_DIMENSIONS": bad})
