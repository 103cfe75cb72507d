"""The run-directory format version: written everywhere, checked before every write.

`RUN_FORMAT` is the version of the on-disk layout this attnlife writes. It is stored
- in `run.json` under `format_version`,
- in the Arrow schema metadata of every table part and analysis table (`attnlife.format_version`).
A directory written before versioning existed carries no version and counts as format 1.

Readers read any version: columns and run.json keys they do not know are carried through (a
table keeps unknown columns, and rows that differ only in one are kept apart; a resumed run keeps
run.json keys it does not know). Writers refuse a directory of a newer format with one line
(`NewerFormatError`), because they cannot know what the newer layout requires: `check_writable`
runs when a writer takes the run lock, when run.json is written and when a table writer opens.
Bump `RUN_FORMAT` when an older attnlife would damage what a newer one writes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from attnlife.errors import RunDirError
from attnlife.store.layout import RunPaths

RUN_FORMAT = 1
FORMAT_KEY = "format_version"
PART_FORMAT_KEY = b"attnlife.format_version"


class NewerFormatError(RunDirError):
    """The run directory was written by a newer attnlife (a higher run-format version)."""


def part_metadata() -> dict[bytes, bytes]:
    """The schema metadata entry every table part carries."""
    return {PART_FORMAT_KEY: str(RUN_FORMAT).encode()}


def _as_version(value: object) -> Optional[int]:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def recorded_format(run_dir: str | os.PathLike) -> Optional[int]:
    """The newest format version found in RUN: run.json's, else the newest part of each table's
    (None when nothing says; unreadable files are left to their readers to report)."""
    paths = RunPaths(Path(run_dir))
    path = paths.run_json
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(record, dict) and FORMAT_KEY in record:
            return _as_version(record[FORMAT_KEY])
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    found = [v for v in (_newest_part_format(d) for d in (paths.metrics, paths.spectra, paths.sweep))
             if v is not None]
    return max(found) if found else None


def _newest_part_format(table_dir: Path) -> Optional[int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        newest = max(table_dir.glob("part-*.parquet"), default=None)
        if newest is None:
            return None
        meta = pq.read_schema(newest).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    return _as_version(meta.get(PART_FORMAT_KEY, b"").decode() or None)


def check_format_version(version: object, where: str | os.PathLike) -> None:
    """NewerFormatError (one line) when `version` is newer than what this attnlife writes."""
    found = _as_version(version)
    if found is not None and found > RUN_FORMAT:
        raise NewerFormatError(f"{where} was written by a newer attnlife (run format {found}, this "
                               f"one writes format {RUN_FORMAT}) and is left untouched; upgrade "
                               f"attnlife to write into it, or pass another output directory")


def check_writable(run_dir: str | os.PathLike) -> None:
    """Refuse (NewerFormatError) to write into a run directory of a newer format."""
    check_format_version(recorded_format(run_dir), run_dir)
