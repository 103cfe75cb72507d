"""The trainer in real subprocesses: a one-thread environment that imports this checkout, and a
2-process torchrun DDP run on gloo."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def subprocess_env() -> dict:
    """os.environ with one thread per process and this checkout first on the path."""
    return {**os.environ, **SUBPROCESS_ENV}


def train_ddp(out: Path, overrides: list[str], timeout: float) -> subprocess.CompletedProcess:
    """`attnlife train` on shakespeare_char under torchrun, 2 processes on gloo (CPU), with `--set`
    OVERRIDES; asserts it exited 0 and recorded world_size 2."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "attnlife", "train", "--quiet", "--device", "cpu", "--out", str(out),
           "--dataset", "shakespeare_char"] + [a for o in overrides for a in ("--set", o)]
    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert json.loads((Path(out) / "run.json").read_text())["world_size"] == 2
    return done
