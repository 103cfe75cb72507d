"""Every registered figure is written and not blank; missing data is skipped with the right command."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from PIL import Image

from attnlife.report.api import ReportFormatError, check_formats, draw_figures, render_report
from attnlife.report.data import ReportRun
from attnlife.report.figures_analysis import VERDICT_COLOURS, claims_table
from attnlife.report.exemplars import HeadSpecError, choose_exemplars, parse_heads
from attnlife.report.api import load_all
from attnlife.report.style import log_spaced
from tests.support.synthetic import write_synthetic_run

NON_THEORY = sorted(name for name, spec in load_all().items() if spec.family != "theory")


def pixel_std(path) -> float:
    """Standard deviation of the grey levels (0-255) of an image: ~0 for a blank figure."""
    return float(np.asarray(Image.open(path).convert("L"), dtype=float).std())


def test_every_figure_written_and_not_blank(reported, synthetic_run):
    assert reported.skipped == []
    written = {p.name for p in reported.figures}
    for name in NON_THEORY:
        stem = load_all()[name].filename(ReportRun(synthetic_run))
        assert f"{stem}.png" in written, name
        png = synthetic_run / "report" / f"{stem}.png"
        with Image.open(png) as img:
            assert img.info["dpi"][0] == pytest.approx(200, abs=1)
        assert pixel_std(png) > 20, f"{name} looks blank"
    assert (synthetic_run / "report" / "train_loss_synthetic.png").is_file()


def test_vector_formats(synthetic_run, tmp_path):
    result = draw_figures([ReportRun(synthetic_run)], tmp_path, ("svg", "pdf"), names=("val_loss",), quiet=True)
    names = {p.name for p in result.figures}
    assert {"val_loss_synthetic.png", "val_loss_synthetic.svg", "val_loss_synthetic.pdf"} <= names
    assert (tmp_path / "val_loss_synthetic.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "val_loss_synthetic.pdf").read_bytes()[:5] == b"%PDF-"


def test_blank_image_has_no_variance(tmp_path):
    Image.new("RGB", (50, 40), "white").save(tmp_path / "blank.png")
    assert pixel_std(tmp_path / "blank.png") == 0.0


def test_missing_data_skipped_with_the_command(tmp_path):
    run = write_synthetic_run(tmp_path / "bare", parts=("metrics",))
    result = draw_figures([ReportRun(run)], tmp_path / "out", quiet=True)
    skipped = {line.split(":")[0].removeprefix("skipped "): line for line in result.skipped}
    assert f"run `attnlife spectra {run}`" in skipped["weights_rank_layers"]
    assert f"run `attnlife analyze {run}`" in skipped["trajectory_umap"]
    assert f"run `attnlife analyze {run}`" in skipped["claims_table"]
    assert "stores them during `attnlife train`" in skipped["attention_snapshots"]
    assert all(line.count("\n") == 0 for line in result.skipped)
    assert {p.stem for p in result.figures} == {"train_loss_synthetic", "val_loss_synthetic",
                                                "attention_metrics_synthetic", "layer_similarity_synthetic"}


def test_spectra_only_directory_draws_the_weight_figures_alone(tmp_path):
    run = write_synthetic_run(tmp_path / "spectra_only", parts=("spectra",))
    (run / "run.json").unlink()  # like `attnlife spectra --hf ... --out DIR`
    result = render_report(run, quiet=True)
    families = {load_all()[n].family for n in load_all() if any(p.stem == n for p in result.figures)}
    assert families == {"weights"}
    assert len(result.figures) == 9  # figures 5-12 (12 is two files)
    assert all("attnlife spectra" not in line for line in result.skipped)
    assert result.dashboard.is_file()


def test_exemplars_distinct_and_overridable(synthetic_run):
    heads = choose_exemplars(ReportRun(synthetic_run))
    assert len({(e.layer, e.head) for e in heads}) == len(heads) == 4
    assert heads[-1].reason == "median head"
    chosen = choose_exemplars(ReportRun(synthetic_run, heads=parse_heads("L1H2, L0H0")))
    assert [(e.layer, e.head, e.label) for e in chosen] == [(1, 2, "L1H2"), (0, 0, "L0H0")]
    with pytest.raises(HeadSpecError, match="L0H1"):
        parse_heads("0:1")
    with pytest.raises(HeadSpecError, match="2 layers x 3 heads"):
        choose_exemplars(ReportRun(synthetic_run, heads=[(5, 0)]))


def test_formats_and_log_spacing():
    assert check_formats(["SVG", "pdf"]) == ("png", "svg", "pdf")
    with pytest.raises(ReportFormatError, match="png, pdf or svg"):
        check_formats(["jpg"])
    assert log_spaced([0, 1, 2, 4, 8, 16, 250, 500, 750, 1000])
    assert not log_spaced(range(0, 2001, 250))


def test_study_figures_band_runs_of_one_config(tmp_path):
    from attnlife.report import draw_study_figures
    from attnlife.report.figures_training import groups

    runs = [write_synthetic_run(tmp_path / f"seed{s}", seed=s, parts=("metrics",)) for s in (0, 1)]
    other = write_synthetic_run(tmp_path / "wide", n_head=4, parts=("metrics",))
    grouped = groups([ReportRun(p) for p in runs + [other]])
    assert [len(members) for _, members in grouped] == [2, 1]
    assert grouped[0][0] == "seed0 (mean +- se, 2 seeds)"
    assert groups([ReportRun(p) for p in runs])[0][0] == "synthetic (mean +- se, 2 seeds)"
    # another dataset goes to its own figure files, never into the first dataset's figures
    import json

    third = write_synthetic_run(tmp_path / "text" / "seed0", parts=("metrics",))
    record = json.loads((third / "run.json").read_text())
    record["config"]["data"]["dataset"] = "text8"
    (third / "run.json").write_text(json.dumps(record))
    paths = draw_study_figures(runs + [third], tmp_path / "study")
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{f}_{d}.png" for f in ("attention_metrics", "layer_similarity", "train_loss",
                                                    "val_loss") for d in ("synthetic", "text8"))
    assert all(pixel_std(p) > 20 for p in paths)


def test_emergence_figure_plots_the_checkpoint_probe_loss_with_each_emergence_on_it(tmp_path):
    import matplotlib.pyplot as plt

    from attnlife.report.figures_analysis import head_type_emergence

    root = write_synthetic_run(tmp_path / "run", parts=("metrics", "analysis"))
    run = ReportRun(root)
    probe = run.model_series("probe_loss_nats", "probe").sort_values("step")  # every checkpoint, +- stderr
    loss = dict(zip(probe.step.astype(int), probe.value))
    emerged = sorted(int(s) for s in run.analysis["emergence"].emergence_step)
    assert len(emerged) == 3 and set(emerged) <= set(loss) and probe.stderr.notna().all()
    fig = head_type_emergence(run)
    bottom = fig.axes[1]
    line = bottom.lines[0]
    assert line.get_label() == "probe loss (every checkpoint)"
    np.testing.assert_allclose(line.get_xdata(), probe.step)
    np.testing.assert_allclose(line.get_ydata(), probe.value)
    band = bottom.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx((probe.value - 2 * probe.stderr).min())
    assert band.max() == pytest.approx((probe.value + 2 * probe.stderr).max())
    marks = {(float(x), float(y)) for ln in bottom.lines[1:] if ln.get_marker() == "|" for x, y in zip(ln.get_xdata(), ln.get_ydata())}
    assert sorted(marks) == [(float(s), pytest.approx(loss[s])) for s in emerged]
    plt.close(fig)


def test_emergence_figure_falls_back_to_val_loss_without_a_probe_pass(tmp_path):
    import matplotlib.pyplot as plt

    from attnlife.report.figures_analysis import head_type_emergence

    root = write_synthetic_run(tmp_path / "run", parts=("metrics", "analysis"), probe_loss=False)
    fig = head_type_emergence(ReportRun(root))
    assert fig.axes[1].lines[0].get_label() == "validation loss"
    plt.close(fig)
def test_claims_table_says_why_each_verdict(synthetic_run):
    fig = claims_table(ReportRun(synthetic_run))
    cells = fig.axes[0].tables[0].get_celld()
    header = [cells[0, c].get_text().get_text() for c in range(5)]
    assert header == ["source", "claim", "measured on this run", "verdict", "why"]
    why = [cells[r, 4].get_text().get_text().replace("\n", " ") for r in (1, 2, 3)]
    assert why == ["", "span fell", "model has fewer than 6 layers"]
    assert [cells[r, 3].get_facecolor() for r in (1, 2, 3)] == [
        to_rgba(VERDICT_COLOURS[v]) for v in ("holds", "does not hold", "not applicable")]
