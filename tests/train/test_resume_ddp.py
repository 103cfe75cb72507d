"""Real subprocesses: SIGKILL mid-run + resume equals an uninterrupted run; 2-process DDP on gloo,
also when the writing rank is SIGKILLed mid-run and the same torchrun command is run again."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from attnlife.run import default_callbacks, run_training
from attnlife.store.checkpoints import TRAINER_STATE_FILE
from attnlife.store.run_dir import load_run
from tests.support.ddp import subprocess_env as _env
from tests.support.ddp import train_ddp
from tests.train.conftest import tiny_config, tiny_overrides


# Runs the trainer in a fresh interpreter and SIGKILLs itself right after update 13 (between
# checkpoints 10 and 16, with steps 10..13 of metrics still buffered in memory).
KILLED_RUN = """
import os, signal, sys, torch
torch.set_num_threads(1)
from attnlife.config import build_config
from attnlife.events import Callback
from attnlife.run import default_callbacks, run_training

class KillAt(Callback):
    def on_step_end(self, rec):
        if rec.step == 13:
            os.kill(os.getpid(), signal.SIGKILL)

config = build_config("cpu", "shakespeare_char", overrides=sys.argv[2:], out_dir=sys.argv[1])
run_training(config, default_callbacks(config) + [KillAt()], quiet=True)  # tracker on, as in the CLI
"""


# The trainer under torchrun, rank 0 (the only writer) SIGKILLed right after update 9 (between
# checkpoints 8 and 12, rows of steps 8..9 buffered): what the OOM killer does to one rank of a job.
KILLED_RANK = """
import os, signal, sys, torch
torch.set_num_threads(1)
from attnlife.config import build_config
from attnlife.events import Callback
from attnlife.run import default_callbacks, run_training

class KillRankZeroAt(Callback):
    def on_step_end(self, rec):
        if rec.step == 9 and rec.rank == 0:
            os.kill(os.getpid(), signal.SIGKILL)

