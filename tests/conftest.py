"""Shared fixtures: where the offline copies of the real datasets live."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]

# tqdm's default write lock holds a multiprocessing semaphore that every process forked from this one
# shares, and a monitor thread that may hold the lock when one forks. mutmut forks one test process
# per mutant and stops a slow one with a signal: a process stopped while a bar held the semaphore
# left every later fork's bar waiting forever (61 mutants in a row reported as timeouts, not tested).
# The tests draw bars within one process, so a plain per-process lock and no monitor thread do.
tqdm.tqdm.set_lock(threading.RLock())
tqdm.tqdm.monitor_interval = 0


def shared_data_root() -> Path:
    """../shared/data beside the repository, or $ATTNLIFE_SHARED_DATA."""
    return Path(os.environ.get("ATTNLIFE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_root()
    if not (root / "shakespeare" / "input.txt").is_file():
        pytest.fail(f"real datasets not found under {root}; set ATTNLIFE_SHARED_DATA")
    return root


@pytest.fixture(scope="session")
def shakespeare_txt(shared_data: Path) -> Path:
    return shared_data / "shakespeare" / "input.txt"


@pytest.fixture(scope="session")
def unstable_health_run(tmp_path_factory, shakespeare_txt: Path):
    """The attention-health issue's run, once per session: `attnlife train` of the cpu preset at
    lr 0.03 without warm-up or clipping, 100 updates, with --tensorboard -> (run dir, CliRunner result)."""
    import torch
    from typer.testing import CliRunner

    from attnlife.cli import app
    from attnlife.data import prepare_dataset

    root = tmp_path_factory.mktemp("health")
    prepare_dataset("shakespeare_char", root / "data", source=shakespeare_txt, quiet=True)
    torch.set_num_threads(1)
    result = CliRunner().invoke(app, [
        "train", "--preset", "cpu", "--dataset", "shakespeare_char", "--data-dir", str(root / "data"),
        "--out", str(root / "run"), "--max-iters", "100", "--lr", "0.03", "--set", "train.warmup_iters=0",
        "--set", "train.grad_clip=0", "--set", "train.eval_iters=2", "--set", "track.at_checkpoints=false",
        "--set", "train.ckpt_log_max=0", "--quiet", "--device", "cpu", "--tensorboard"])
    return root / "run", result
