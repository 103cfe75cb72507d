"""The dashboard in a real browser: Debian's Chromium driven by Playwright, network blocked.

Needs /usr/bin/chromium (`make test` installs it when root; otherwise `apt-get install chromium`).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.browser import chromium_path, open_dashboard

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="needs Chromium: apt-get install chromium (make test does it as root)")

SECTIONS = ("curves", "attention", "arch", "eigen", "patterns", "umap", "types", "claims", "samples")
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"

NON_EMPTY = """id => { const gd = document.getElementById(id);
  if (!gd || !gd.data || !gd.data.length) return 0;
  return gd.data.map(t => t.type === 'table' ? t.cells.values[0].length
                        : (t.z ? t.z.length : (t.y ? t.y.filter(v => v !== null).length : 0)))
                .reduce((a, b) => a + b, 0); }"""


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
    assert pg.evaluate(title).endswith("L0H2")


def test_screenshot(page, dashboard):
    pg, _, _ = page
    shot = dashboard.with_name("dashboard.png")
    pg.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    if DOCS_SHOT.parent.is_dir() and not DOCS_SHOT.exists():
        shutil.copyfile(shot, DOCS_SHOT)
