"""A full disk, a read-only disk, no permission, over-long names, a file in the way: one line each.

The disks are real: a small or read-only tmpfs mounted in a private mount namespace
(`unshare --user --map-root-user --mount`), and a folder of another owner for EACCES (checked from
an unprivileged user namespace when the tests run as root). Tests that need a namespace skip where
the kernel does not allow one. Every case runs the real CLI in a subprocess and asserts exit 2,
exactly one `error:` line naming the problem, and an unchanged tree outside the command's output.
"""
from __future__ import annotations

import errno
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from attnlife.cli.failures import environment_failure
from tests.faults.conftest import (Result, attnlife_cmd, cli, run_cli_subprocess, subprocess_env,
                                   train_args, tree_snapshot)


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


needs_namespace = pytest.mark.skipif(not _namespaces_work(), reason="no user/mount namespaces here")


def _in_tmpfs(mount: Path, options: str, argv: list[str]) -> Result:
    """Run `attnlife ARGV` with a fresh tmpfs (mount options `options`) at `mount`."""
    mount.mkdir(exist_ok=True)
    script = (f"mount -t tmpfs -o {shlex.quote(options)} tmpfs {shlex.quote(str(mount))} && "
              f"exec {shlex.join(attnlife_cmd(*argv))}")
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          env=subprocess_env(), capture_output=True, text=True, timeout=180)
    return Result(done.returncode, done.stdout, done.stderr)


def _assert_one_line(result: Result, *fragments: str) -> str:
    lines = result.err.strip().splitlines()
    assert result.code == 2, result.err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err[-3000:]
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]
    return lines[0]


@needs_namespace
@pytest.mark.parametrize("size", [pytest.param("8k", marks=pytest.mark.slow), "40k",
                                  pytest.param("100k", marks=pytest.mark.slow)])  # run.json / part / checkpoint
def test_train_on_a_full_disk(workspace: Path, size: str) -> None:
    before = tree_snapshot(workspace)
    mount = workspace / "mnt"
    result = _in_tmpfs(mount, f"size={size}", train_args(workspace / "data", mount / "run", 20))
    _assert_one_line(result, "no space left on device")
    assert tree_snapshot(workspace, skip=("mnt",)) == before


@pytest.mark.slow
@needs_namespace
def test_spectra_and_prepare_on_a_full_disk(workspace: Path, shakespeare_txt: Path) -> None:
    before = tree_snapshot(workspace)
    mount = workspace / "mnt"
    spectra = _in_tmpfs(mount, "size=24k", ["spectra", str(workspace / "run"), "--out", str(mount / "s"), "--quiet"])
    _assert_one_line(spectra, "no space left on device")
    prepare = _in_tmpfs(mount, "size=64k", ["prepare", "shakespeare_char", "--source", str(shakespeare_txt),
                                            "--out", str(mount / "d"), "--quiet"])
    # numpy's tofile reports a short write without an errno: named as a probably full disk
    _assert_one_line(prepare, "disk is probably full")
    assert tree_snapshot(workspace, skip=("mnt",)) == before


@needs_namespace
@pytest.mark.parametrize("verb", ["train", pytest.param("spectra", marks=pytest.mark.slow),
                                  pytest.param("prepare", marks=pytest.mark.slow)])
def test_read_only_disk(workspace: Path, verb: str) -> None:
    before = tree_snapshot(workspace)
    mount = workspace / "mnt"
    argv = {"train": train_args(workspace / "data", mount / "run", 5),
            "spectra": ["spectra", str(workspace / "run"), "--out", str(mount / "s"), "--quiet"],
            "prepare": ["prepare", "text", "--source", str(workspace / "data" / "shakespeare_char" / "meta.json"),
                        "--out", str(mount), "--quiet"]}[verb]
    _assert_one_line(_in_tmpfs(mount, "ro,size=1m", argv), "read-only file system")
    assert tree_snapshot(workspace, skip=("mnt",)) == before


def test_no_permission(workspace: Path) -> None:
    locked = workspace / "locked"
    locked.mkdir()
    argv = train_args(workspace / "data", locked / "run", 5)
    if os.geteuid() == 0:  # root ignores modes: act as an unprivileged user on another user's folder
        if not _namespaces_work():
            pytest.skip("running as root without user namespaces")
        os.chown(locked, 12345, 12345)
        done = subprocess.run(["unshare", "--user", *attnlife_cmd(*argv)], env=subprocess_env(),
                              capture_output=True, text=True, timeout=180)
        result = Result(done.returncode, done.stdout, done.stderr)
    else:
        locked.chmod(0o555)
        result = run_cli_subprocess(*argv)
    before = tree_snapshot(workspace)
    _assert_one_line(result, "permission denied")
    assert tree_snapshot(workspace) == before and not (locked / "run").exists()


def test_over_long_names(workspace: Path, capsys) -> None:
    before = tree_snapshot(workspace)
    long = workspace / ("x" * 300)
    _assert_one_line(cli(*train_args(workspace / "data", long, 5), capsys=capsys), "file name too long")
    _assert_one_line(cli("spectra", str(workspace / "run"), "--out", str(long), "--quiet", capsys=capsys),
                     "file name too long")
    _assert_one_line(cli("prepare", "text", "--source", str(workspace / "data" / "shakespeare_char" / "meta.json"),
                         "--out", str(workspace / "p"), "--name", "y" * 300, "--quiet", capsys=capsys),
                     "file name too long")
    assert tree_snapshot(workspace, skip=("p",)) == before


def test_output_path_is_a_file(workspace: Path, capsys) -> None:
    blocker = workspace / "notes.txt"
    blocker.write_text("my notes\n")
    before = tree_snapshot(workspace)
    for argv in (train_args(workspace / "data", blocker, 5), train_args(workspace / "data", blocker / "run", 5),
                 ["spectra", str(workspace / "run"), "--out", str(blocker), "--quiet"],
                 ["spectra", str(workspace / "run"), "--out", str(blocker / "s"), "--quiet"]):
        _assert_one_line(cli(*argv, capsys=capsys), str(blocker))
    assert tree_snapshot(workspace) == before and blocker.read_text() == "my notes\n"


def test_environment_failure_lines() -> None:
    line = environment_failure(OSError(errno.ENOSPC, "No space left on device", "/d/run/x.parquet"))
    assert line == "no space left on device: /d/run/x.parquet; free some space or write to another disk (--out)"
    rust = environment_failure(Exception("Error while serializing: I/O error: No space left on device (os error 28)"))
    assert rust is not None and rust.startswith("no space left on device (Error while serializing")
    short = environment_failure(OSError("100000 requested and 0 written"))
    assert short is not None and "disk is probably full" in short
    named = environment_failure(OSError(errno.EACCES, "Permission denied", "/a\nb"))
    assert named is not None and "\n" not in named
    # anything else is a bug: no line, so the CLI re-raises it with its traceback
    assert environment_failure(OSError(errno.ECONNRESET, "reset")) is None
    assert environment_failure(RuntimeError("shape mismatch")) is None
    assert environment_failure(KeyError("n_layer")) is None


def test_unexpected_bug_keeps_its_traceback(tmp_path: Path) -> None:
    """A bug is not turned into an `error:` line: the traceback reaches the user, exit 1."""
    script = ("import sys\nfrom attnlife.cli import app, main\n"
              "@app.command('boom')\ndef boom():\n    raise ZeroDivisionError('a bug')\n"
              "main(['boom'])\n")
    done = subprocess.run([*attnlife_cmd()[:1], "-c", script], env=subprocess_env(), capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "ZeroDivisionError: a bug" in done.stderr
    assert "error:" not in done.stderr
