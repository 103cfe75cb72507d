"""attnlife.analysis: phases, head types, cycles, generation quality, correlations, trajectory
embedding, series integrity and the claims check; pure functions over arrays and DataFrames, with
`analyze_run` reading a run through the store and writing RUN/analysis/."""
from __future__ import annotations


def analyze_run(run_dir, *, quiet: bool = False, sample: bool = True) -> dict:  # noqa: ANN001
    """Analyse one run directory, write RUN/analysis/ and return the summary (see analysis.analyze)."""
    from attnlife.analysis.analyze import analyze_run as _analyze_run

    return _analyze_run(run_dir, quiet=quiet, sample=sample)


__all__ = ["analyze_run"]
