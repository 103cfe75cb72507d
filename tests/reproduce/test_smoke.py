"""`attnlife reproduce --smoke` end to end: 4 runs x shakespeare_char x 2 seeds, then resumability.

The smoke grid trains a 2-layer model for 40 updates per cell, analyses and reports every cell
and writes the results; it takes about 1-2 minutes on a quiet 2-core machine (most of it in the
analysis and report of the 8 cells).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnlife.cli import main
from attnlife.store.layout import list_checkpoints
from attnlife.store.run_dir import load_run


def _cli(capsys, *args: str) -> tuple[int, str]:
    try:
        main(["reproduce", *args])
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture(scope="module")
def study(tmp_path_factory, shared_data: Path):
    """The smoke grid run once for this module; offline source found through $ATTNLIFE_SOURCES."""
    mp = pytest.MonkeyPatch()
    out = tmp_path_factory.mktemp("study")
    mp.setenv("ATTNLIFE_SOURCES", str(shared_data))
    mp.setenv("ATTNLIFE_CACHE", str(out / "cache"))
    from attnlife.reproduce import reproduce

    summary = reproduce(out, scale="smoke", datasets=["shakespeare_char"], seeds=2, quiet=True)
    yield out, summary
    mp.undo()


def _sampled_in_training(run_dir: Path) -> set[int]:
    """Steps of `sample_tokens_per_s` rows written in a part that also holds training rows (the
    analysis writes its sample rows in parts of their own)."""
    steps: set[int] = set()
    for part in sorted((run_dir / "metrics").glob("part-*.parquet")):
        frame = pd.read_parquet(part)
        if (frame.split != "sample").any():
            steps |= set(int(s) for s in frame[frame.metric == "sample_tokens_per_s"].step)
    return steps


def _results(out: Path, run: int) -> dict:
    return json.loads((out / "results" / f"run_{run}.json").read_text())["shakespeare_char"]


def test_results_json_holds_real_values(study):
    out, summary = study
    assert summary.total == 8 and {o.status for o in summary.outcomes} == {"trained"}
    ln_vocab = math.log(65)
    for run in range(4):
        entry = _results(out, run)
        assert entry["n_seeds"] == 2 and entry["final_info_dict"]["seed"] == [0, 1]
        losses = entry["final_info_dict"]["best_val_loss"]
        assert entry["means"]["best_val_loss_mean"] == pytest.approx(np.mean(losses))
        assert entry["stderrs"]["best_val_loss_stderr"] == pytest.approx(abs(losses[0] - losses[1]) / 2)
        for s in range(2):
            m = load_run(out / f"runs/run{run}/shakespeare_char/seed{s}").metrics()
            val = m[(m.metric == "eval_loss") & (m.split == "val")]
            initial = float(val[val.step == 0].value.iloc[0])
            assert initial == pytest.approx(ln_vocab, abs=0.15)      # untrained: ~uniform
            assert losses[s] == pytest.approx(val.value.min()) and losses[s] < initial - 0.5
        assert entry["means"]["total_train_time_mean"] > 0
        assert entry["means"]["avg_inference_tokens_per_second_mean"] > 0
        assert entry["data"]["prefix"] is False and entry["config"]["train"]["max_iters"] == 40


def test_runs_differ_only_in_what_they_track(study):
    out, _ = study
    finals = [_results(out, r)["final_info_dict"]["final_train_loss"] for r in range(4)]
    for r in (1, 2, 3):  # same batches and updates; float32 kernels may round differently (~1e-7)
        assert finals[r] == pytest.approx(finals[0], rel=1e-5)
    frames = [load_run(out / f"runs/run{r}/shakespeare_char/seed0").metrics() for r in range(4)]
    metrics = [set(m[m.split == "train"].metric) for m in frames]   # what training tracked
    assert "entropy_bits" not in metrics[0]
    assert "entropy_bits" in metrics[1] and not any(x.startswith("xlayer_") for x in metrics[1])
    assert "xlayer_jsd" in metrics[2] and "xlayer_jsd" in metrics[3]
    # run 3 sampled while training (its sample rows share metric parts with training rows); the
    # analysis samples checkpoints of every run afterwards, in parts of their own
    assert set(range(0, 40, 10)) <= _sampled_in_training(out / "runs/run3/shakespeare_char/seed0")
    assert _sampled_in_training(out / "runs/run2/shakespeare_char/seed0") == set()
    m1 = frames[1][frames[1].split == "train"]
    tracked = sorted(set(m1[m1.metric == "entropy_bits"].step))
    assert tracked == list(range(0, 41, 10))                       # the smoke cadence


def test_overhead_and_compare(study):
    out, _ = study
    over = pd.read_csv(out / "results" / "overhead.csv")
    assert list(over.run) == [1, 2, 3] and set(over.dataset) == {"shakespeare_char"}
    assert np.isfinite(over.overhead_pct).all() and (over.n_seeds == 2).all()
    for family in ("train_loss", "val_loss", "attention_metrics", "layer_similarity"):
        assert (out / f"results/figures/{family}_shakespeare_char.png").stat().st_size > 0
    text = (out / "results" / "compare.md").read_text()
    assert "| best val loss | shakespeare_char | 1.47 |" in text and "### What differs: shakespeare_char" in text
    assert "n_layer 2 vs 6" in text and "max_iters 40 vs 5000" in text


def test_rerun_skips_every_cell(study, capsys):
    out, _ = study
    marker = out / "runs/run2/shakespeare_char/seed1/reproduce/done.json"
    before = marker.stat().st_mtime_ns
    code, text = _cli(capsys, "--out", str(out), "--smoke", "--quiet")
    assert code == 0, text
    assert "0 cells trained, 8 already done" in text
    assert marker.stat().st_mtime_ns == before


def test_killed_cell_resumes_from_its_checkpoint(study, tmp_path, monkeypatch):
    """Kill a cell right after its step-20 checkpoint (fault injected in the clock callback), rerun:
    it resumes from step 20 and ends where the uninterrupted cell of the study ended."""
    from attnlife.reproduce import callbacks, reproduce

    out, _ = study
    original = callbacks.TrainClock.on_checkpoint

    def killed_at_20(self, rec):  # noqa: ANN001
        original(self, rec)
        if rec.step == 20:
            raise KeyboardInterrupt  # what a kill leaves: checkpoint 20 written, nothing after

    monkeypatch.setattr(callbacks.TrainClock, "on_checkpoint", killed_at_20)
    kw = dict(scale="smoke", datasets=["shakespeare_char"], seeds=1, runs=(1,),
              data_dir=out / "data", quiet=True)
    with pytest.raises(KeyboardInterrupt):
        reproduce(tmp_path, **kw)
    run_dir = tmp_path / "runs/run1/shakespeare_char/seed0"
    assert [s for s, _ in list_checkpoints(run_dir)][-1] == 20
    assert not (run_dir / "reproduce/done.json").exists()
    monkeypatch.setattr(callbacks.TrainClock, "on_checkpoint", original)
    summary = reproduce(tmp_path, **kw)
    assert [o.status for o in summary.outcomes] == ["trained"] and summary.results is not None
    assert [s for s, _ in list_checkpoints(run_dir)][-1] == 40
    resumed = json.loads((run_dir / "reproduce/done.json").read_text())["numbers"]
    straight = json.loads((out / "runs/run1/shakespeare_char/seed0/reproduce/done.json").read_text())
    for key in ("final_train_loss", "best_val_loss", "final_val_loss"):
        assert resumed[key] == pytest.approx(straight["numbers"][key], rel=1e-5)
    clock = json.loads((run_dir / "reproduce/train_time.json").read_text())["seconds_at_step"]
    assert set(clock) >= {"20", "40"} and clock["40"] > clock["20"] > 0


def test_bad_runs_is_one_line_error(tmp_path, capsys):
    code, text = _cli(capsys, "--out", str(tmp_path), "--runs", "0,7")
    assert code == 2 and text.startswith("error: --runs") and text.count("\n") == 1


@pytest.mark.timeout(300)   # a hung cluster fails the test; the executor's finally shuts it down
def test_grid_cells_on_a_local_ray_cluster_equal_the_serial_cells(study, tmp_path):
    """`--executor ray` without an address: a local 2-CPU cluster started (and shut down) by the
    executor runs one task per cell; the cells' numbers equal those of the serial study."""
    pytest.importorskip("ray")
    import ray

    from attnlife.reproduce import reproduce
    from attnlife.series.executors import make_executor

    out, _ = study
    summary = reproduce(tmp_path, scale="smoke", datasets=["shakespeare_char"], seeds=2, runs=(0,),
                        data_dir=out / "data", quiet=True, executor=make_executor("ray", workers=2))
    assert sorted(o.status for o in summary.outcomes) == ["trained", "trained"] and summary.results is not None
    assert not ray.is_initialized()                                     # the executor's cluster is gone
    for seed in (0, 1):
        cell = f"runs/run0/shakespeare_char/seed{seed}/reproduce/done.json"
        got = json.loads((tmp_path / cell).read_text())["numbers"]
        want = json.loads((out / cell).read_text())["numbers"]
        for key in ("final_train_loss", "best_val_loss", "final_val_loss"):
            assert got[key] == pytest.approx(want[key], rel=1e-5), (seed, key)
