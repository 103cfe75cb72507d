"""Two writers, a replaced dataset, changed settings, divergence: refused or recorded, never mixed."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from attnlife.errors import DivergenceError, RunLockedError
from attnlife.store.atomic import host_name
from attnlife.store.lock import LOCK_FILE, read_holder, run_lock
from attnlife.store.run_dir import load_run
from attnlife.train.guards import LossGuard
from tests.faults.conftest import cli, subprocess_env, train_args, tree_snapshot

HOLD = ("import sys, time\nfrom attnlife.store.lock import run_lock\n"
        "with run_lock(sys.argv[1], 'spectra'):\n    print('held', flush=True)\n    time.sleep(120)\n")


def _holder(run: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], env=subprocess_env(),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_then_stale_lock_taken_over(workspace, capsys) -> None:
    run = workspace / "run"
    proc = _holder(run)
    try:
        before = tree_snapshot(workspace)
        result = cli(*train_args(workspace / "data", run, 12), capsys=capsys)
        assert result.code == 2 and len(result.error_lines) == 1, result.err
        line = result.error_lines[0]
        assert f"pid {proc.pid} on host {host_name()} since " in line and "`attnlife spectra`" in line
        assert tree_snapshot(workspace) == before
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert read_holder(run).pid == proc.pid  # SIGKILL left the lock file behind: stale
    assert cli(*train_args(workspace / "data", run, 12), capsys=capsys).code == 0
    assert not (run / LOCK_FILE).exists()
    assert [s for s, _ in load_run(run).checkpoints()] == [0, 1, 2, 4, 8, 12]


def test_spectra_is_refused_while_another_writer_holds_the_run(workspace, capsys) -> None:
    run = workspace / "run"
    proc = _holder(run)
    try:
        before = tree_snapshot(workspace)
        result = cli("spectra", str(run), "--quiet", capsys=capsys)
        assert result.code == 2 and len(result.error_lines) == 1, result.err
        assert f"pid {proc.pid} on host {host_name()}" in result.err
        assert tree_snapshot(workspace) == before
    finally:
        proc.kill()
        proc.wait()


def test_lock_is_exclusive_within_and_across_processes(tmp_path) -> None:
    with run_lock(tmp_path, "train") as lock:
        assert read_holder(tmp_path) == lock.holder and lock.holder.pid == os.getpid()
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on host"):
            with run_lock(tmp_path, "report"):
                pass
    assert not (tmp_path / LOCK_FILE).exists()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "t",
                                                  "command": "train"}))
    with pytest.raises(RunLockedError, match="on host elsewhere .*delete .*attnlife.lock"):
        with run_lock(tmp_path, "train"):
            pass


def _replace_text_same_vocabulary(data: Path) -> None:
    """Re-prepare shakespeare_char from the same characters in another order (same vocabulary)."""
    from attnlife.data import prepare_dataset

    text = (data.parent / "shuffled.txt")
    meta = json.loads((data / "shakespeare_char" / "meta.json").read_text())
    lines = Path(meta["source"]["path"]).read_text().splitlines(keepends=True)
    text.write_text("".join(reversed(lines)))
    prepare_dataset("text", data, source=text, quiet=True, dataset_name="shakespeare_char")


def test_resume_on_replaced_dataset_is_refused_unless_allowed(workspace, capsys) -> None:
    run = workspace / "run"
    old_sha = load_run(run).record["dataset"]["meta"]["source"]["sha256"]
    _replace_text_same_vocabulary(workspace / "data")
    before = tree_snapshot(workspace)
    result = cli(*train_args(workspace / "data", run, 12), capsys=capsys)
    assert result.code == 2 and len(result.error_lines) == 1
    assert "dataset changed" in result.err and old_sha[:12] in result.err
    assert "--allow-data-change" in result.err
    assert tree_snapshot(workspace) == before
    assert cli(*train_args(workspace / "data", run, 12), "--allow-data-change", capsys=capsys).code == 0
    record = load_run(run).record
    change = record["segments"][-1]["changed"]["dataset.meta.source.sha256"]
    assert change["from"] == old_sha and change["to"] != old_sha


def test_resume_records_a_segment_with_real_times(workspace, capsys) -> None:
    run = workspace / "run"
    first = load_run(run).record
    time.sleep(1.1)
    assert cli(*train_args(workspace / "data", run, 12, "train.learning_rate=1e-3"),
               capsys=capsys).code == 0
    record = load_run(run).record
    assert record["environment"]["start_time"] == first["environment"]["start_time"]
    assert len(record["resumed_at"]) == 1 and record["resumed_at"][0] > first["environment"]["start_time"]
    seg = record["segments"]
    assert len(seg) == 2 and seg[1]["started_at"] == record["resumed_at"][0]
    assert seg[1]["attnlife"] and seg[0]["changed"] == {}
    changed = seg[1]["changed"]
    assert changed["config.train.learning_rate"] == {"from": 3e-3, "to": 1e-3}
    assert changed["config.train.max_iters"] == {"from": 8, "to": 12}
    assert record["config"]["train"]["learning_rate"] == 1e-3


def test_divergence_stops_with_one_line_and_keeps_finite_checkpoints(fault_data, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    result = cli(*train_args(fault_data, run, 30, "train.learning_rate=1e30", "train.warmup_iters=0",
                             "train.grad_clip=0"), capsys=capsys)
    assert result.code == 2 and len(result.error_lines) == 1, result.err[-2000:]
    assert "training diverged at step" in result.err and "is kept" in result.err
    ckpts = load_run(run).checkpoints()
    assert ckpts and ckpts[-1][0] < 30
    for _, path in ckpts:
        for tensor in load_file(str(path / "model.safetensors")).values():
            assert bool(tensor.isfinite().all())
    loss = load_run(run).model_level("loss")
    assert not math.isfinite(loss["value"].iloc[-1])  # the bad step is recorded, then it stopped


def test_loss_guard_spike_and_nonfinite() -> None:
    guard = LossGuard(spike_factor=2.0, warmup=3)
    for step, loss in enumerate([4.0, 4.0, 4.0, 4.0]):
        guard.check(step, loss, lambda: "hint")
    assert guard.mean == pytest.approx(4.0)
    guard.check(4, 7.9, lambda: "hint")  # below 2 x 4.0: accepted; mean 0.9*4 + 0.1*7.9 = 4.39
    assert guard.mean == pytest.approx(4.39)
    with pytest.raises(DivergenceError, match=r"step 5: loss 8.8 is more than 2 x its running mean 4.39"):
        guard.check(5, 8.8, lambda: "hint")
    with pytest.raises(DivergenceError, match="the loss is nan; lower"):
        LossGuard().check(0, float("nan"), lambda: "lower it")


def test_theory_markov_divergence_is_one_line(tmp_path, capsys) -> None:
    result = cli("theory", "markov", "--out", str(tmp_path / "m"), "--lr", "1e30", "--max-iters", "20",
                 "--log-every", "5", "--quiet", capsys=capsys)
    assert result.code == 2 and len(result.error_lines) == 1, result.err[-2000:]
    assert "theory markov run diverged at step" in result.err


def test_failed_first_start_leaves_no_folder(tmp_path, capsys) -> None:
    before = tree_snapshot(tmp_path)
    result = cli(*train_args(tmp_path / "nodata", tmp_path / "new", 4), capsys=capsys)
    assert result.code == 2 and len(result.error_lines) == 1
    assert "is not prepared" in result.err
    assert tree_snapshot(tmp_path) == before and not (tmp_path / "new").exists()


def test_sample_refuses_a_changed_vocabulary(workspace, capsys) -> None:
    from attnlife.data import prepare_dataset

    meta = json.loads((workspace / "data" / "shakespeare_char" / "meta.json").read_text())
    text = Path(meta["source"]["path"]).read_text().replace("a", "").replace("A", "")
    (workspace / "no_a.txt").write_text(text)
    prepare_dataset("text", workspace / "data", source=workspace / "no_a.txt", quiet=True,
                    dataset_name="shakespeare_char")
    before = tree_snapshot(workspace)
    result = cli("sample", str(workspace / "run"), "--tokens", "5", capsys=capsys)
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert "(vocab_size 59 -> 57)" in result.err and "re-prepare" in result.err
    assert tree_snapshot(workspace) == before


def test_same_size_vocabulary_change_names_the_first_symbol() -> None:
    from attnlife.errors import ProvenanceError
    from attnlife.train.run_record import check_same_dataset

    old = {"name": "d", "vocab_size": 3, "meta": {"itos": ["a", "b", "c"], "source": {"sha256": "1" * 64}}}
    new = {"name": "d", "vocab_size": 3, "meta": {"itos": ["a", "x", "c"], "source": {"sha256": "1" * 64}}}
    with pytest.raises(ProvenanceError, match=r"vocabulary of 3 -> 3 symbols, id 1: 'b' -> 'x'"):
        check_same_dataset(old, new)
    check_same_dataset(old, new, allow_change=True)
    check_same_dataset(old, {"name": "d"})  # nothing comparable recorded: accepted
