"""SIGTERM / SIGINT / SIGKILL at random points of a real `attnlife train` subprocess.

SIGTERM and SIGINT finish the current update, write a checkpoint, flush the metrics and exit with
128 + signum; SIGKILL loses at most the steps since the last checkpoint. Either way, rerunning the
same command continues the run exactly: its metric series equal an uninterrupted run's.
"""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnlife.config import build_config
from attnlife.run import run_training
from attnlife.store.checkpoints import TRAINER_STATE_FILE, load_meta
from attnlife.store.lock import LOCK_FILE
from attnlife.store.run_dir import load_run
from tests.faults.conftest import TINY, cli, subprocess_env, train_args

STEPS = 60
EXTRA = ("train.ckpt_log_max=8", "train.ckpt_every=20")
# the real CLI in a fresh interpreter, each update slowed by 20 ms so a signal lands mid-run
SLOW_CLI = """
import sys, time
import attnlife.run
from attnlife.events import Callback

class Slow(Callback):
    def on_step_end(self, record):
        time.sleep(0.02)

attnlife.run.default_callbacks = lambda config: [Slow()]
from attnlife.cli import main
main(sys.argv[1:])
"""


def _series(run: Path) -> dict:
    m = load_run(run).metrics()
    m = m[m.metric.isin(["loss", "lr", "eval_loss"])]
    return {(int(r.step), r.split, r.metric): float(r.value) for r in m.itertuples()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fault_data: Path) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    sets = TINY + [f"data.data_dir={fault_data}", f"train.max_iters={STEPS}",
                   f"train.lr_decay_iters={STEPS}", *EXTRA]
    # one torch thread, as in the subprocesses (ENV): the logged loss is a reduction whose last bit
    # depends on the thread count; this module-scoped fixture runs before the autouse one
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_training(build_config("cpu", "shakespeare_char", overrides=sets,
                                         out_dir=str(out)), quiet=True)
    finally:
        torch.set_num_threads(before)


def _start_and_signal(args: list[str], run: Path, signum: int, seed: int) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CLI, *args], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "step_0000004").is_dir():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(0.0, 0.6))
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("signum, seed", [
    (signal.SIGTERM, 0),
    pytest.param(signal.SIGINT, 1, marks=pytest.mark.slow),   # ~15 s each on a busy 2-core box
    pytest.param(signal.SIGKILL, 2, marks=pytest.mark.slow),  # (tests/train covers SIGKILL too)
])
def test_signal_then_rerun_continues_exactly(reference, fault_data, tmp_path, capsys, signum, seed) -> None:
    run = tmp_path / "run"
    args = train_args(fault_data, run, STEPS, *EXTRA)
    stopped = _start_and_signal(args, run, signum, seed)
    steps = [s for s, _ in load_run(run).checkpoints()]
    if signum == signal.SIGKILL:
        assert stopped.returncode == -signal.SIGKILL
    else:
        assert stopped.returncode == 128 + signum, stopped.stderr[-2000:]
        lines = [ln for ln in stopped.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("interrupted: stopped by "
                                                       f"{signal.Signals(signum).name} at step ")
        at = int(lines[0].split(" at step ")[1].split(";")[0])
        assert 4 <= at < STEPS and steps[-1] == at
        newest = run / "checkpoints" / f"step_{at:07d}"
        assert (newest / TRAINER_STATE_FILE).is_file()
        assert load_meta(newest)["resume_only"] == (at not in (4, 8, 20, 40))
        flushed = _series(run)
        assert {(s, "train", "loss") for s in range(at)} <= set(flushed)  # nothing lost
        assert not (run / LOCK_FILE).exists()

    resumed = cli(*args, capsys=capsys)
    assert resumed.code == 0, resumed.err[-2000:]
    want, got = _series(reference), _series(run)
    assert set(got) == set(want)
    assert all(got[k] == want[k] for k in want), [k for k in want if got[k] != want[k]][:5]
    assert [s for s, _ in load_run(run).checkpoints()] == [s for s, _ in load_run(reference).checkpoints()]
    assert not [p for p in run.rglob(".tmp-*")] and not (run / LOCK_FILE).exists()
