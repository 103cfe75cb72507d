"""Append-only tables stored as atomically written Parquet parts.

A table is a directory of `part-<time_ns>-<pid>-<seq>.parquet` files. Writers only ever add
parts (temp file + rename), so a process killed at any moment leaves every earlier part intact
and readable. Part names sort in write order; on read, rows with the same key keep the value
from the newest part, so a resumed run that re-logs a step replaces rather than duplicates it.
Every part carries the run-format version in its schema metadata (`attnlife.store.run_format`);
a writer refuses a directory of a newer format, a reader carries unknown columns through.
"""
from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from attnlife.errors import RunDirError
from attnlife.store.atomic import atomic_path, clean_temp_files
from attnlife.store.damage import DamagedFileWarning
from attnlife.store.run_format import check_writable, part_metadata


class DamagedPartWarning(DamagedFileWarning):
    """A table part was skipped on read because it is truncated, not Parquet or of another schema."""


@dataclass(frozen=True)
class TableSchema:
    """Column names and Arrow types of a tidy table, and the columns that identify a row."""

    fields: tuple[tuple[str, pa.DataType], ...]
    key: tuple[str, ...]

    @property
    def arrow(self) -> pa.Schema:
        return pa.schema(list(self.fields))

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.fields]


METRICS_SCHEMA = TableSchema(
    fields=(
        ("step", pa.int64()),
        ("split", pa.string()),
        ("layer", pa.int64()),
        ("head_index", pa.int64()),
        ("layer_b", pa.int64()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("stderr", pa.float64()),
    ),
    key=("step", "split", "layer", "head_index", "layer_b", "metric"),
)

SPECTRA_SCHEMA = TableSchema(
    fields=(
        ("model", pa.string()),
        ("step", pa.int64()),
        ("layer", pa.int64()),
        ("head_index", pa.int64()),
        ("matrix", pa.string()),
        ("stat", pa.string()),
        ("value", pa.float64()),
    ),
    key=("model", "step", "layer", "head_index", "matrix", "stat"),
)

_seq_lock = threading.Lock()
_seq = 0


def _next_part_name() -> str:
    global _seq
    with _seq_lock:
        _seq += 1
        seq = _seq
    return f"part-{time.time_ns():020d}-{os.getpid():07d}-{seq:06d}.parquet"


def write_part(directory: str | os.PathLike, rows: pd.DataFrame | Mapping[str, Sequence],
               schema: TableSchema) -> Path | None:
    """Write one Parquet part atomically into `directory`; return its path (None if no rows)."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(dict(rows))
    if len(frame) == 0:
        return None
    missing = [n for n in schema.names if n not in frame.columns]
    if missing:
        raise ValueError(f"rows lack columns {missing}; expected {schema.names}")
    table = pa.Table.from_pandas(frame[schema.names], schema=schema.arrow, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **part_metadata()})
    final = Path(directory) / _next_part_name()
    with atomic_path(final) as tmp:
        pq.write_table(table, tmp)
    return final


def read_table(directory: str | os.PathLike, schema: TableSchema, dedupe: bool = True,
               strict: bool = False) -> pd.DataFrame:
    """Read every part of a table into one DataFrame (empty with the schema's columns if none).

    With `dedupe`, rows sharing the key keep the value from the newest part. A damaged part is
    skipped with a DamagedPartWarning, or raises RunDirError when `strict`. Columns a part holds
    beyond the schema's (written by a newer attnlife) are carried through after the schema's
    columns (missing values where other parts lack them) and count as part of the key, so rows
    differing only in one are never merged.
    """
    d = Path(directory)
    parts = sorted(d.glob("part-*.parquet")) if d.is_dir() else []
    frames = [f for f in (_read_part_checked(p, schema, strict) for p in parts) if f is not None]
    if not frames:
        return pd.DataFrame({n: pd.Series(dtype=t.to_pandas_dtype()) for n, t in schema.fields})
    frame = pd.concat(frames, ignore_index=True)
    extra = [c for c in frame.columns if c not in schema.names]
    if dedupe:
        frame = frame.drop_duplicates(subset=list(schema.key) + extra, keep="last").reset_index(drop=True)
    return frame


def _read_part_checked(path: Path, schema: TableSchema, strict: bool) -> pd.DataFrame | None:
    """`_read_part`, or None (with a warning) / RunDirError (strict) when the part is damaged."""
    try:
        return _read_part(path, schema)
    except (pa.ArrowException, OSError, ValueError, TypeError, KeyError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        if strict:
            raise RunDirError(f"table part {path} is damaged ({reason}); move it out of the "
                              f"run directory to read the rest") from None
        warnings.warn(f"skipping damaged table part {path} ({reason})", DamagedPartWarning,
                      stacklevel=3)
        return None


def _read_part(path: Path, schema: TableSchema) -> pd.DataFrame:
    """One part as a frame with the schema's columns and dtypes first, then any columns the
    schema does not know, as written (a newer attnlife's)."""
    table = pq.read_table(path)
    missing = [n for n in schema.names if n not in table.schema.names]
    if missing:
        raise ValueError(f"part {path} lacks columns {missing}")
    extra = [n for n in table.schema.names if n not in schema.names]
    return table.select(schema.names + extra).cast(
        pa.schema(list(schema.fields) + [table.schema.field(n) for n in extra])).to_pandas()


class PartWriter:
    """Buffers rows and flushes them as one Parquet part every `flush_rows` rows or `flush_seconds`.

    Thread-unsafe by design (one writer per process); call `flush()` at checkpoints and `close()`
    at the end. At most one flush interval of rows is lost if the process is killed.
    """

    def __init__(self, directory: str | os.PathLike, schema: TableSchema,
                 flush_rows: int = 50_000, flush_seconds: float = 30.0) -> None:
        self.directory = Path(directory)
        check_writable(self.directory.parent)   # never write into a newer run format
        self.directory.mkdir(parents=True, exist_ok=True)
        clean_temp_files(self.directory)
        self.schema = schema
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._columns: dict[str, list] = {n: [] for n in schema.names}
        self._last_flush = time.monotonic()

    def __len__(self) -> int:
        return len(self._columns[self.schema.names[0]])

    def add(self, **row: object) -> None:
        """Buffer one row given as keyword arguments, one per schema column."""
        for name in self.schema.names:
            self._columns[name].append(row[name])
        self._maybe_flush()

    def add_many(self, rows: Iterable[Mapping[str, object]]) -> None:
        """Buffer many rows (mappings with one entry per schema column)."""
        for row in rows:
            for name in self.schema.names:
                self._columns[name].append(row[name])
        self._maybe_flush()

    def add_frame(self, frame: pd.DataFrame) -> None:
        """Buffer the rows of a DataFrame that has the schema's columns."""
        for name in self.schema.names:
            self._columns[name].extend(frame[name].tolist())
        self._maybe_flush()

    def flush(self) -> Path | None:
        """Write buffered rows as one part now; return its path (None if nothing buffered)."""
        self._last_flush = time.monotonic()
        if len(self) == 0:
            return None
        path = write_part(self.directory, self._columns, self.schema)
        self._columns = {n: [] for n in self.schema.names}
        return path

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _maybe_flush(self) -> None:
        if len(self) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()
