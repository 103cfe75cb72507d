"""Write order: a checkpoint on disk implies every row up to its step is on disk.

A real `attnlife train` subprocess with both tracking tiers and generation quality on is SIGKILLed
at the instant a checkpoint directory appears (polled), or at a random moment, or stopped with
SIGTERM; then the same command resumes it. Before the resume, every row of an uninterrupted run
up to the checkpoint's step must already be on disk (losses, lr, eval, full-tier and light-tier
attention, sample rows); after it, the complete metric table and the snapshots equal the
uninterrupted run's. A callback that sleeps after each checkpoint is renamed into place (first in
the list) widens any window in which a writer would still flush after the rename.
"""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from attnlife.config import build_config
from attnlife.run import default_callbacks, run_training
from attnlife.store.run_dir import load_run
from tests.faults.conftest import TINY, cli, subprocess_env, train_args

STEPS = 24
EXTRA = ("track.enabled=true", "track.every=4", "track.light_every=1", "track.sample_every=8",
         "track.sample_count=2", "track.snapshot_every=8", "train.eval_interval=4",
         "train.ckpt_log_max=8", "train.ckpt_every=8")
SERIES = (0, 1, 2, 4, 8, 16, 24)
TIMING = {"tokens_per_s", "track_ms", "light_ms", "sample_tokens_per_s"}
UPDATE_ROWS = ("loss", "lr")   # logged at the step of the update, which comes after checkpoint s
# the real CLI in a fresh interpreter; every update slowed by 10 ms, and a 0.3 s pause after each
# checkpoint is in place (before any other callback hears of it)
KILLABLE_CLI = """
import os, signal, sys, time
import attnlife.run
from attnlife.events import Callback

SIGNAL_AT = os.environ.get("SIGNAL_AT")   # "STEP:SIGNUM": signal ourselves after update STEP

class Pause(Callback):
    def on_step_end(self, record):
        time.sleep(0.01)
        if SIGNAL_AT and record.step == int(SIGNAL_AT.split(":")[0]):
            os.kill(os.getpid(), int(SIGNAL_AT.split(":")[1]))
    def on_checkpoint(self, record):
        time.sleep(0.3)

plain = attnlife.run.default_callbacks
attnlife.run.default_callbacks = lambda config: [Pause()] + plain(config)
from attnlife.cli import main
main(sys.argv[1:])
"""

def _table(run: Path) -> dict:
    m = load_run(run).metrics()
    m = m[~m.metric.isin(TIMING)]
    return {(int(r.step), r.split, int(r.layer), int(r.head_index), int(r.layer_b), r.metric):
            (float(r.value), float(r.stderr)) for r in m.itertuples()}


def _same(a: tuple, b: tuple) -> bool:
    return all(x == y or (x != x and y != y) for x, y in zip(a, b))


def _snapshots(run: Path) -> dict:
    store = load_run(run).snapshots()
    return {(n, s): store.read(n, s).numpy() for n in store.names() for s in store.steps(n)}


def _covered(key: tuple, step: int) -> bool:
    """Whether a row must be on disk once checkpoint `step` is: everything measured on the
    weights of steps < `step`, and at `step` itself all but the rows of update `step`."""
    s, metric = key[0], key[5]
    if s < step:
        return True
    return s == step and metric not in UPDATE_ROWS and not metric.startswith("light_")


@pytest.fixture(scope="module")
def straight(tmp_path_factory, fault_data: Path) -> Path:
    import torch

    out = tmp_path_factory.mktemp("straight") / "run"
    sets = TINY + [f"data.data_dir={fault_data}", f"train.max_iters={STEPS}",
                   f"train.lr_decay_iters={STEPS}", *EXTRA]
    config = build_config("cpu", "shakespeare_char", overrides=sets, out_dir=str(out))
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # as in the subprocesses: reductions' last bits depend on threads
    try:
        return run_training(config, default_callbacks(config), quiet=True)
    finally:
        torch.set_num_threads(before)


def _start(args: list[str], signal_at: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", KILLABLE_CLI, *args],
                            env={**subprocess_env(), "SIGNAL_AT": signal_at},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, path: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_dir():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.001)


def _kill_when_checkpoint_appears(args: list[str], run: Path, step: int) -> None:
    proc = _start(args)
    _wait_for(proc, run / "checkpoints" / f"step_{step:07d}")
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _resume_and_compare(args: list[str], run: Path, straight: Path, capsys) -> None:
    resumed = cli(*args, capsys=capsys)
    assert resumed.code == 0, resumed.err[-2000:]
    want, got = _table(straight), _table(run)
    assert set(got) == set(want), sorted(set(want) ^ set(got))[:5]
    assert all(_same(got[k], want[k]) for k in want), [k for k in want if not _same(got[k], want[k])][:5]
    a, b = _snapshots(run), _snapshots(straight)
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k], equal_nan=True) for k in b)
    assert [s for s, _ in load_run(run).checkpoints()] == list(SERIES)


def _assert_rows_up_to(run: Path, straight: Path, step: int) -> None:
    want = {k: v for k, v in _table(straight).items() if _covered(k, step)}
    got = _table(run)
    lost = sorted(set(want) - set(got))
    assert not lost, f"{len(lost)} rows up to checkpoint {step} lost, e.g. {lost[:4]}"
    assert all(_same(got[k], want[k]) for k in want)


@pytest.mark.parametrize("step", [8, pytest.param(1, marks=pytest.mark.slow),
                                  pytest.param(4, marks=pytest.mark.slow),
                                  pytest.param(16, marks=pytest.mark.slow)])
def test_kill_at_the_instant_a_checkpoint_lands(straight, fault_data, tmp_path, capsys, step) -> None:
    run = tmp_path / "run"
    args = train_args(fault_data, run, STEPS, *EXTRA)
    _kill_when_checkpoint_appears(args, run, step)
    assert max(s for s, _ in load_run(run).checkpoints()) == step
    _assert_rows_up_to(run, straight, step)
    _resume_and_compare(args, run, straight, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_kill_at_random_then_resume(straight, fault_data, tmp_path, capsys, seed) -> None:
    run = tmp_path / "run"
    args = train_args(fault_data, run, STEPS, *EXTRA)
    proc = _start(args)
    _wait_for(proc, run / "checkpoints" / "step_0000000")
    time.sleep(random.Random(seed).uniform(0.0, 2.0))
    proc.kill()
    proc.communicate(timeout=60)
    steps = [s for s, _ in load_run(run).checkpoints()]
    if proc.returncode == -signal.SIGKILL:
        _assert_rows_up_to(run, straight, steps[-1])
    _resume_and_compare(args, run, straight, capsys)


@pytest.mark.parametrize("signum, after", [(signal.SIGTERM, 6),
                                           pytest.param(signal.SIGINT, 12, marks=pytest.mark.slow)])
def test_stop_signal_flushes_the_light_queue(straight, fault_data, tmp_path, capsys, signum, after) -> None:
    run = tmp_path / "run"
    args = train_args(fault_data, run, STEPS, *EXTRA)
    proc = _start(args, signal_at=f"{after}:{int(signum)}")   # between checkpoints 4 and 8 (8, 16)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signum, err[-2000:]
    at = after + 1   # the update in flight finishes, then the stop is honoured
    assert f" at step {at};" in err
    assert max(s for s, _ in load_run(run).checkpoints()) == at
    _assert_rows_up_to(run, straight, at)
    light = {k[0] for k in _table(run) if k[5].startswith("light_")}
    assert light == set(range(at))   # the queued light steps were computed, none after the stop
    _resume_and_compare(args, run, straight, capsys)
