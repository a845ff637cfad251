"""deploy/compose.yaml is not run here (no registry for its images); what can be checked is:
it parses, every file it mounts or builds from exists, and the configurations it mounts pass
the real tools' checks (promtool, amtool)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (Debian: apt-get install {package}, or "
                    "deploy/setup-system.sh)", pytrace=False)
    return path


def test_the_compose_file_mounts_and_builds_only_what_exists():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"kafka", "worker", "jaeger", "prometheus", "alertmanager"} <= set(services)
    build = services["worker"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    for svc in services.values():
        for volume in svc.get("volumes", ()):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), source
        for port in svc.get("ports", ()):
            assert port.startswith("127.0.0.1:"), port  # nothing published beyond loopback
    assert services["worker"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"


def test_the_configurations_compose_mounts_pass_promtool_and_amtool(tmp_path):
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    etc = tmp_path / "etc"
    etc.mkdir()
    for volume in compose["services"]["prometheus"]["volumes"]:
        source, target = volume.split(":")[:2]
        shutil.copy(DEPLOY / source, etc / Path(target).name)
    config = next(a.split("=", 1)[1] for a in compose["services"]["prometheus"]["command"]
                  if a.startswith("--config.file="))
    out = subprocess.run([tool("promtool", "prometheus"), "check", "config",
                          str(etc / Path(config).name)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 rule files found" in out.stdout + out.stderr
    out = subprocess.run([tool("amtool", "prometheus-alertmanager"), "check-config",
                          str(DEPLOY / "compose" / "alertmanager.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
