"""`agentflux report` over a history the demo made (the real pipeline, two incidents), and the
HTML it writes rendered in headless Chromium (Debian's `chromium`): the page loads with no
console error, makes no network request, and every plot has a size."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentflux import analysis
from agentflux.browser import load

# every plot's rendered size, and the number of <figure>s, evaluated in the page
FIGURES_JS = """(() => {
  const imgs = [...document.querySelectorAll('figure img')];
  return {figures: document.querySelectorAll('figure').length,
          sections: [...document.querySelectorAll('section h2')].map(h => h.textContent),
          sizes: imgs.map(i => { const r = i.getBoundingClientRect();
                                 return [i.naturalWidth, i.naturalHeight, r.width, r.height,
                                         i.complete]; })};
})()"""


def _report(root: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentflux.cli", "report", "--history", str(root),
                           "--out", str(out), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def half(demo_history) -> str:
    """--days of half the history's span: this period holds the incidents' second half, the
    previous one the healthy fifth and their start."""
    con = analysis.connect(demo_history)
    first, last = analysis.span(con)
    con.close()
    return f"{(last - first).total_seconds() / 2 / 86400:.6f}"


def test_html_report_renders_in_chromium_with_every_plot_and_no_request(demo_history, half,
                                                                         tmp_path):
    out = tmp_path / "report.html"
    proc = _report(demo_history, out, "--days", half)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"wrote {out}" in proc.stdout.replace("\n", "")
    text = out.read_text()
    # self-contained: nothing the page could fetch (plots are data: URIs)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", text), "an external reference"
    assert "@import" not in text and "url(" not in text

    page = load(out, evaluate=FIGURES_JS, width=1200, height=900)
    assert page.console_errors == [] and page.exceptions == []
    assert page.requests == [] and page.failed_requests == []
    v = page.value
    assert v["sections"] == ["Summary", "Latency and errors", "Caching and compression", "Cost",
                             "Alerts", "Pools and autoscaling", "Resource usage",
                             "Trends against the previous period"]
    # the history has tool and LLM calls, caches, cost, alerts, pools, resources and a trend
    assert v["figures"] >= 10 and len(v["sizes"]) == v["figures"]
    for natural_w, natural_h, w, h, complete in v["sizes"]:
        assert complete and natural_w > 0 and natural_h > 0 and w > 0 and h > 0
    # the screenshot shows a page, not a blank: many colours, the page's full height
    from io import BytesIO

    import matplotlib.image as mpimg
    import numpy as np
    img = mpimg.imread(BytesIO(page.screenshot), format="png")
    assert img.shape[1] == 1200 and img.shape[0] > 3000
    assert len(np.unique(img.reshape(-1, img.shape[2])[::7], axis=0)) > 50


def test_the_report_calls_out_what_the_incidents_made_worse(demo_history, half, tmp_path):
    out = tmp_path / "report.md"
    proc = _report(demo_history, out, "--days", half, "--format", "md")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    md = out.read_text()
    for title in ("## Summary", "## Latency and errors", "## Caching and compression", "## Cost",
                  "## Alerts", "## Pools and autoscaling", "## Resource usage",
                  "## Trends against the previous period"):
        assert title in md
    # error_burst: web_search fails ~every call from a fifth of the run on, so the tool error
    # rate is higher in the second half than in the first, and called worse
    row = next(line for line in md.splitlines() if line.startswith("| tool error rate |"))
    assert row.rstrip(" |").endswith("worse") and "↑" in row
    assert "Worse than the previous period: " in md and "tool error rate up" in md
    # the burst raised alerts on that tool; the stalled model is the slowest in the table
    alerts = md.split("## Alerts")[1].split("## Pools")[0]
    assert "tool=web_search" in alerts
    assert "tool_error_budget" in alerts or "tool_failure_streak" in alerts
    latency = [line for line in md.split("## Latency and errors")[1].split("## Caching")[0]
               .splitlines() if line.startswith("| llm.call |")]
    p95 = {line.split("|")[2].strip(): line.split("|")[7].strip() for line in latency}
    assert p95["gpt-4o-mini"].endswith(" s") and float(p95["gpt-4o-mini"][:-2].replace(",", "")) > 20


def test_the_page_checker_sees_console_errors_exceptions_and_requests(tmp_path):
    """The rendering test can fail: a page with an error, an exception and an external image is
    reported as such."""
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><title>bad</title><img src='http://127.0.0.1:9/x.png'>"
                    "<script>console.error('broken'); null.x;</script>")
    r = load(page, screenshot=False)
    assert any("broken" in e for e in r.console_errors)
    assert r.exceptions and "TypeError" in r.exceptions[0]
    assert r.requests == ["http://127.0.0.1:9/x.png"] and r.failed_requests
