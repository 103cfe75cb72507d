"""Fault-injection helpers: run a verb (in-process or as a real subprocess), snapshot a folder tree.

Every fault test asserts three things: the one `error:` line, the exit code, and that nothing
outside the command's own output changed (`tree_snapshot` before == after).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.theory.conftest import _one_thread  # noqa: F401 - autouse: one torch thread per test
from tests.train.conftest import TINY as TRAIN_TINY

REPO = Path(__file__).resolve().parents[2]
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
TINY = [*TRAIN_TINY, "track.enabled=false"]


@dataclass(frozen=True)
class Result:
    """Exit code and captured streams of one CLI call."""

    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.startswith("error:")]


def tree_snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """{relative path: sha256 of the file, "dir" for a folder, "link -> target"} under `root`.

    Entries whose relative path starts with one of `skip` are left out (a command's own output).
    """
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            continue
        if path.is_symlink():
            out[rel] = f"link -> {os.readlink(path)}"
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def cli(*argv: str, capsys: pytest.CaptureFixture) -> Result:
    """Run `attnlife ARGV` in this process through the console entry point; return its Result."""
    from attnlife.cli import main

    capsys.readouterr()
    code = 0
    try:
        main(list(argv))
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def subprocess_env() -> dict:
    return {**os.environ, **ENV}


def attnlife_cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "attnlife", *argv]


def run_cli_subprocess(*argv: str, timeout: float = 180) -> Result:
    done = subprocess.run(attnlife_cmd(*argv), env=subprocess_env(), capture_output=True,
                          text=True, timeout=timeout)
    return Result(done.returncode, done.stdout, done.stderr)


def train_args(data_dir: Path, out: Path, max_iters: int, *extra: str) -> list[str]:
    """`attnlife train` arguments for a ~1k-parameter model on tiny-shakespeare, no tracking."""
    sets = TINY + [f"data.data_dir={data_dir}", f"train.max_iters={max_iters}",
                   f"train.lr_decay_iters={max_iters}", *extra]
    return ["train", "--quiet", "--out", str(out), "--dataset", "shakespeare_char",
            *[a for s in sets for a in ("--set", s)]]


@pytest.fixture(scope="session")
def fault_data(tmp_path_factory, shakespeare_txt: Path) -> Path:
    """A data folder holding a prepared shakespeare_char (first 60k characters)."""
    from attnlife.data import prepare_dataset

    root = tmp_path_factory.mktemp("faultdata")
    src = root / "input.txt"
    src.write_text(shakespeare_txt.read_text()[:60_000])
    prepare_dataset("text", root / "data", source=src, quiet=True, dataset_name="shakespeare_char")
    return root / "data"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, fault_data: Path) -> Path:
    """A finished 8-step run (checkpoints 0, 1, 2, 4, 8; trainer state in step 8)."""
    from attnlife.config import build_config
    from attnlife.run import run_training

    out = tmp_path_factory.mktemp("trained") / "run"
    sets = TINY + [f"data.data_dir={fault_data}", "train.max_iters=8", "train.lr_decay_iters=8"]
    run_training(build_config("cpu", "shakespeare_char", overrides=sets, out_dir=str(out)), quiet=True)
    return out


@pytest.fixture
def workspace(tmp_path: Path, trained_run: Path, fault_data: Path) -> Path:
    """tmp_path/{run, data}: private copies of the trained run and its data (run.json points at data)."""
    import json

    shutil.copytree(fault_data, tmp_path / "data")
    shutil.copytree(trained_run, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    record["dataset"]["data_dir"] = str(tmp_path / "data")
    record["config"]["data"]["data_dir"] = str(tmp_path / "data")
    (tmp_path / "run" / "run.json").write_text(json.dumps(record))
    return tmp_path
