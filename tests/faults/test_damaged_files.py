"""A damaged file of any kind, for every reader of the store: skipped with one warning naming the
file and the command that rebuilds it (or rebuilt, when attnlife made it), never a traceback;
`track` and `analyze` skip a bad checkpoint like `spectra` does."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from attnlife.store.damage import DamagedFileWarning
from attnlife.store.run_dir import load_run
from attnlife.store.snapshots import DamagedSnapshotError, SnapshotStore
from tests.faults.conftest import cli

TRACKED = ["track.enabled=true", "track.every=2", "track.snapshot_every=4", "track.light_every=0"]


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _warnings(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("warning:")]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, fault_data: Path) -> Path:
    """An 8-step tracked run (snapshots), probed by `track`, analysed with sampling."""
    from attnlife.cli import main
    from tests.faults.conftest import train_args

    run = tmp_path_factory.mktemp("analysed") / "run"
    for argv in (train_args(fault_data, run, 8, *TRACKED), ["track", str(run), "--quiet", "--sequences", "4"],
                 ["analyze", str(run), "--quiet"]):
        try:
            main(argv)
        except SystemExit as stop:
            assert stop.code in (0, None), argv
    return run


@pytest.fixture
def run(analysed: Path, tmp_path: Path) -> Path:
    shutil.copytree(analysed, tmp_path / "run")
    return tmp_path / "run"


def test_damaged_probe_set_is_rebuilt_from_its_source(run: Path, capsys) -> None:
    probe = run / "probe" / "probe_set.safetensors"
    original = probe.read_bytes()
    _truncate(probe)
    result = cli("track", str(run), "--quiet", "--sequences", "4", capsys=capsys)
    assert result.code == 0, result.err[-2000:]
    assert _warnings(result.err) == [f"warning: {probe} is damaged (" + _warnings(result.err)[0].split(" (", 1)[1]]
    assert _warnings(result.err)[0].endswith("); rebuilt from its source")
    assert probe.read_bytes() == original            # the same probe set: done markers still hold
    assert "probe: 0 measured, 5 already done" in result.out


def test_bad_checkpoint_is_skipped_by_track(run: Path, capsys) -> None:
    bad = run / "checkpoints" / "step_0000002" / "model.safetensors"
    _truncate(bad)
    result = cli("track", str(run), "--quiet", "--sequences", "4", "--force", capsys=capsys)
    assert result.code == 0, result.err[-2000:]
    (line,) = _warnings(result.err)
    assert line.startswith(f"warning: skipped run step 2: cannot read {bad} (") and "Traceback" not in result.err
    assert "probe: 4 measured, 0 already done, 1 unreadable (skipped)" in result.out


def test_no_readable_checkpoint_stops_track_with_one_error_line_and_loses_nothing(run: Path, capsys) -> None:
    """Every checkpoint unreadable and none left to skip (--force): `track` ends with one `error:` line
    naming the first failure, exit 2, and the rows and probe set of the earlier pass stay as they were."""
    from tests.faults.conftest import tree_snapshot

    steps = sorted(p.name for p in (run / "checkpoints").iterdir())
    for name in steps:
        _truncate(run / "checkpoints" / name / "model.safetensors")
    before = tree_snapshot(run)
    result = cli("track", str(run), "--quiet", "--sequences", "4", "--force", capsys=capsys)
    assert result.code == 2 and len(result.error_lines) == 1, result.err[-2000:]
    first = run / "checkpoints" / steps[0] / "model.safetensors"
    assert result.error_lines[0].startswith(f"error: none of the {len(steps)} checkpoints could be read "
                                            f"(first: run step {int(steps[0][5:])}: cannot read {first} (")
    assert "Traceback" not in result.err and "probe:" not in result.out
    assert tree_snapshot(run) == before

def test_bad_checkpoint_is_skipped_by_analyze(run: Path, capsys) -> None:
    bad = run / "checkpoints" / "step_0000004" / "model.safetensors"
    _truncate(bad)
    metrics = load_run(run).metrics()
    metrics_sample = metrics[metrics.split == "sample"]
    shutil.rmtree(run / "metrics")                        # every checkpoint must be sampled again
    (run / "metrics").mkdir()
    from attnlife.store.metrics_table import MetricWriter

    with MetricWriter(run) as writer:
        writer.add_frame(metrics[metrics.split != "sample"])
    result = cli("analyze", str(run), "--quiet", capsys=capsys)
    assert result.code == 0, result.err[-2000:]
    (line,) = _warnings(result.err)                       # one warning for the file, not one per stage
    assert line.startswith(f"warning: cannot read {bad} (") and line.endswith("; skipped")
    again = load_run(run).metrics()
    assert sorted(again[again.split == "sample"].step.unique()) == [0, 1, 2, 8]
    assert sorted(metrics_sample.step.unique()) == [0, 1, 2, 4, 8]
    integrity = load_run(run).analysis_table("integrity")
    assert sorted(integrity.step) == [0, 1, 2, 8]


def test_damaged_meta_json_is_not_sampled(run: Path, capsys) -> None:
    (run / "checkpoints" / "step_0000002" / "meta.json").write_text("{")
    shutil.rmtree(run / "analysis")
    metrics = load_run(run).metrics()
    shutil.rmtree(run / "metrics")
    from attnlife.store.metrics_table import MetricWriter

    with MetricWriter(run) as writer:
        writer.add_frame(metrics[metrics.split != "sample"])
    result = cli("analyze", str(run), "--quiet", capsys=capsys)
    assert result.code == 0, result.err[-2000:]
    (line,) = _warnings(result.err)
    assert "step_0000002/meta.json" in line and line.endswith("; not sampled")


def test_damaged_analysis_table_and_summary_are_skipped_then_rebuilt(run: Path, capsys) -> None:
    phases = run / "analysis" / "phases.parquet"
    phases_before, summary_before = load_run(run).analysis()["phases"], load_run(run).analysis_summary()
    _truncate(phases)
    (run / "analysis" / "summary.json").write_text("{not json")
    with pytest.warns(DamagedFileWarning) as seen:
        tables = load_run(run).analysis()
        summary = load_run(run).analysis_summary()
    assert "phases" not in tables and "head_types" in tables and summary == {}
    messages = [str(w.message) for w in seen]
    assert any(m.startswith(f"{phases} is damaged (") and m.endswith(f"`attnlife analyze {run}` rebuilds it; "
                                                                     f"skipped until then") for m in messages)
    assert any(m.startswith(f"{run / 'analysis' / 'summary.json'} is damaged (") for m in messages)
    result = cli("analyze", str(run), "--quiet", "--no-sample", capsys=capsys)
    assert result.code == 0 and _warnings(result.err) == [], result.err[-2000:]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedFileWarning)
        pd.testing.assert_frame_equal(load_run(run).analysis()["phases"], phases_before)  # rebuilt the same
        after = load_run(run).analysis_summary()
        # the rebuild samples no checkpoint again (the first analyze sampled them all)
        assert summary_before["notes"].pop("checkpoints_sampled_now") > 0
        assert after["notes"].pop("checkpoints_sampled_now") == 0
        summary_before.pop("run")                                      # the fixture's copy moved the run
        assert after.pop("run") == str(run) and after == summary_before


def test_damaged_samples_table_gets_every_text_back_and_no_row_twice(run: Path, capsys) -> None:
    from attnlife.store.metrics_table import MetricWriter

    table = run / "analysis" / "samples.parquet"
    texts = pd.read_parquet(table).reset_index(drop=True)
    metrics = load_run(run).metrics()
    sampled = metrics[metrics.split == "sample"]
    assert sorted(texts.step) == sorted(sampled.step.unique()) == [0, 1, 2, 4, 8]
    _truncate(table)
    shutil.rmtree(run / "metrics")                        # step 8 not sampled yet: its rows come now
    (run / "metrics").mkdir()
    with MetricWriter(run) as writer:
        writer.add_frame(metrics[(metrics.split != "sample") | (metrics.step != 8)])
    result = cli("analyze", str(run), "--quiet", capsys=capsys)
    assert result.code == 0, result.err[-2000:]
    (line,) = _warnings(result.err)                       # one warning, not a second one when written
    assert line.startswith(f"warning: {table} is damaged (")
    assert line.endswith("; the texts of sampled checkpoints are sampled again")
    pd.testing.assert_frame_equal(pd.read_parquet(table).reset_index(drop=True), texts)   # every text back
    again = load_run(run).metrics()
    again = again[again.split == "sample"]
    key = ["step", "metric", "layer", "head_index", "layer_b"]
    assert not again.duplicated(key).any() and len(again) == len(sampled)                # no row twice
    assert load_run(run).analysis_summary()["notes"]["checkpoints_sampled_now"] == 1     # step 8 only


def test_damaged_snapshots_are_skipped_and_a_keyframe_written_after_them(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keyframe_every=16)
    frames = {s: torch.rand(2, 4, 4) for s in range(4)}
    for step in range(3):
        store.write(step, "layer0", frames[step])
    bad = store.root / "layer0" / "step_0000001.npz"
    _truncate(bad)
    with pytest.raises(DamagedSnapshotError, match=f"snapshot {bad} is damaged"):
        store.read("layer0", 2)                          # a delta on the damaged frame
    with pytest.warns(DamagedFileWarning, match="cannot be rebuilt") as seen:
        assert store.read_or_warn("layer0", 2) is None
        store.write(3, "layer0", frames[3])             # the writer falls back to a keyframe
    assert all(str(bad) in str(w.message) for w in seen)
    assert torch.equal(store.read("layer0", 3), frames[3].half())
    assert torch.equal(store.read("layer0", 0), frames[0].half())
    with np.load(store.root / "layer0" / "step_0000003.npz") as z:
        assert int(z["base_step"]) == -1


def _damaged_synthetic_run(root: Path) -> tuple[Path, list[Path]]:
    from tests.support.synthetic import write_synthetic_run

    run = write_synthetic_run(root / "synth")
    damaged = [run / "analysis" / "claims.parquet", run / "spectra" / "meetings" / "synth.parquet",
               sorted((run / "spectra" / "arrays").rglob("*.safetensors"))[3],
               sorted((run / "snapshots" / "layer1").glob("*.npz"))[2]]
    for path in damaged:
        _truncate(path)
    (run / "analysis" / "summary.json").write_text("[")
    return run, damaged


def test_dashboard_skips_every_damaged_file_with_one_warning_each(tmp_path: Path) -> None:
    from attnlife.report.dashboard import write_dashboard
    from attnlife.report.data import ReportRun

    run, damaged = _damaged_synthetic_run(tmp_path)
    with pytest.warns(DamagedFileWarning) as seen:
        page = write_dashboard(ReportRun(run))
    messages = [str(w.message) for w in seen if issubclass(w.category, DamagedFileWarning)]
    for path in damaged[:1] + damaged[2:]:   # the dashboard does not read the meetings
        assert sum(str(path) in m for m in messages) == 1, (path, messages)
    assert page.stat().st_size > 100_000


@pytest.mark.slow
def test_report_skips_every_damaged_file_with_one_warning_each(tmp_path: Path, capsys) -> None:
    run, damaged = _damaged_synthetic_run(tmp_path)
    result = cli("report", str(run), "--quiet", capsys=capsys)
    assert result.code == 0 and "Traceback" not in result.err, result.err[-3000:]
    lines = _warnings(result.err)
    for path in damaged:
        assert sum(str(path) in ln for ln in lines) == 1, (path, lines)
    assert len(lines) == len(damaged)
    assert any("`attnlife analyze" in ln for ln in lines if "claims" in ln)
    assert any("`attnlife spectra" in ln and "--force" in ln for ln in lines if "arrays" in ln)
    html = (run / "report" / "dashboard.html").read_text()
    assert len(html) > 100_000 and (run / "report" / "weights_rank_heatmap.png").is_file()


def test_damaged_reproduce_markers(tmp_path: Path) -> None:
    from attnlife.reproduce.callbacks import CLOCK_FILE, read_clock
    from attnlife.reproduce.cell import DONE_FILE, read_done

    (tmp_path / DONE_FILE).parent.mkdir(parents=True)
    (tmp_path / DONE_FILE).write_text('{"numbers": [')
    (tmp_path / CLOCK_FILE).write_text('{"seconds_at_step": 3}')
    with pytest.warns(DamagedFileWarning) as seen:
        assert read_done(tmp_path) is None and read_clock(tmp_path) == {}
    assert [str(tmp_path / DONE_FILE) in str(w.message) for w in seen] == [True, False]
    assert str(tmp_path / CLOCK_FILE) in str(seen[1].message)


def test_damaged_run_json_is_one_line_for_every_verb(run: Path, capsys) -> None:
    (run / "run.json").write_text(json.dumps({"config": 7}))
    for argv in (["track", str(run), "--quiet"], ["analyze", str(run), "--quiet"], ["report", str(run), "--quiet"],
                 ["spectra", str(run), "--quiet"], ["summary", str(run)]):
        result = cli(*argv, capsys=capsys)
        assert result.code in (0, 2) and "Traceback" not in result.err, (argv, result.err[-2000:])
        if result.code == 2:
            assert len(result.error_lines) == 1 and "run.json" in result.err, (argv, result.err)
