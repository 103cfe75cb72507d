"""Damaged or hostile checkpoint and table files: one error line (or a warning), never a traceback,
never executed code, and nothing written."""
from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from attnlife.errors import RunDirError
from attnlife.store.checkpoints import (TRAINER_STATE_FILE, TRAINER_TENSORS_FILE, load_trainer_state,
                                        remove_trainer_state)
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


def test_pickled_trainer_state_is_never_loaded(workspace) -> None:
    """Only trainer_state.json + .safetensors are read: a pickle beside them never runs."""
    ckpt = workspace / NEWEST
    marker = workspace / "pwned"
    state = load_trainer_state(ckpt)
    state["extra"] = _Payload(marker)
    remove_trainer_state(ckpt)
    torch.save(state, ckpt / "trainer_state.pt")
    assert load_trainer_state(ckpt) is None
    assert not marker.exists()
    torch.load(ckpt / "trainer_state.pt", weights_only=False)  # the file is live: pickle runs it
    assert marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "foreign"])
def test_damaged_metrics_part_is_skipped_with_a_warning(workspace, capsys, damage) -> None:
    parts = sorted((workspace / "run" / "metrics").glob("part-*.parquet"))
    bad = parts[0]
    whole, bad_rows = load_run(workspace / "run").metrics(), len(pd.read_parquet(bad))
    if damage == "truncate":
        _damage(bad, "truncate")
    else:
        pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_parquet(bad)
    with pytest.warns(DamagedPartWarning, match=bad.name):
        frame = load_run(workspace / "run").metrics()
    assert bad_rows > 0 and len(frame) == len(whole) - bad_rows       # exactly the damaged part's rows are gone
    assert set(frame["step"]) <= set(range(9))
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
