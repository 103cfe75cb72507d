"""Theory figures: the titles are measured from the curves."""
from __future__ import annotations

import numpy as np

from attnlife.report.api import load_all
from attnlife.report.figures_theory import still_falling


def test_still_falling_detects_a_curve_that_has_not_frozen():
    steps = np.logspace(0, 4, 200)
    falling = 3.0 - 0.2 * np.log10(steps)  # falls 0.2 bits in every decade
    frozen = 2.0 + np.exp(-steps / 50)  # flat after a few hundred steps
    yes, drop = still_falling(steps, falling)
    assert yes and abs(drop - 0.2) < 1e-4  # linear interpolation between log-spaced samples
    no, drop_frozen = still_falling(steps, frozen)
    assert not no and abs(drop_frozen) < 1e-6


def test_theory_figures_are_registered_for_their_run_kinds():
    figures = load_all()
    assert figures["scan_snap"].kinds == ("theory-scan-snap",)
    assert figures["markov_focus"].kinds == ("theory-markov",)
    assert figures["sweep_entropy"].family == "theory"
