"""The dashboard in a real browser: Debian's Chromium driven by Playwright, network blocked.

Needs /usr/bin/chromium (`make test` installs it when root; otherwise `apt-get install chromium`).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.support.browser import chromium_path, open_dashboard

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="needs Chromium: apt-get install chromium (make test does it as root)")

SECTIONS = ("curves", "attention", "arch", "eigen", "patterns", "umap", "types", "claims", "samples")
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"

NON_EMPTY = """id => { const gd = document.getElementById(id);
  if (gd && gd.querySelector('table')) return gd.querySelectorAll('tbody tr').length;
  if (!gd || !gd.data || !gd.data.length) return 0;
  return gd.data.map(t => t.type === 'table' ? t.cells.values[0].length
                        : (t.z ? t.z.length : (t.y ? t.y.filter(v => v !== null).length : 0)))
                .reduce((a, b) => a + b, 0); }"""


# Boxes of a Plotly plot's legend, colour bars, titles and tick labels; the problems found: a legend or
# colour bar overlapping any other box (by more than 1 px each way), or a box outside the plot's div.
LAYOUT = """id => { const gd = document.getElementById(id), out = [], boxes = [];
  if (!gd || !gd._fullLayout) return out;
  const frame = gd.getBoundingClientRect();
  const add = (el, kind) => { const r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0) boxes.push({kind, r, name: kind + ' ' + (el.textContent || '').slice(0, 30)}); };
  gd.querySelectorAll('g.legend').forEach(el => add(el.querySelector('.bg') || el, 'legend'));
  gd.querySelectorAll('g.colorbar').forEach(el => add(el, 'colorbar'));
  gd.querySelectorAll('g').forEach(g => { if (/^[xy]\\d*tick$/.test(g.getAttribute('class') || ''))
    g.querySelectorAll('text').forEach(el => add(el, 'tick')); });
  gd.querySelectorAll('.infolayer [class^="g-"][class*="title"] text, .gtitle').forEach(el => add(el, 'title'));
  const hit = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1 && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1;
  boxes.forEach((a, i) => {
    if (a.r.left < frame.left - 1 || a.r.right > frame.right + 1 || a.r.top < frame.top - 1 || a.r.bottom > frame.bottom + 1)
      out.push('outside the plot: ' + a.name);
    boxes.slice(i + 1).forEach(b => { if ((a.kind === 'legend' || a.kind === 'colorbar' || b.kind === 'legend' || b.kind === 'colorbar')
      && !(a.kind === 'colorbar' && b.kind === 'colorbar') && hit(a.r, b.r)) out.push('overlap: ' + a.name + ' / ' + b.name); });
  });
  return out; }"""


@pytest.fixture(scope="module")
def page(dashboard):
    with open_dashboard(dashboard) as (pg, errors, blocked):
        yield pg, errors, blocked


def test_loads_offline_without_console_errors(page):
    pg, errors, blocked = page
    assert errors == []
    assert blocked == []  # nothing even tried the network
    assert pg.evaluate("document.querySelectorAll('script[src], link[href], img[src], iframe').length") == 0
    assert pg.evaluate("typeof Plotly.newPlot") == "function"  # the library is inlined


@pytest.mark.parametrize("section", SECTIONS)
def test_every_section_holds_a_non_empty_plot(page, section):
    pg, _, _ = page
    assert pg.evaluate(NON_EMPTY, f"plot-{section}") > 0


@pytest.mark.parametrize("section", [s for s in SECTIONS if s != "claims"])
def test_legends_and_colour_bars_cover_nothing(page, section):
    pg, _, _ = page
    assert pg.evaluate(LAYOUT, f"plot-{section}") == []


def test_claims_table_and_patterns_at_full_size(page):
    pg, _, _ = page
    assert pg.evaluate("document.querySelectorAll('#plot-claims tbody tr').length") == 3
    assert pg.evaluate("document.querySelector('#plot-claims caption').textContent").startswith(
        "Published claims checked on this run: 1 hold, 1 do not, 1 not applicable")
    z = pg.evaluate("document.getElementById('plot-patterns').data[0].z")
    assert len(z) == len(z[0]) == 16  # the synthetic run's 16 positions, none cropped
    assert all(abs(sum(row) - 1) < 16 / 255 for row in z)  # causal rows still sum to 1 (uint8 rounding)


def test_play_advances_the_step_label(page):
    pg, _, _ = page
    pg.fill("#arch-slider", "0")
    pg.dispatch_event("#arch-slider", "input")
    before = pg.text_content("#arch-step")
    pg.click("#arch-play")
    pg.wait_for_function(f"document.getElementById('arch-step').textContent !== {before!r}", timeout=10_000)
    pg.click("#arch-play")  # pause
    assert pg.text_content("#arch-step") != before


def test_slider_changes_the_heatmap(page):
    pg, _, _ = page
    z = "() => JSON.stringify(document.getElementById('plot-arch').data[0].z)"
    pg.fill("#arch-slider", "0")
    pg.dispatch_event("#arch-slider", "input")
    first, label = pg.evaluate(z), pg.text_content("#arch-step")
    pg.fill("#arch-slider", pg.get_attribute("#arch-slider", "max"))
    pg.dispatch_event("#arch-slider", "input")
    assert pg.evaluate(z) != first
    assert pg.text_content("#arch-step") != label


def test_head_selector_changes_the_trajectories(page):
    pg, _, _ = page
    y = "() => JSON.stringify(document.getElementById('plot-eigen').data.map(t => t.y))"
    title = "() => document.getElementById('plot-eigen').layout.title.text"
    before = pg.evaluate(y)
    pg.select_option("#eig-head", "2")
    assert pg.evaluate(y) != before
    text = pg.evaluate(title)
    assert text.startswith("W_QK eigenvalues of L0H2: lambda_1 ")
    lam1 = [v for v in json.loads(pg.evaluate(y))[0] if v is not None and v > 0]
    ratio, first, last = (float(v) for v in re.search(r" x(\S+) \((\S+) -> (\S+)\)", text).groups())
    assert (first, last) == (pytest.approx(lam1[0], rel=5e-3), pytest.approx(lam1[-1], rel=5e-3))
    assert ratio == pytest.approx(max(lam1[-1] / lam1[0], lam1[0] / lam1[-1]), rel=5e-3)


def test_screenshot(page, dashboard):
    pg, _, _ = page
    shot = dashboard.with_name("dashboard.png")
    pg.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    if DOCS_SHOT.parent.is_dir() and not DOCS_SHOT.exists():
        shutil.copyfile(shot, DOCS_SHOT)


def test_patterns_open_on_the_head_that_emerged_first(page, synthetic_run, tmp_path_factory):
    """On a copy whose emergence table has L1H2 first, the section opens on L1H2 and says why
    (the same browser, another page; runs last: it navigates away)."""
    import pandas as pd

    from attnlife.report.dashboard import write_dashboard
    from attnlife.report.data import ReportRun
    from attnlife.store.analysis_tables import write_analysis_table

    copy = tmp_path_factory.mktemp("reordered") / "run"
    shutil.copytree(synthetic_run, copy)
    write_analysis_table(copy, "emergence", pd.DataFrame({
        "layer": [1, 0], "head_index": [2, 1], "type": ["previous_token", "sink"], "emergence_step": [20, 60],
        "threshold": 0.4, "probe_loss_nats": [2.5, 2.0]}))
    pg, errors, _ = page
    pg.goto(write_dashboard(ReportRun(copy)).resolve().as_uri(), wait_until="load")
    pg.wait_for_function("document.body.dataset.ready === '1'")
    assert errors == []
    assert (pg.input_value("#pat-layer"), pg.input_value("#pat-head"), pg.input_value("#pat-pick")) == ("1", "2", "1:2")
    assert pg.evaluate("document.getElementById('plot-patterns').layout.title.text").startswith("Attention pattern of L1H2 ")
    assert pg.text_content("#pat-why").startswith("Opened on L1H2 (previous token from step 20): the first of 2 heads "
                                                  "that emerged as a type")
    assert pg.text_content("#pat-pick-label") == "head that emerged"
    pg.select_option("#pat-pick", "0:1")                                 # the other emerged head
    assert pg.evaluate("document.getElementById('plot-patterns').layout.title.text").startswith("Attention pattern of L0H1 ")
    assert (pg.input_value("#pat-layer"), pg.input_value("#pat-head")) == ("0", "1")


def test_patterns_without_emergence_say_which_heads_they_offer(page, synthetic_run, tmp_path_factory):
    from attnlife.report.dashboard import write_dashboard
    from attnlife.report.data import ReportRun

    copy = tmp_path_factory.mktemp("noemergence") / "run"
    shutil.copytree(synthetic_run, copy)
    (copy / "analysis" / "emergence.parquet").unlink()
    pg, errors, _ = page
    pg.goto(write_dashboard(ReportRun(copy)).resolve().as_uri(), wait_until="load")
    pg.wait_for_function("document.body.dataset.ready === '1'")
    assert errors == []
    assert pg.text_content("#pat-pick-label") == "head over the depth"
    assert pg.text_content("#pat-why").startswith("Opened on L0H0 (no head type emerged): the first of 2 heads spread "
                                                  "over the depth")
