"""The `attnlife theory` verbs write run directories, analysis tables and readable PNGs."""
from __future__ import annotations

import matplotlib.image as mpimg
from typer.testing import CliRunner

from attnlife.cli import app
from attnlife.store.run_dir import load_run


def _png_ok(path) -> None:
    img = mpimg.imread(path)
    assert img.shape[0] > 300 and img.shape[1] > 600 and img.std() > 0.05   # not blank


def test_scan_snap_sweep_and_single(tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "sweep"
    res = runner.invoke(app, ["theory", "scan-snap", "--sweep", "--out", str(out), "--mk", "1/2", "--ratio", "0.5",
                              "--ratio", "5", "--sweep-eta-z", "2", "--seeds", "2", "--steps", "30",
                              "--seq-len", "16", "--quiet"])
    assert res.exit_code == 0, res.output
    tables = load_run(out).analysis()
    assert len(tables["sweep_final"]) == 2 and tables["sweep_trend"].m.tolist() == [1]
    assert {p.name for p in (out / "analysis").glob("*.json")} == {"summary.json"}
    _png_ok(out / "report" / "sweep_entropy.png")
    single = tmp_path / "single"
    res = runner.invoke(app, ["theory", "scan-snap", "--out", str(single), "--steps", "30", "--seq-len", "16",
                              "--n-last", "1", "--n-next", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    _png_ok(single / "report" / "scan_snap.png")
    assert load_run(single).analysis_table("scan_snap").signal.tolist()[0] == "entropy_distinct_bits"
    assert load_run(single).config["steps"] == 30


def test_markov_cli_and_bad_input(tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "mk"
    res = runner.invoke(app, ["theory", "markov", "--out", str(out), "--steps", "40", "--seq-len", "12",
                              "--n-embd", "8", "--vocab-size", "6", "--log-every", "5", "--n-train-seqs", "64",
                              "--quiet"])
    assert res.exit_code == 0, res.output
    cycles = load_run(out).analysis_table("cycles")
    focus = cycles[cycles.signal == "attn_focus_excess"]
    assert set(focus.status) <= {"open", "closed"}
    assert f"{(focus.status == 'closed').sum()} closed focus-dilution cycle(s)" in res.output
    assert {p.name for p in (out / "analysis").glob("*.json")} == {"summary.json"}  # no side files
    _png_ok(out / "report" / "markov_focus.png")
    res = runner.invoke(app, ["theory", "scan-snap", "--sweep", "--out", str(tmp_path / "bad"), "--mk", "3x6"])
    assert res.exit_code != 0 and "3/6" in str(res.exception)
    assert not (tmp_path / "bad").exists()


def test_cycle_summary_counts_closed_cycles_only() -> None:
    import pandas as pd

    from attnlife.cli.theory_cmd import cycle_summary

    focus = pd.DataFrame({"start_step": [100.0, 900.0], "trough_step": [400.0, 1500.0], "end_step": [800.0, 2000.0],
                          "period_steps": [700.0, float("nan")], "prominence": [0.0125, 0.004],
                          "status": ["closed", "open"]})
    line = cycle_summary(focus)
    assert line.startswith("1 closed focus-dilution cycle(s) (peak 100, period 700 steps, amplitude 0.0125)")
    assert line.endswith("open, not counted: peak at step 900")
    assert cycle_summary(focus[focus.status == "open"]).startswith("0 closed")


def test_cycle_summary_lists_the_three_largest_closed_cycles() -> None:
    import pandas as pd

    from attnlife.cli.theory_cmd import cycle_summary

    amp = [0.01, 0.05, 0.02, 0.04, 0.03]
    focus = pd.DataFrame({"start_step": [100.0 * i for i in range(5)], "trough_step": [100.0 * i + 50 for i in range(5)],
                          "end_step": [100.0 * i + 100 for i in range(5)], "period_steps": [100.0] * 5,
                          "prominence": amp, "status": ["closed"] * 5})
    line = cycle_summary(focus)
    assert line == ("5 closed focus-dilution cycle(s) (peak 100, period 100 steps, amplitude 0.0500; peak 300, period "
                    "100 steps, amplitude 0.0400; peak 400, period 100 steps, amplitude 0.0300; 2 smaller not listed)")
