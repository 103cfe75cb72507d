"""`attnlife prepare` never touches what it did not create; storage failures give one line."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from attnlife.store.atomic import host_name
from tests.faults.conftest import cli, subprocess_env, tree_snapshot


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src.txt"
    src.write_text("hello attention, hello lifecycle.\n" * 200)
    return src


def _prepare(source: Path, out: Path, name: str, capsys) -> object:
    return cli("prepare", "text", "--source", str(source), "--out", str(out), "--name", name,
               "--quiet", capsys=capsys)


def test_refuses_a_users_folder_and_keeps_it(tmp_path, source, capsys) -> None:
    mine = tmp_path / "pf2" / "myproject"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes")
    (mine / "sub").mkdir()
    (mine / "sub" / "data.csv").write_text("1,2")
    before = tree_snapshot(tmp_path)
    result = _prepare(source, tmp_path / "pf2", "myproject", capsys)
    assert result.code == 2
    assert len(result.error_lines) == 1 and len(result.err.strip().splitlines()) == 1
    assert "is not an attnlife dataset" in result.err and "notes.txt" in result.err
    assert tree_snapshot(tmp_path) == before


def test_refuses_a_plain_file_at_the_target(tmp_path, source, capsys) -> None:
    (tmp_path / "pf2").mkdir()
    (tmp_path / "pf2" / "myproject").write_text("a user's file")
    before = tree_snapshot(tmp_path)
    result = _prepare(source, tmp_path / "pf2", "myproject", capsys)
    assert result.code == 2 and len(result.error_lines) == 1
    assert "is not a dataset folder (a file)" in result.err
    assert tree_snapshot(tmp_path) == before  # nothing renamed to a hidden .tmp-*.old


def test_refuses_out_that_is_a_file(tmp_path, source, capsys) -> None:
    (tmp_path / "pf2").write_text("not a folder")
    before = tree_snapshot(tmp_path)
    result = _prepare(source, tmp_path / "pf2", "x", capsys)
    assert result.code == 2 and len(result.error_lines) == 1
    assert "is a file, not a folder" in result.err
    assert tree_snapshot(tmp_path) == before


def test_replaces_its_own_dataset_and_nothing_else(tmp_path, source, capsys) -> None:
    out = tmp_path / "pf2"
    assert _prepare(source, out, "ds", capsys).code == 0
    (out / "neighbour.txt").write_text("keep me")
    first = json.loads((out / "ds" / "meta.json").read_text())
    source.write_text("other text, same shape.\n" * 300)
    before = tree_snapshot(tmp_path, skip=("pf2/ds",))
    assert _prepare(source, out, "ds", capsys).code == 0
    second = json.loads((out / "ds" / "meta.json").read_text())
    assert second["source"]["sha256"] != first["source"]["sha256"]
    assert second["total_tokens"] == len("other text, same shape.\n" * 300)
    assert tree_snapshot(tmp_path, skip=("pf2/ds",)) == before
    assert sorted(p.name for p in out.iterdir()) == ["ds", "neighbour.txt"]


def test_full_disk_gives_one_line_and_leaves_nothing(tmp_path, source, capsys, monkeypatch) -> None:
    (tmp_path / "pf2").mkdir()
    before = tree_snapshot(tmp_path)

    def no_space(*args: object) -> None:  # the disk fills while the folder is moved into place
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", no_space)
    result = _prepare(source, tmp_path / "pf2", "ds", capsys)
    monkeypatch.undo()
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert "No space left on device" in result.err and "pf2/ds" in result.err
    assert tree_snapshot(tmp_path) == before  # no half-written folder, no temp leftovers


def test_read_only_folder_gives_one_line(tmp_path, source, capsys, monkeypatch) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() != 0:  # a real read-only folder
        out.chmod(0o555)
    else:  # root ignores permission bits: make mkdir inside `out` fail as the kernel would
        real_mkdir = Path.mkdir

        def read_only_mkdir(self: Path, *args, **kwargs) -> None:
            if self.parent == out:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    try:
        before = tree_snapshot(tmp_path)
        result = _prepare(source, out, "ds", capsys)
    finally:
        out.chmod(0o755)
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert "Permission denied" in result.err
    assert tree_snapshot(tmp_path) == before


def test_killed_prepare_leftovers_are_removed_live_ones_kept(tmp_path, source, capsys) -> None:
    out = tmp_path / "pf2"
    out.mkdir()
    # a prepare SIGKILLed while writing its temp folder
    script = ("import os, signal, sys\nfrom attnlife.store.atomic import atomic_dir\n"
              "with atomic_dir(sys.argv[1]) as tmp:\n"
              "    (tmp / 'train.bin').write_bytes(b'x' * 100)\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", script, str(out / "ds")], env=subprocess_env())
    assert killed.returncode == -signal.SIGKILL
    leftovers = [p.name for p in out.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".tmp-ds~{host_name()}~")
    live = out / f".tmp-ds~{host_name()}~{os.getpid()}~00000000"  # a live writer's (ours)
    live.mkdir()
    other = out / ".tmp-other~somehost~1~00000000"
    other.write_text("another machine's work")
    assert _prepare(source, out, "ds", capsys).code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["ds", live.name, other.name])
