"""Layout of every registered figure: text inside the figure and nothing overlapping.

Every non-theory figure is drawn for a demo-like synthetic run (4 layers x 4 heads, log-spaced
checkpoints to step 2,000, probe-pass rows with standard errors), a 1-layer and a 12-layer run
(slow), and checked with `tests/support/layout.py` (matplotlib's own text extents). The checker
itself is tested on figures built to fail.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from attnlife.report.data import MissingData, ReportRun
from attnlife.report.api import load_all
from attnlife.report.style import house_style
from tests.support.synthetic import write_synthetic_run
from tests.support.layout import layout_problems

FIGURES = sorted(name for name, spec in load_all().items() if spec.family != "theory")
SHAPES = {"demo": dict(n_layer=4, n_head=4, n_ckpt=17, last_step=2000, n_tracked=17, d_head=32,
                       pattern_tokens=64, log_tracked=True, loss_every=10),
          "one_layer": dict(n_layer=1, n_head=4, n_ckpt=12, last_step=600, n_tracked=12, d_head=16,
                            pattern_tokens=32, log_tracked=True),
          "twelve_layers": dict(n_layer=12, n_head=8, n_ckpt=20, last_step=5000, n_tracked=20, d_head=16,
                                pattern_tokens=32, log_tracked=True, loss_every=25)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {}


def _run(runs, tmp_path_factory, shape: str) -> ReportRun:  # noqa: ANN001
    if shape not in runs:
        root = write_synthetic_run(tmp_path_factory.mktemp("layout") / shape, **SHAPES[shape])
        runs[shape] = ReportRun(root)
    return runs[shape]


def _check(run: ReportRun, may_skip: tuple[str, ...] = ()) -> dict[str, list[str]]:
    found = {}
    for name in FIGURES:
        spec = load_all()[name]
        with house_style():
            try:
                fig = spec.fn([run] if spec.multi_run else run)
            except MissingData as err:
                if name not in may_skip:
                    found[name] = [f"skipped: {err}"]
                continue
            problems = layout_problems(fig)
            plt.close(fig)
        if problems:
            found[name] = problems
    return found


def test_demo_like_run_every_figure_laid_out(runs, tmp_path_factory):
    assert _check(_run(runs, tmp_path_factory, "demo")) == {}


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["one_layer", "twelve_layers"])
def test_one_and_twelve_layers_every_figure_laid_out(runs, tmp_path_factory, shape):
    # one layer has no layer pairs: that figure is skipped (saying so), every other one is drawn
    assert _check(_run(runs, tmp_path_factory, shape), ("layer_similarity",) if shape == "one_layer" else ()) == {}


def test_checker_sees_clipping_and_overlap():
    with house_style():
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.set_title("a title far too long to fit a three inch wide figure at this size")
        assert any("outside the figure" in p and "title" in p for p in layout_problems(fig))
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot([0, 1], [0, 1], label="a line")
        ax.legend(loc="lower left", bbox_to_anchor=(0.02, -0.14)).set_in_layout(False)  # over the tick labels
        assert any("overlap" in p and "legend" in p and "tick" in p for p in layout_problems(fig))
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(4, 3))
        ins = ax.inset_axes((0.6, 0.8, 0.35, 0.35))   # pokes out of the top, over the title
        ins.set_in_layout(False)
        ins.set_title("inset")
        ax.set_title("main title")
        assert any("inset" in p for p in layout_problems(fig))
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.set_title("fits")
        ax.set_xlabel("steps")
        assert layout_problems(fig) == []
        plt.close(fig)
