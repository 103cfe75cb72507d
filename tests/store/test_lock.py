"""The run-directory lock with real processes: a live holder refuses, a dead one is taken over, another
host's record is trusted, the record on disk names the holder, release leaves nothing it created."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attnlife.errors import RunLockedError
from attnlife.store.atomic import host_name
from attnlife.store.lock import LOCK_FILE, LockHolder, RunLock, lock_path, read_holder, run_lock

HOLD = ("import sys, time\n"
        "from attnlife.store.lock import run_lock\n"
        "with run_lock(sys.argv[1], 'train'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n")


def _holder_process(run: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    assert proc.stdout.readline() == "held\n"
    return proc


def test_record_on_disk_names_the_holder_and_release_removes_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with run_lock(run, "analyze") as lock:
        assert lock_path(run) == run / LOCK_FILE == lock.path
        data = json.loads(lock.path.read_text())
        assert data == {"pid": os.getpid(), "host": host_name(), "since": lock.holder.since, "command": "analyze"}
        assert read_holder(run) == LockHolder(os.getpid(), host_name(), lock.holder.since, "analyze")
        assert lock.holder.since.endswith("+00:00") and "T" in lock.holder.since   # UTC ISO, seconds
    assert not (run / LOCK_FILE).exists() and run.is_dir()              # a folder it did not create stays
    lock = RunLock(run, "x").acquire()
    lock.release()
    lock.release()                                                      # idempotent
    assert not (run / LOCK_FILE).exists()


def test_a_folder_the_lock_created_is_removed_when_left_empty(tmp_path: Path) -> None:
    with run_lock(tmp_path / "new", "train"):
        assert (tmp_path / "new").is_dir()
    assert not (tmp_path / "new").exists()
    with run_lock(tmp_path / "kept", "train"):
        (tmp_path / "kept" / "metrics").mkdir()
    assert (tmp_path / "kept" / "metrics").is_dir() and not (tmp_path / "kept" / LOCK_FILE).exists()


def test_a_live_holder_in_another_process_is_refused_with_its_record(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _holder_process(run)
    try:
        with pytest.raises(RunLockedError) as err:
            RunLock(run, "analyze").acquire()
        holder = read_holder(run)
        assert holder.pid == proc.pid and holder.command == "train"
        assert str(err.value) == (f"{run} is in use by `attnlife train` (pid {proc.pid} on host {holder.host} since "
                                  f"{holder.since}); wait for it to finish or pass another output directory")
        assert read_holder(run) == holder                               # the refusal changed nothing
    finally:
        proc.kill()
        proc.wait()
    # killed holder: the kernel dropped the flock, the stale record of a dead pid is taken over
    with run_lock(run, "analyze"):
        assert read_holder(run).pid == os.getpid()


def test_records_without_a_flock(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # a live pid of this host whose flock is gone (a filesystem without working flock): held
        (run / LOCK_FILE).write_text(json.dumps({"pid": sleeper.pid, "host": host_name(), "since": "t0",
                                                 "command": "track"}))
        with pytest.raises(RunLockedError, match=rf"`attnlife track` \(pid {sleeper.pid} on host "):
            RunLock(run, "train").acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    dead = sleeper.pid                                                   # reaped: no such process now
    (run / LOCK_FILE).write_text(json.dumps({"pid": dead, "host": host_name(), "since": "t0", "command": "track"}))
    with run_lock(run, "train"):
        assert read_holder(run).command == "train"
    # another host's record is trusted whatever its pid, and the message says how to clear it
    (run / LOCK_FILE).write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere", "since": "t0",
                                             "command": "spectra"}))
    with pytest.raises(RunLockedError) as err:
        RunLock(run, "train").acquire()
    assert str(err.value).endswith(f"pass another output directory; if that process is no longer running, "
                                   f"delete {run / LOCK_FILE}")
    # our own pid's record (left by this process) is not someone else's lock
    (run / LOCK_FILE).write_text(json.dumps({"pid": os.getpid(), "host": host_name(), "since": "t0",
                                             "command": "train"}))
    with run_lock(run, "analyze"):
        assert read_holder(run).command == "analyze"


def test_unreadable_records_read_as_none(tmp_path: Path) -> None:
    assert read_holder(tmp_path) is None
    for text in ("{", "[]", json.dumps({"pid": "x", "host": "h", "since": "s"}), json.dumps({"host": "h"})):
        (tmp_path / LOCK_FILE).write_text(text)
        assert read_holder(tmp_path) is None, text
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 7, "host": "h", "since": "s"}))
    assert read_holder(tmp_path) == LockHolder(7, "h", "s", "?")
    assert LockHolder(7, "h", "s", "train").describe() == "`attnlife train` (pid 7 on host h since s)"


def test_no_record_means_another_process_and_the_lock_is_exclusive_in_process(tmp_path: Path) -> None:
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)                       # held, record empty
    try:
        with pytest.raises(RunLockedError, match="is in use by another process; wait"):
            RunLock(run, "train").acquire()
    finally:
        os.close(fd)
    first = RunLock(run, "train").acquire()
    try:
        with pytest.raises(RunLockedError):
            RunLock(run, "analyze").acquire()                          # a second lock in the same process
    finally:
        first.release()


def test_storage_failures_name_the_lock_file_and_nested_folders_are_created(tmp_path: Path) -> None:
    import errno

    from attnlife.errors import StorageError
    from attnlife.store.atomic import storage_error

    deep = tmp_path / "a" / "b" / "run"                                   # parents created as needed
    with run_lock(deep, "train"):
        assert read_holder(deep).pid == os.getpid()
        assert os.stat(lock_path(deep)).st_mode & 0o777 == 0o644 & ~_umask()
    too_long = tmp_path / ("x" * 300)
    want = str(storage_error(OSError(errno.ENAMETOOLONG, "File name too long"), lock_path(too_long), "lock"))
    with pytest.raises(StorageError) as err:
        RunLock(too_long, "train").acquire()
    assert str(err.value) == want and want.startswith(f"cannot lock {lock_path(too_long)}: ")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_release_before_acquire_is_a_no_op_and_a_lock_file_that_cannot_be_removed_is_still_released(
        tmp_path: Path, monkeypatch) -> None:
    RunLock(tmp_path, "train").release()                                  # never acquired: nothing to do
    assert not lock_path(tmp_path).exists()
    lock = RunLock(tmp_path, "train").acquire()

    def refuse(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))
    monkeypatch.setattr(Path, "unlink", refuse)
    lock.release()                                                        # the flock is dropped all the same
    monkeypatch.undo()
    with run_lock(tmp_path, "spectra") as again:                          # our own pid's record: taken over
        assert again.holder.command == "spectra"


def test_a_lock_file_replaced_between_open_and_flock_is_locked_anew(tmp_path: Path, monkeypatch) -> None:
    """A releaser unlinks the file after we opened it: the inode we locked is not the path's any more,
    so acquiring starts over; if that keeps happening it gives up with one line."""
    import fcntl

    real = fcntl.flock
    calls = []

    def racing(fd, op, times=1):
        calls.append(op)
        if len(calls) <= times and op & fcntl.LOCK_EX:
            os.unlink(lock_path(tmp_path))                                # released under our feet
        return real(fd, op)
    monkeypatch.setattr(fcntl, "flock", racing)
    with run_lock(tmp_path, "train"):
        assert read_holder(tmp_path).pid == os.getpid()                   # the record is on the path's file
        assert len([c for c in calls if c & fcntl.LOCK_EX]) == 2
    monkeypatch.setattr(fcntl, "flock", lambda fd, op: racing(fd, op, times=10**6))
    with pytest.raises(RunLockedError) as err:
        RunLock(tmp_path, "train").acquire()
    assert str(err.value) == (f"cannot lock {tmp_path}: the lock file {lock_path(tmp_path)} keeps changing; "
                              f"another attnlife is starting there, try again")
