"""The notebooks on histories that lack most of what a full deployment lands: they run top to
bottom and say what is missing ("no alerts in this history: ...") instead of failing.

Two histories, written with the project's own writer (no Kafka): one of simulated tool and LLM
calls with the KPI windows the pipeline makes of them (and no alerts, pool events, pool commands,
predictions, caches, compressions or resource samples), and one with no events at all."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from agentflux.runtime.simulate import SimConfig, SyntheticRuntime
from agentflux.sinks.history import History, log_id
from agentflux.sinks.tables import EVENTS, KPIS, kpi_table
from agentflux.streams.frame import EventFrame
from agentflux.streams.windows import TumblingWindows, explode

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = ("latency", "cost-and-caching", "alerts-and-autoscaling")
S = 10**9


def calls_only_history(root: Path) -> Path:
    """A history of about two minutes of simulated tool and LLM calls and their 10-s KPI
    windows."""
    sim = SyntheticRuntime(SimConfig(events=3000, agents=4, seed=7, start_ns=1_700_000_000 * S))
    events = [e for e in sim.events() if e["type"] in ("tool.call", "llm.call")]
    windows = TumblingWindows(size_s=10, grace_s=0, wall_clock_ns=lambda: 2**62, log="L")
    windows.add(events)
    rows = [r.to_dict("test") for r in explode(windows.close_due(flush_all=True))]
    h = History(str(root))
    h.init()
    log = log_id("c", "t")
    ev = EVENTS.rows(EventFrame.from_wire(events, 0))
    h.write_segment(EVENTS, ev, log=log, partition=0, first=0, last=ev.num_rows - 1)
    kt = kpi_table(rows, 0, list(range(len(rows))))
    h.write_segment(KPIS, kt, log=log, partition=0, first=0, last=len(rows) - 1)
    return root


def empty_history(root: Path) -> Path:
    History(str(root)).init()
    return root


def run_notebook(name: str, history: Path) -> tuple[str, int]:
    """Execute notebooks/<name>.ipynb (a copy in memory: the file is not written) on
    ``history``; its stream output text and the number of images it drew."""
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    with pytest.MonkeyPatch.context() as env:  # (the kernel inherits the environment)
        env.setenv("AGENTFLUX_HISTORY", str(history))
        env.setenv("MPLBACKEND", "Agg")
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    assert not any(o.output_type == "error" for o in outputs)
    assert "Traceback" not in text
    return text, images


@pytest.fixture(scope="module")
def calls_only(tmp_path_factory) -> dict[str, tuple[str, int]]:
    root = calls_only_history(tmp_path_factory.mktemp("calls-only") / "history")
    return {name: run_notebook(name, root) for name in NOTEBOOKS}


def test_latency_plots_the_calls(calls_only):
    text, images = calls_only["latency"]
    assert images >= 3  # tool and model percentiles, error rates (and the slowest sessions)
    assert " in this history: " not in text  # every section had its data


def test_cost_plots_the_llm_calls_and_says_what_is_missing(calls_only):
    text, images = calls_only["cost-and-caching"]
    assert images >= 3  # cost per model, over time, per agent and session, prompt caching
    assert "no cache lookups in this history: " in text
    assert "no context compressions in this history: " in text


def test_alerts_and_autoscaling_say_what_is_missing(calls_only):
    text, images = calls_only["alerts-and-autoscaling"]
    assert images == 0
    for missing in ("alerts", "pool commands", "pool events", "pool acquisitions",
                    "predictions", "resource samples"):
        assert f"no {missing} in this history: " in text, missing


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_a_history_without_events(name, tmp_path):
    text, images = run_notebook(name, empty_history(tmp_path / "history"))
    assert images == 0
    assert "no events in this history" in text
    assert text.count(" in this history: ") >= 3, text
