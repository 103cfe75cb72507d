"""attnlife.reproduce: the published four-run protocol over datasets and seeds.

`reproduce(out_dir, scale="cpu")` trains every (run, dataset, seed) cell as an ordinary run
directory, analyses and reports each, and writes OUT/results/ (see docs/results.md).
"""
from attnlife.reproduce.driver import GridSummary, ReproduceError, reproduce
from attnlife.reproduce.protocol import RUNS, SCALES, Cell, grid, parse_runs

__all__ = ["Cell", "GridSummary", "RUNS", "ReproduceError", "SCALES", "grid", "parse_runs",
           "reproduce"]
