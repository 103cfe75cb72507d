"""One writer per run directory: `RUN/.attnlife.lock`, held with an advisory `fcntl.flock`.

    with run_lock(run_dir, "train"):      # raises RunLockedError if another process writes RUN
        ...write into run_dir...

The lock file holds the holder's record as JSON: `{"pid", "host", "since" (UTC ISO time),
"command"}`. Acquiring takes an exclusive non-blocking `flock` on it (the kernel drops it when
the holder dies, even on SIGKILL), then checks the record it finds:
- none, or written by a dead pid of this host (a SIGKILLed holder): stale, taken over;
- written by a live pid of this host other than us: held (a filesystem without working flock);
- written by another host (flock over a network filesystem cannot be trusted): held, and the
  message says to delete the lock file if that process is gone.
Release unlinks the file while still holding the lock; an acquirer re-checks after locking that
the path still names the file it locked, so two writers never both hold a lock. Once held, a
directory of a newer run format is refused (`attnlife.store.run_format`) and the lock released.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional

from attnlife.errors import RunLockedError
from attnlife.store.atomic import host_name, pid_alive, storage_errors
from attnlife.store.run_format import check_writable

LOCK_FILE = ".attnlife.lock"
_ATTEMPTS = 5


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a run directory's lock."""

    pid: int
    host: str
    since: str
    command: str

    def describe(self) -> str:
        return f"`attnlife {self.command}` (pid {self.pid} on host {self.host} since {self.since})"


def lock_path(run_dir: str | os.PathLike) -> Path:
    """RUN/.attnlife.lock."""
    return Path(run_dir) / LOCK_FILE


def read_holder(run_dir: str | os.PathLike) -> Optional[LockHolder]:
    """The record in RUN's lock file, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(lock_path(run_dir).read_text())
        return LockHolder(int(data["pid"]), str(data["host"]), str(data["since"]),
                          str(data.get("command", "?")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class RunLock:
    """An acquired run-directory lock; `release()` (or leaving `run_lock`) gives it back."""

    def __init__(self, run_dir: str | os.PathLike, command: str) -> None:
        self.run_dir = Path(run_dir)
        self.path = lock_path(run_dir)
        self.holder = LockHolder(os.getpid(), host_name(),
                                 _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                 command)
        self._fd: Optional[int] = None
        self._created_dir = False

    def acquire(self) -> "RunLock":
        """Take the lock or raise RunLockedError naming the holder (pid, host, since)."""
        with storage_errors(self.path, "lock"):
            self._created_dir = not self.run_dir.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for _ in range(_ATTEMPTS):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    self._refuse(read_holder(self.run_dir))  # the holder created the folder
                if not _same_file(fd, self.path):  # released (unlinked) between open and lock
                    os.close(fd)
                    continue
                found = read_holder(self.run_dir)
                if found is not None and _still_held(found):
                    os.close(fd)
                    self._remove_created_dir()
                    self._refuse(found)
                self._fd = fd
                self._write_record(fd)
                try:
                    check_writable(self.run_dir)   # never write into a newer run format
                except BaseException:
                    self.release()
                    raise
                return self
        raise RunLockedError(f"cannot lock {self.run_dir}: the lock file {self.path} keeps "
                             f"changing; another attnlife is starting there, try again")

    def release(self) -> None:
        """Delete the lock file and drop the lock (idempotent); a run folder that acquiring
        created and that is still empty is removed too (a failed first start leaves nothing)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(self._fd, self.path):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None
        self._remove_created_dir()

    def _remove_created_dir(self) -> None:
        if self._created_dir:
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()  # only succeeds while empty

    def _write_record(self, fd: int) -> None:
        data = (json.dumps(asdict(self.holder)) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    def _refuse(self, holder: Optional[LockHolder]) -> None:
        who = holder.describe() if holder else "another process"
        hint = ""
        if holder is not None and holder.host != host_name():
            hint = f"; if that process is no longer running, delete {self.path}"
        raise RunLockedError(f"{self.run_dir} is in use by {who}; wait for it to finish or "
                             f"pass another output directory{hint}")


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _still_held(holder: LockHolder) -> bool:
    """Whether a record found under a free flock still means a live holder (see module docs)."""
    if holder.host != host_name():
        return True
    return holder.pid != os.getpid() and pid_alive(holder.pid)


_HELD: dict[str, RunLock] = {}   # resolved run dir -> the lock this process holds there


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, command: str, reenter: bool = False) -> Iterator[RunLock]:
    """Hold RUN's writer lock for the block; `command` names the verb in a refusal message.

    Raises RunLockedError (one line: holder's command, pid, host, start time) when another live
    process holds it; a lock left by a dead process of this host is taken over. With `reenter`,
    a lock this process already holds on RUN (a verb that locked the whole job) is used as it is;
    without it, a second lock in the same process is refused like any other writer.
    """
    key = str(Path(run_dir).resolve())
    if reenter and key in _HELD:
        yield _HELD[key]
        return
    lock = RunLock(run_dir, command).acquire()
    _HELD[key] = lock
    try:
        yield lock
    finally:
        _HELD.pop(key, None)
        lock.release()
