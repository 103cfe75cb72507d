"""Damaged or hostile checkpoint and table files: one error line (or a warning), never a traceback,
never executed code, and nothing written."""
from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from attnlife.errors import CheckpointError, RunDirError
from attnlife.store.checkpoints import (LEGACY_TRAINER_STATE_FILE, TRAINER_STATE_FILE,
                                        TRAINER_TENSORS_FILE, load_trainer_state, remove_trainer_state)
from attnlife.store.part_table import DamagedPartWarning
from attnlife.store.run_dir import load_run
from tests.faults.conftest import cli, train_args, tree_snapshot

NEWEST = Path("run/checkpoints/step_0000008")


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(torch.randint(0, 256, (max(len(data), 64),), dtype=torch.uint8,
                                       generator=torch.Generator().manual_seed(7)).numpy().tobytes())


def _resume(ws: Path, capsys, *extra: str):
    return cli(*train_args(ws / "data", ws / "run", 12), *extra, capsys=capsys)


@pytest.mark.parametrize("how", ["truncate", "random"])
@pytest.mark.parametrize("name", ["model.safetensors", TRAINER_TENSORS_FILE, TRAINER_STATE_FILE])
def test_damaged_checkpoint_on_resume(workspace, capsys, name, how) -> None:
    _damage(workspace / NEWEST / name, how)
    before = tree_snapshot(workspace)
    result = _resume(workspace, capsys)
    assert result.code == 2, result.err[-2000:]
    assert len(result.error_lines) == 1 and "Traceback" not in result.err
    assert name in result.error_lines[0] and "damaged" in result.error_lines[0]
    assert tree_snapshot(workspace) == before


@pytest.mark.parametrize("name", ["model.safetensors", "meta.json"])
def test_damaged_checkpoint_on_sample(workspace, capsys, name) -> None:
    _damage(workspace / NEWEST / name, "truncate")
    before = tree_snapshot(workspace)
    result = cli("sample", str(workspace / "run"), "--tokens", "5", capsys=capsys)
    assert result.code == 2 and len(result.error_lines) == 1, result.err[-2000:]
    assert name in result.error_lines[0] and "Traceback" not in result.err
    assert tree_snapshot(workspace) == before


class _Payload:
    """Unpickling this calls open(marker, "w"): a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (open, (str(self.marker), "w"))


def test_malicious_legacy_trainer_state_is_not_executed(workspace, capsys) -> None:
    ckpt = workspace / NEWEST
    marker = workspace / "pwned"
    state = load_trainer_state(ckpt)
    state["extra"] = _Payload(marker)
    remove_trainer_state(ckpt)
    torch.save(state, ckpt / LEGACY_TRAINER_STATE_FILE)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_trainer_state(ckpt)
    before = tree_snapshot(workspace)
    result = _resume(workspace, capsys)
    assert result.code == 2 and len(result.error_lines) == 1
    assert "refusing to load" in result.err and "trainer_state.pt" in result.err
    assert not marker.exists() and tree_snapshot(workspace) == before
    with open(ckpt / LEGACY_TRAINER_STATE_FILE, "rb") as f:  # the file is live: pickle runs it
        head = f.read(2)
    assert head == b"PK"
    torch.load(ckpt / LEGACY_TRAINER_STATE_FILE, weights_only=False)
    assert marker.exists()


def test_legacy_trainer_state_still_resumes_exactly(workspace, tmp_path_factory, capsys) -> None:
    import shutil

    twin = tmp_path_factory.mktemp("twin")
    shutil.copytree(workspace, twin, dirs_exist_ok=True)
    legacy = workspace / NEWEST
    torch.save(load_trainer_state(legacy), legacy / LEGACY_TRAINER_STATE_FILE)  # attnlife 0.1 layout
    (legacy / TRAINER_STATE_FILE).unlink()
    (legacy / TRAINER_TENSORS_FILE).unlink()
    assert _resume(workspace, capsys).code == 0
    assert cli(*train_args(twin / "data", twin / "run", 12), capsys=capsys).code == 0
    a, b = load_run(workspace / "run").metrics(), load_run(twin / "run").metrics()
    keep = ["step", "split", "metric", "value"]
    a = a[a.metric.isin(["loss", "eval_loss"])][keep].reset_index(drop=True)
    b = b[b.metric.isin(["loss", "eval_loss"])][keep].reset_index(drop=True)
    assert len(a) == 12 + 2 * 5 and a.equals(b)  # losses 0..11, evals at 0, 5, 8, 10, 12
    assert not (legacy / LEGACY_TRAINER_STATE_FILE).exists()  # the next checkpoint took over


@pytest.mark.parametrize("damage", ["truncate", "foreign"])
def test_damaged_metrics_part_is_skipped_with_a_warning(workspace, capsys, damage) -> None:
    parts = sorted((workspace / "run" / "metrics").glob("part-*.parquet"))
    bad = parts[0]
    if damage == "truncate":
        _damage(bad, "truncate")
    else:
        pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_parquet(bad)
    with pytest.warns(DamagedPartWarning, match=bad.name):
        frame = load_run(workspace / "run").metrics()
    assert len(frame) > 0 and set(frame["step"]) <= set(range(9))
    with pytest.raises(RunDirError, match=bad.name):
        load_run(workspace / "run", strict=True).metrics()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedPartWarning)
        result = _resume(workspace, capsys)  # a successful train must not crash at its end
    assert result.code == 0, result.err[-2000:]
    assert "checkpoints: 6" in result.out


def test_full_disk_while_checkpointing(workspace, capsys, monkeypatch) -> None:
    import errno
    import os

    import attnlife.store.checkpoints as checkpoints

    def no_space(tensors, filename, metadata=None):  # noqa: ANN001
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    before = tree_snapshot(workspace, skip=("run/metrics", "run/run.json"))
    monkeypatch.setattr(checkpoints, "save_file", no_space)
    result = _resume(workspace, capsys)
    assert result.code == 2 and len(result.error_lines) == 1, result.err[-2000:]
    assert "No space left on device" in result.err and "step_0000012" in result.err
    assert tree_snapshot(workspace, skip=("run/metrics", "run/run.json")) == before
    monkeypatch.undo()
    assert _resume(workspace, capsys).code == 0  # room again: the run resumes from step 8


def test_killed_checkpoint_write_leftovers_are_removed_when_stale(workspace, capsys) -> None:
    import os
    import signal
    import subprocess
    import sys

    from attnlife.store.atomic import host_name
    from tests.faults.conftest import subprocess_env

    ckdir = workspace / NEWEST.parent
    script = ("import os, signal, sys, torch\nfrom attnlife.store import checkpoints\n"
              "def die(*a, **k):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
              "checkpoints.save_file = die\n"
              "checkpoints.save_checkpoint(sys.argv[1], 99, {'w': torch.ones(2)}, {})\n")
    killed = subprocess.run([sys.executable, "-c", script, str(workspace / "run")], env=subprocess_env())
    assert killed.returncode == -signal.SIGKILL
    stale = [p.name for p in ckdir.iterdir() if p.name.startswith(".tmp-")]
    assert len(stale) == 1 and stale[0].startswith(f".tmp-step_0000099~{host_name()}~")
    live = ckdir / f".tmp-step_0000012~{host_name()}~{os.getpid()}~0000abcd"  # a live writer's
    live.mkdir()
    assert _resume(workspace, capsys).code == 0
    assert [p.name for p in ckdir.iterdir() if p.name.startswith(".tmp-")] == [live.name]
