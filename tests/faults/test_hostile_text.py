"""Hostile text in a dashboard: sample texts, claim texts, run and dataset names that try to end the
data <script>, open an HTML comment, inject markup or break a JS string. In headless Chromium
every section must still draw, nothing injected may run, and every text reads back verbatim.
"""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from tests.support.browser import chromium_path, open_dashboard
from attnlife.report.dashboard import script_json

HOSTILE = [
    "<!--<script",
    "</script><script>window.__pwned = 1</script>",
    "<img src=x onerror=\"window.__pwned = 2\">",
    "line\u2028sep\u2029para & &amp; &lt; ]]> --> <![CDATA[",
    "`${window.__pwned = 3}` \\\" ' \\u003c",
    "<!-- <script> unclosed",
]
RUN_NAME = "run <!--<script> & <\\script> \u2028"   # a folder name: no "/"
DATASET = "</script><!--<script>ds & co"
SECTIONS = ("curves", "attention", "arch", "eigen", "patterns", "umap", "types", "claims", "samples")
NON_EMPTY = """id => { const gd = document.getElementById(id);
  if (gd && gd.querySelector('table')) return gd.querySelectorAll('tbody tr').length;   // HTML table
  if (!gd || !gd.data || !gd.data.length) return 0;
  return gd.data.map(t => t.type === 'table' ? t.cells.values[0].length
                        : (t.z ? t.z.length : (t.y ? t.y.filter(v => v !== null).length : 0)))
                .reduce((a, b) => a + b, 0); }"""


def test_script_json_escapes_every_breaking_character() -> None:
    text = script_json({"t": HOSTILE, RUN_NAME: DATASET})
    assert not re.search(r"[<>&\u2028\u2029]", text)
    assert json.loads(text) == {"t": HOSTILE, RUN_NAME: DATASET}


@pytest.fixture(scope="module")
def hostile_dashboard(tmp_path_factory):
    from attnlife.report.dashboard import write_dashboard
    from attnlife.report.data import ReportRun
    from tests.support.synthetic import write_synthetic_run
    from attnlife.store.analysis_tables import read_analysis_table, write_analysis_table

    root = write_synthetic_run(tmp_path_factory.mktemp("hostile") / RUN_NAME)
    record = json.loads((root / "run.json").read_text())
    record["config"]["data"]["dataset"] = DATASET
    (root / "run.json").write_text(json.dumps(record))
    write_analysis_table(root, "samples", pd.DataFrame({"step": range(len(HOSTILE)), "text": HOSTILE}))
    claims = read_analysis_table(root, "claims")
    claims.loc[0, "claim"], claims.loc[1, "measured"] = HOSTILE[0], HOSTILE[1]
    write_analysis_table(root, "claims", claims)
    return write_dashboard(ReportRun(root))


@pytest.mark.skipif(chromium_path() is None, reason="needs Chromium: apt-get install chromium")
def test_hostile_texts_cannot_break_a_section(hostile_dashboard) -> None:
    with open_dashboard(hostile_dashboard) as (page, errors, blocked):
        assert errors == [] and blocked == []
        assert page.evaluate("window.__pwned") is None            # nothing injected ran
        for section in SECTIONS:
            assert page.evaluate(NON_EMPTY, f"plot-{section}") > 0, section
        texts = page.evaluate("[...document.querySelectorAll('#sample-texts pre')].map(p => p.textContent)")
        assert texts == HOSTILE                                    # verbatim, as text
        # the page's own four scripts (payload, plotly, health, dashboard) and nothing injected
        assert page.evaluate("document.querySelectorAll('#sample-texts img, body > script').length") == 4
        shown = page.evaluate("[...document.querySelectorAll('#plot-claims td')].map(td => td.textContent)")
        assert HOSTILE[1] in shown and any(HOSTILE[0] in v for v in shown)
        assert page.evaluate("document.title") == f"attnlife: {RUN_NAME} ({DATASET})"