config = build_config("cpu", "shakespeare_char", overrides=sys.argv[2:], out_dir=sys.argv[1])
run_training(config, default_callbacks(config) + [KillRankZeroAt()], quiet=True)
"""


def _tracked(run_dir: Path) -> dict:
    """Every attention row the trackers wrote (all but wall times, *_ms), keyed like the table."""
    m = load_run(run_dir).metrics()
    m = m[~m.metric.isin(["loss", "lr", "eval_loss", "tokens_per_s"]) & ~m.metric.str.endswith("_ms")]
    return {(int(r.step), r.split, int(r.layer), int(r.head_index), int(r.layer_b), r.metric): (r.value, r.stderr)
            for r in m.itertuples()}


def _series(run_dir: Path) -> dict:
    m = load_run(run_dir).metrics()
    m = m[m.metric.isin(["loss", "lr", "eval_loss"])]
    return {(int(r.step), r.split, r.metric): float(r.value) for r in m.itertuples()}


def test_sigkill_then_resume_matches_uninterrupted(prepared_dir, tmp_path, one_thread) -> None:
    extra = ("train.ckpt_every=10", "train.gradient_accumulation_steps=2")
    overrides = tiny_overrides(prepared_dir, 24, *extra)
    whole_config = tiny_config(prepared_dir, tmp_path / "whole", 24, *extra)
    whole = run_training(whole_config, default_callbacks(whole_config), quiet=True)

    cut = tmp_path / "cut"
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(cut), *overrides], env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [s for s, _ in load_run(cut).checkpoints()] == [0, 1, 2, 4, 8, 10]
    assert 13 not in {k[0] for k in _series(cut)}  # the buffered steps were lost with the process

    cli = [sys.executable, "-m", "attnlife", "train", "--quiet", "--out", str(cut),
           "--dataset", "shakespeare_char"] + [a for o in overrides for a in ("--set", o)]
    resumed = subprocess.run(cli, env=_env(), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "checkpoints: 9" in resumed.stdout

    want, got = _series(whole), _series(cut)
    assert set(got) == set(want) and len(want) == 24 * 2 + 6 * 2
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    tracked, straight = _tracked(cut), _tracked(whole)
    full = {k[0] for k in straight if not k[-1].startswith("light_")}  # the explicit tier
    assert full == {0, 1, 2, 4, 8, 10, 16, 20, 24}  # the checkpoint steps
    assert tracked.keys() == straight.keys() and len(straight) > 100
    for key, (value, stderr) in straight.items():  # bit-identical, the resume step 10 included
        assert tracked[key][0] == value and (tracked[key][1] == stderr or stderr != stderr), key
    ckpts = load_run(cut).checkpoints()
    for step, path in ckpts:  # resume meta: eval step and losses as in the straight run
        meta, want = (json.loads((d / "meta.json").read_text()) for d in (path, whole / path.relative_to(cut)))
        assert (meta["eval_step"], meta["eval_losses"]) == (want["eval_step"], want["eval_losses"]), step
    assert [s for s, p in ckpts if (p / TRAINER_STATE_FILE).exists()] == [24]
    assert len(json.loads((cut / "run.json").read_text())["resumed_at"]) == 1


def test_ddp_two_processes_on_gloo(prepared_dir, tmp_path, one_thread) -> None:
    overrides = tiny_overrides(prepared_dir, 4, "model.dropout=0.0", "train.eval_interval=4")
    out = tmp_path / "ddp"
    train_ddp(out, overrides, timeout=180)
    assert [s for s, _ in load_run(out).checkpoints()] == [0, 1, 2, 4]
    parts = list((out / "metrics").glob("part-*.parquet"))
    assert len({p.name.split("-")[2] for p in parts}) == 1  # one writer process: rank 0

    single = run_training(tiny_config(prepared_dir, tmp_path / "single", 4, "model.dropout=0.0",
                                      "train.eval_interval=4"), quiet=True)
    d, s = _series(out), _series(single)
    # rank 0 draws the single-process batches: same init, same first batch, same loss ...
    assert d[(0, "train", "loss")] == pytest.approx(s[(0, "train", "loss")], abs=1e-6)
    # ... but rank 1 draws other batches, so the averaged gradient and later losses differ
    assert abs(d[(1, "train", "loss")] - s[(1, "train", "loss")]) > 1e-5
    # eval losses are averaged over both ranks' (different) eval batches
    assert d[(0, "val", "eval_loss")] != pytest.approx(s[(0, "val", "eval_loss")], abs=1e-7)


def test_ddp_rank_killed_then_resumed_matches_uninterrupted(prepared_dir, tmp_path, one_thread) -> None:
    overrides = tiny_overrides(prepared_dir, 12, "model.dropout=0.0", "train.eval_interval=4", "train.ckpt_every=4")
    whole = tmp_path / "whole"
    train_ddp(whole, overrides, timeout=180)

    cut, script = tmp_path / "cut", tmp_path / "killed_rank.py"
    script.write_text(KILLED_RANK)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(script), str(cut), *overrides]
    killed = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180)
    assert killed.returncode != 0 and "Signal 9 (SIGKILL) received" in killed.stderr, killed.stderr[-3000:]
    assert [s for s, _ in load_run(cut).checkpoints()] == [0, 1, 2, 4, 8]
    assert 9 not in {k[0] for k in _series(cut)}      # rank 0's buffered rows died with it

    train_ddp(cut, overrides, timeout=180)                # the same torchrun command again
    want, got = _series(whole), _series(cut)
    assert set(got) == set(want) and len(want) == 12 * 2 + 4 * 2
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    tracked, straight = _tracked(cut), _tracked(whole)
    assert tracked.keys() == straight.keys() and len(straight) > 50
    for key, (value, stderr) in straight.items():    # bit-identical, as a single-process resume
        assert tracked[key][0] == value or value != value, key
    assert [s for s, _ in load_run(cut).checkpoints()] == [0, 1, 2, 4, 8, 12]
    assert len(json.loads((cut / "run.json").read_text())["resumed_at"]) == 1
