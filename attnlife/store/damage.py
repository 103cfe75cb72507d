"""Damaged files in a run directory: skipped (or rebuilt) with one warning, never a traceback.

Every reader of the store that meets a file it cannot read (truncated, not its format, a foreign
schema) calls `warn_damaged(path, reason, fix)`: one `DamagedFileWarning` naming the file, what is
wrong, and the command that rebuilds it, or saying that attnlife rebuilt it (files attnlife made
and can make again, such as the probe set) or that nothing can (snapshots of a finished run).
The CLI prints each as one `warning: ...` line on stderr; `strict=True` readers raise instead.
"""
from __future__ import annotations

import os
import warnings


class DamagedFileWarning(UserWarning):
    """A file of a run directory was skipped (or rebuilt) because it is damaged."""


def first_line(err: BaseException, limit: int = 160) -> str:
    """The first non-empty line of an exception's message (its type name if it has none)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return (lines[0] if lines else type(err).__name__)[:limit]


_WARNED: set[str] = set()   # messages already given in this process: one warning per file


def warn_damaged(path: str | os.PathLike, reason: str, fix: str,
                 category: type[Warning] = DamagedFileWarning, stacklevel: int = 3) -> None:
    """Warn (one line, once per process) that `path` is damaged (`reason`) and was skipped or
    rebuilt (`fix`)."""
    _warn_once(f"{path} is damaged ({reason}); {fix}", category, stacklevel + 1)


def warn_damaged_text(message: str, stacklevel: int = 3) -> None:
    """Warn once with a message that already names the damaged file (a reader's one-line error)."""
    _warn_once(str(message), DamagedFileWarning, stacklevel + 1)


def _warn_once(message: str, category: type[Warning], stacklevel: int) -> None:
    text = " ".join(message.split())
    if text not in _WARNED:
        _WARNED.add(text)
        warnings.warn(text, category, stacklevel=stacklevel)
