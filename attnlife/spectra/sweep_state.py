"""What a spectra sweep has done, per options.

A checkpoint's arrays file (`OUT/spectra/arrays/<model>/step_XXXXXXX.safetensors`) carries the
options it was computed with in its metadata (`options`, JSON). It counts as done for a request
when its matrices include the requested ones and every other option (top_k, elements, bins,
sample_rows, seed) is equal; a file without that record (older sweeps) or that cannot be read
counts as not done, so a rerun with new options (`--ov`, `--sample-rows`, ...) computes what is
missing and `--force` recomputes everything.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

def options_record(options: Any) -> str:
    """The options of a sweep as sorted JSON (stored in each arrays file's metadata)."""
    return json.dumps(asdict(options), sort_keys=True)


def covers(stored: dict, wanted: dict) -> bool:
    """True when results computed with `stored` options answer a request for `wanted`."""
    if not set(wanted.get("matrices", ())) <= set(stored.get("matrices", ())):
        return False
    return all(stored.get(k) == v for k, v in wanted.items() if k != "matrices")


def is_done(arrays_file: Path, options: Any) -> bool:
    """Whether `arrays_file` exists, is readable and was computed with options covering `options`."""
    if not arrays_file.is_file():
        return False
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(arrays_file), framework="pt") as handle:
            record = (handle.metadata() or {}).get("options")
        stored = json.loads(record) if record else None
    except (SafetensorError, OSError, ValueError):
        return False
    return isinstance(stored, dict) and covers(stored, json.loads(options_record(options)))
