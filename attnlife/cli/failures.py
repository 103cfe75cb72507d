"""Environment failures a user can fix (disk full, permissions, read-only disk, long names) -> one line.

`environment_failure(err)` returns the `error:` line for running out of memory (MemoryError,
torch's allocator failures), for an `OSError` whose errno is in
`KNOWN_ERRNOS` (Python's own I/O, pyarrow), for a Rust-side I/O error that names its errno as
`(os error N)` (safetensors), and for a short write (`numpy.tofile` on a full disk); anything
else returns None so the CLI re-raises it with its traceback (an unexpected bug stays visible).
"""
from __future__ import annotations

import errno
import re
from typing import Optional

# errno -> (what happened, what to do)
KNOWN_ERRNOS: dict[int, tuple[str, str]] = {
    errno.EACCES: ("permission denied", "choose a folder you can write to (--out) or fix its permissions"),
    errno.EPERM: ("operation not permitted", "choose a folder you own (--out) or fix its permissions"),
    errno.EROFS: ("read-only file system", "write to a writable folder (--out)"),
    errno.ENOSPC: ("no space left on device", "free some space or write to another disk (--out)"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or write to another disk (--out)"),
    errno.EFBIG: ("file too large for this file system", "write to another disk (--out)"),
    errno.ENAMETOOLONG: ("file name too long", "use a shorter --out / --name"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "pass a folder path (--out)"),
    errno.EEXIST: ("a file is in the way", "remove it or pass another --out"),
    errno.EISDIR: ("a folder is where a file was expected", "pass a file path"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.ELOOP: ("too many levels of symbolic links", "fix the link"),
    errno.EIO: ("input/output error", "check the disk, then rerun"),
}

_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")
_OUT_OF_MEMORY = re.compile(r"can't allocate memory|CUDA out of memory|out of memory", re.IGNORECASE)
_ALLOC_BYTES = re.compile(r"allocate (\d+) bytes")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def environment_failure(err: BaseException) -> Optional[str]:
    """The one-line message for a known environment failure, or None for anything else."""
    if isinstance(err, OSError) and err.errno in KNOWN_ERRNOS:
        what, fix = KNOWN_ERRNOS[err.errno]
        paths = [p for p in (err.filename, getattr(err, "filename2", None)) if p is not None]
        where = " -> ".join(_one_line(p) for p in paths) or _one_line(err.strerror or err)
        return f"{what}: {where}; {fix}"
    if isinstance(err, OSError) and err.errno is None and _SHORT_WRITE.match(str(err)):
        what, fix = KNOWN_ERRNOS[errno.ENOSPC]
        return f"a write was cut short ({err}), the disk is probably full; {fix}"
    if isinstance(err, MemoryError) or (isinstance(err, RuntimeError) and _OUT_OF_MEMORY.search(str(err))):
        size = _ALLOC_BYTES.search(str(err))
        what = f"tried to allocate {int(size.group(1)) / 2**30:.1f} GiB" if size else _one_line(err)[:160]
        return (f"out of memory ({what}); use smaller sizes (model, batch, sequence, vocabulary) "
                f"or free memory")
    found = _RUST_OS_ERROR.search(str(err))
    if found and int(found.group(1)) in KNOWN_ERRNOS:
        what, fix = KNOWN_ERRNOS[int(found.group(1))]
        return f"{what} ({_one_line(err)}); {fix}"
    return None
