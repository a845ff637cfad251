"""deploy/prometheus: the scrape configuration, the recording rules and the alerting rules pass
Debian's promtool (check config, check rules, and the rule unit tests in rules.test.yml), the
alerting rules cover the built-in failure rules, and every metric they read is one the worker
exposes. A missing promtool fails (it is the Debian package ``prometheus``), it never skips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from agentflux.agents.failures import load_rules
from agentflux.localprom import PrometheusMissing, promtool
from agentflux.sinks.prometheus import KPI_COUNTERS, PipelineMetrics

DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULE_FILES = ("recording.rules.yml", "alerting.rules.yml")
# built-in rules keyed by a session or an agent id: never a Prometheus label, so not expressible
NOT_IN_PROMETHEUS = {"agent_failure_streak", "session_cost_budget", "agent_cost_budget"}


def run_promtool(*args: str) -> str:
    try:
        done = promtool(*args)
    except PrometheusMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    out = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, out
    return out


def alerting_rules() -> list[dict]:
    """The alerts (not the recording rules some of them read, kept in their group so that they
    are evaluated before them)."""
    doc = yaml.safe_load((DIR / "alerting.rules.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_config_and_rule_files_pass_promtool_check():
    out = run_promtool("check", "config", str(DIR / "prometheus.yml"))
    assert "SUCCESS: 2 rule files found" in out
    out = run_promtool("check", "rules", *(str(DIR / f) for f in RULE_FILES))
    assert out.count("SUCCESS") == 2


def test_rule_unit_tests_pass():
    out = run_promtool("test", "rules", str(DIR / "rules.test.yml"))
    assert "SUCCESS" in out


def test_alerting_rules_cover_every_enabled_built_in_rule_with_its_severity():
    built_in = {spec.name: spec for spec in load_rules().rules if spec.params["enabled"]}
    covered: dict[str, set[str]] = {}
    for rule in alerting_rules():
        covered.setdefault(rule["labels"]["rule"], set()).add(rule["labels"]["severity"])
    assert set(covered) == set(built_in) - NOT_IN_PROMETHEUS
    for name, severities in covered.items():
        p = built_in[name].params
        want = ({w["severity"] for w in p["windows"]} if built_in[name].kind == "burn_rate"
                else {p["severity"]})
        assert severities == want, name


def test_rules_read_only_metrics_the_worker_exposes():
    exposed = {f"agentflux_{family}_total" for family, _ in KPI_COUNTERS.values()}
    text = generate_latest(PipelineMetrics().registry).decode()
    exposed |= set(re.findall(r"^# TYPE (\S+) ", text, re.M))  # (counters: ..._total)
    for h in ("agentflux_span_duration_seconds", "agentflux_landing_freshness_seconds"):
        exposed |= {f"{h}_bucket", f"{h}_count", f"{h}_sum"}
    used = set()
    for f in RULE_FILES:
        doc = yaml.safe_load((DIR / f).read_text())
        for g in doc["groups"]:
            for r in g["rules"]:
                used |= set(re.findall(r"\bagentflux_[a-z_]+", r["expr"]))
    assert used and not used - exposed, sorted(used - exposed)
