"""The notebooks executed top to bottom, as an analyst opens them, on a history made by the demo
(broker, worker, pool manager, two incidents: it holds alerts, pool commands and predictions):
no cell fails and every notebook draws its plots. The notebook files are read, never written."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
EXPECTED = ("latency.ipynb", "cost-and-caching.ipynb", "alerts-and-autoscaling.ipynb")
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def test_the_three_notebooks_exist():
    assert set(EXPECTED) <= {p.name for p in NOTEBOOKS}


@pytest.fixture
def history_env(demo_history: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The kernel inherits the environment: the demo's history, and a headless backend."""
    monkeypatch.setenv("AGENTFLUX_HISTORY", str(demo_history))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return demo_history


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_on_a_demo_history(path: Path, history_env: Path):
    before = path.read_bytes()
    nb = nbformat.read(path, as_version=4)  # (executed in memory: outputs stay out of the repo)
    # a failing cell raises CellExecutionError, which fails the test with the cell's traceback
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}).execute()
    assert path.read_bytes() == before

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Traceback" not in streams
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "the notebook drew no plot"
    # the first code cell says what the history holds
    first = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert str(history_env) in first and "events" in first and "UTC" in first

    if path.name == "alerts-and-autoscaling.ipynb":
        # the demo's incidents fire alerts and its closed loop issues commands and predictions:
        # those sections drew, not apologised
        for section in ("alerts", "pool commands", "predictions"):
            assert f"no {section} in this history" not in streams, streams
