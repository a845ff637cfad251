"""The notebooks in notebooks/ as committed: valid nbformat v4, outputs stripped (a diff shows code,
not plots), and reading the history the way analysts are told to: read-only through
``agentflux.analysis.connect`` at ``AGENTFLUX_HISTORY``."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
EXPECTED = {"latency.ipynb", "cost-and-caching.ipynb", "alerts-and-autoscaling.ipynb"}
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def test_the_three_notebooks_exist():
    assert EXPECTED <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_stripped(path: Path):
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 4
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a notebook without code"
    for i, cell in enumerate(code):
        assert cell.outputs == [], f"code cell {i} has outputs"
        assert cell.execution_count is None, f"code cell {i} has an execution count"
    assert set(nb.metadata) == {"kernelspec", "language_info"}, nb.metadata
    assert nb.metadata.kernelspec.name == "python3"
    assert dict(nb.metadata.language_info) == {"name": "python"}
    assert "widgets" not in json.dumps(nb.metadata)
    for cell in nb.cells:
        assert set(cell.metadata) <= {"tags"}, f"cell metadata: {cell.metadata}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_the_history_read_only_through_analysis(path: Path):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    source = "\n".join(c.source for c in cells)
    assert "analysis.connect(" in source
    assert "duckdb.connect" not in source and "read_parquet" not in source
    assert 'os.environ.get("AGENTFLUX_HISTORY"' in source
    # the first code cell opens the history and shows what it holds
    first = cells[0].source
    assert "AGENTFLUX_HISTORY" in first and "analysis.connect(" in first
    assert "analysis.row_counts(con)" in first and "analysis.span(con)" in first
    # the notebook opens with a title and what it answers
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
