"""Step revision names and revision selectors (pure)."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlife.series.revisions import (RevisionSelectionError, RevisionSelector, log_spaced,
                                       parse_step_range, revision_step, select, step_revisions)
from tests.support.hub_suite import PYTHIA_STEPS, olmo_revision

PYTHIA = [(s, f"step{s}") for s in PYTHIA_STEPS]


@pytest.mark.parametrize("name, step", [
    ("step0", 0), ("step143000", 143000), ("step1000-tokens4B", 1000), ("step20000-tokens84M", 20000),
    ("stage1-step140000-tokens1175B", 140000), ("global_step500", 500), ("step_12", 12),
    ("main", None), ("v1.0", None), ("refs/pr/1", None), ("step", None), ("mystep12", None),
    ("step12-extra", None)])
def test_revision_step(name, step):
    assert revision_step(name) == step


def test_pythia_suite_has_154_revisions_in_step_order():
    names = ["main"] + [n for _, n in reversed(PYTHIA)] + ["v0"]
    suite = step_revisions(names)
    assert len(suite) == 154 and suite == PYTHIA
    assert suite[:4] == [(0, "step0"), (1, "step1"), (2, "step2"), (4, "step4")]
    assert suite[-1] == (143000, "step143000")


def test_olmo_names_and_ambiguous_steps():
    assert step_revisions([olmo_revision(2000), olmo_revision(1000)]) == [
        (1000, "step1000-tokens4000B"), (2000, "step2000-tokens8000B")]
    with pytest.raises(RevisionSelectionError, match="both hold step 1000"):
        step_revisions(["step1000", "step1000-tokens4B"])


def test_selectors_compose_names_range_every_kth():
    assert select(PYTHIA, RevisionSelector(names=("step1000", "step4"))) == [(4, "step4"), (1000, "step1000")]
    with pytest.raises(RevisionSelectionError, match="step7 not in the suite"):
        select(PYTHIA, RevisionSelector(names=("step7",)))
    ranged = select(PYTHIA, RevisionSelector(steps=(512, 3000)))
    assert [s for s, _ in ranged] == [512, 1000, 2000, 3000]
    assert [s for s, _ in select(PYTHIA, RevisionSelector(steps=(None, 4)))] == [0, 1, 2, 4]
    kth = select(PYTHIA, RevisionSelector(steps=(1000, None), every_kth=10))
    assert [s for s, _ in kth][:3] == [1000, 11000, 21000] and len(kth) == 15
    assert select(PYTHIA, RevisionSelector()) == PYTHIA


def test_log_spaced_pythia():
    picked = select(PYTHIA, RevisionSelector(log_spaced=12))
    steps = [s for s, _ in picked]
    assert len(steps) == 12 and steps[0] == 0 and steps[1] == 1 and steps[-1] == 143000
    logs = [math.log(s) for s in steps[1:]]
    gaps = [b - a for a, b in zip(logs, logs[1:])]
    assert max(gaps) < 2 * (logs[-1] - logs[0]) / (len(logs) - 1)   # roughly even in log(step)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=60, unique=True), st.integers(2, 70))
def test_log_spaced_properties(steps, n):
    suite = [(s, f"step{s}") for s in sorted(steps)]
    picked = log_spaced(suite, n)
    assert len(picked) == min(n, len(suite))
    assert picked == sorted(set(picked)) and set(picked) <= set(suite)
    assert picked[0] == suite[0] and picked[-1] == suite[-1]


def test_bad_selectors_say_what_to_do():
    with pytest.raises(RevisionSelectionError, match="LO:HI"):
        parse_step_range("1000")
    assert parse_step_range("1000:") == (1000, None) and parse_step_range(":5") == (None, 5)
    with pytest.raises(RevisionSelectionError, match="is empty"):
        RevisionSelector(steps=(5, 1))
    with pytest.raises(RevisionSelectionError, match=">= 1"):
        RevisionSelector(every_kth=0)
    with pytest.raises(RevisionSelectionError, match=">= 2"):
        RevisionSelector(log_spaced=1)
