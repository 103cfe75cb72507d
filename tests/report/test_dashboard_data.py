"""The dashboard's payload: round trips of the packed arrays, pooling without cropping, generation
metrics only, the emergence lanes of the figure, no machine path."""
from __future__ import annotations

import base64
import html
import json

import numpy as np
import pytest

from attnlife.report.dashboard import render_html, subtitle
from attnlife.report.dashboard_data import build_payload, pattern_pool, pooled
from attnlife.report.data import ReportRun, cube


@pytest.fixture(scope="module")
def payload(synthetic_run):
    return build_payload(ReportRun(synthetic_run))


def _f32(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


def test_cubes_and_their_standard_errors_round_trip(payload, synthetic_run):
    run = ReportRun(synthetic_run)
    rows = run.head_rows("entropy_bits")
    steps, values = cube(rows)
    _, se = cube(rows, "stderr")
    entry = payload["stats"]["entropy_bits"]
    assert entry["steps"] == steps.tolist()
    assert np.allclose(_f32(entry["values"]), values.astype(np.float32).ravel(), equal_nan=True)
    assert np.allclose(_f32(entry["stderr"]), se.astype(np.float32).ravel(), equal_nan=True)
    assert "stderr" not in payload["stats"]["stable_rank"]  # weight statistics carry none


def test_patterns_whole_and_pooled_never_cropped(payload, synthetic_run):
    snap = payload["snapshots"]
    assert snap["tokens"] == snap["t"] == 16 and snap["pool"] == 1          # the synthetic run's 16 positions
    assert snap["packing"] == "lower"                                       # causal: the lower triangle travels
    packed = np.frombuffer(base64.b64decode(snap["values"]), np.uint8).reshape(len(snap["steps"]), 2, 3, 16 * 17 // 2)
    rows, cols = np.tril_indices(16)
    frames = np.zeros(packed.shape[:3] + (16, 16), np.uint8)
    frames[..., rows, cols] = packed
    assert np.abs(frames.sum(-1) / 255 - 1).max() < 16 / 255                # every causal row sums to 1
    from attnlife.store.snapshots import SnapshotStore

    stored = SnapshotStore(synthetic_run).read("layer1", snap["steps"][-1]).float().numpy()
    assert np.abs(frames[-1, 1] / 255 - stored).max() <= 0.5 / 255 + 1e-3  # the pattern itself, rounded
    assert pattern_pool(128) == 1 and pattern_pool(129) == 2 and pattern_pool(2048) == 16
    p = np.random.default_rng(0).random((2, 300, 300)).astype(np.float32)
    small = pooled(p, 3)
    assert small.shape == (2, 100, 100)
    assert small[1, 7, 9] == pytest.approx(p[1, 21:24, 27:30].mean(), rel=1e-6)
    assert small.sum() * 9 == pytest.approx(p.sum(), rel=1e-5)             # all of the mass is shown
    assert pooled(p[:, :5, :5], 2)[0, 2, 2] == pytest.approx(p[0, 4, 4] / 4, rel=1e-6)  # padded edge block


def test_only_generation_metrics_in_the_quality_chart(payload):
    assert set(payload["samples"]["metrics"]) == {"distinct_2", "repetition_4"}


def test_emergence_lanes_match_the_analysis(payload, synthetic_run):
    types = payload["types"]
    table = ReportRun(synthetic_run).analysis["emergence"]
    assert types["lanes"] == [f"L{a}H{b}" for a in range(2) for b in range(3)]  # every head: 6 <= 24
    got = sorted((types["lanes"][e["lane"]], e["type"], e["step"]) for e in types["emergence"])
    assert got == sorted((f"L{r.layer}H{r.head_index}", r.type, r.emergence_step) for r in table.itertuples())
    assert len(types["codes"]) == 6 and all(len(row) == len(types["steps"]) for row in types["codes"])


def test_no_machine_path_in_the_page(payload, synthetic_run):
    page = render_html(payload, "/* plotly */")
    assert str(synthetic_run) not in page and str(synthetic_run.parent) not in page
    assert html.escape(subtitle(payload)) in page and "2 layers x 3 heads" in subtitle(payload)
    data = page.split('id="payload">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data)["name"] == synthetic_run.name


def test_a_given_plotly_bundle_is_inlined_and_checked(synthetic_run, tmp_path, monkeypatch):
    from attnlife.report.dashboard import PlotlyBundleError, plotly_bundle, write_dashboard
    from plotly.offline import get_plotlyjs

    assert plotly_bundle() == get_plotlyjs()                              # default: the plotly package's
    bundle = tmp_path / "plotly-cartesian.min.js"
    bundle.write_text("/** plotly.js (cartesian - minified) v0 */ var Plotly = {traces: ['scatter', 'heatmap']};")
    page = write_dashboard(ReportRun(synthetic_run), tmp_path / "d.html", plotly_js=bundle).read_text()
    assert bundle.read_text() in page and get_plotlyjs()[:2000] not in page
    monkeypatch.setenv("ATTNLIFE_PLOTLY_JS", str(bundle))
    assert plotly_bundle() == bundle.read_text()
    with pytest.raises(PlotlyBundleError, match="does not exist"):
        plotly_bundle(tmp_path / "none.js")
    (tmp_path / "other.js").write_text("console.log('not plotly')")
    with pytest.raises(PlotlyBundleError, match="is not a plotly.js bundle with scatter and heatmap"):
        plotly_bundle(tmp_path / "other.js")
