"""Atomic file writes: write to a temporary sibling, fsync, rename into place.

A reader never sees a half-written file. Temporary names carry the writer's identity,
`.tmp-<final name>~<host>~<pid>~<random>`, so a killed writer's leftovers can be told apart from
a live writer's work in progress: `clean_temp_files` removes only entries whose owner is dead
(same host, pid no longer running) and never touches another live writer's files nor anything
from another host. OS failures while writing (full disk, read-only or forbidden folder, name too
long) become one-line `StorageError`s.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import Iterator, Optional

from attnlife.errors import StorageError

TEMP_PREFIX = ".tmp-"
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                   errno.ENAMETOOLONG, errno.EFBIG, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}
_STORAGE_WORDS = ("No space left", "Disk quota", "Read-only file system", "Permission denied",
                  "File name too long")
_FIX = {errno.ENOSPC: "free disk space or choose another output folder",
        errno.EDQUOT: "free disk space or choose another output folder",
        errno.EROFS: "choose an output folder on a writable disk",
        errno.EACCES: "fix the folder's permissions or choose another output folder",
        errno.EPERM: "fix the folder's permissions or choose another output folder",
        errno.ENAMETOOLONG: "use a shorter name or path"}


def host_name() -> str:
    """This machine's host name with `~` and `/` replaced (safe inside a temp file name)."""
    return re.sub(r"[~/\s]", "_", socket.gethostname()) or "localhost"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] not in "ZX"
    return True


def temp_name(final_name: str, suffix: str = "") -> str:
    """`.tmp-<final_name>~<host>~<pid>~<random><suffix>`: a temp entry owned by this process."""
    return f"{TEMP_PREFIX}{final_name}~{host_name()}~{os.getpid()}~{secrets.token_hex(4)}{suffix}"


def temp_owner(name: str) -> Optional[tuple[str, int]]:
    """(host, pid) of a temp entry named by `temp_name`, or None for a foreign name."""
    if not name.startswith(TEMP_PREFIX):
        return None
    parts = name[len(TEMP_PREFIX):].rsplit("~", 3)
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def is_stale_temp(path: Path) -> bool:
    """True for a temp entry whose writer is gone: same host and pid no longer running."""
    owner = temp_owner(path.name)
    if owner is None:
        return False
    host, pid = owner
    return host == host_name() and pid != os.getpid() and not pid_alive(pid)


def storage_error(err: OSError, path: str | os.PathLike, action: str = "write") -> Optional[StorageError]:
    """The one-line StorageError for an OS failure on `path`, or None if it is not a storage one."""
    code = err.errno
    if code not in _STORAGE_ERRNOS and not any(w in str(err) for w in _STORAGE_WORDS):
        return None
    reason = os.strerror(code) if code else str(err).strip().splitlines()[0]
    fix = _FIX.get(code, "check the path and the disk")
    return StorageError(f"cannot {action} {path}: {reason}; {fix}")


@contextlib.contextmanager
def storage_errors(path: str | os.PathLike, action: str = "write") -> Iterator[None]:
    """Turn storage OSErrors (full disk, read-only, permissions, name too long) raised inside the
    block into one-line StorageErrors naming `path`; other errors pass through unchanged."""
    try:
        yield
    except OSError as err:
        mapped = storage_error(err, path, action)
        if mapped is None:
            raise
        raise mapped from None


def _make_parent(final: Path) -> None:
    with storage_errors(final.parent, "create"):
        final.parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `final_path`; on success rename it into place.

    On an exception the temporary file is deleted and `final_path` is untouched.
    """
    final = Path(final_path)
    _make_parent(final)
    tmp = final.with_name(temp_name(final.name))
    try:
        with storage_errors(final):
            tmp.touch(exist_ok=False)
            yield tmp
            _fsync_file(tmp)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(final_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory; on success rename it to `final_dir` (replacing an old one).

    Only replace folders attnlife wrote: the caller checks what an existing `final_dir` is.
    """
    final = Path(final_dir)
    _make_parent(final)
    tmp = final.with_name(temp_name(final.name))
    try:
        with storage_errors(final):
            tmp.mkdir()
            yield tmp
            if final.exists():
                old = final.with_name(temp_name(final.name, ".old"))
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
            _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically; return the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: object) -> Path:
    """Write `obj` as indented JSON to `path` atomically; return the path."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def clean_temp_files(directory: str | os.PathLike, final_name: Optional[str] = None) -> int:
    """Remove stale `.tmp-*` leftovers of killed writers directly inside `directory`; return count.

    Stale = written by a process of this host that no longer runs (see `is_stale_temp`); live
    writers' temp files and other hosts' ones are left alone. With `final_name`, only the
    leftovers of writes to that name are considered (for folders shared with the user's files).
    """
    d = Path(directory)
    if not d.is_dir():
        return 0
    n = 0
    pattern = TEMP_PREFIX + (glob.escape(final_name) + "~" if final_name else "") + "*"
    for p in d.glob(pattern):
        if not is_stale_temp(p):
            continue
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            n += 1
    return n


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
