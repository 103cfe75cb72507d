"""`prepare_dataset`: source bytes -> `OUT/<name>/{train,val[,test]}.bin + meta.json`, atomically.

Each .bin is the raw little-endian array of token ids (uint8 if vocab <= 256 else uint16), so
`np.memmap(path, dtype=meta["dtype"], mode="r")` reads it back. Everything is validated before
the output folder is created; the folder is written under a temporary name and renamed into place,
so a failure leaves no `OUT/<name>` behind. An existing `OUT/<name>` is replaced only when it is
an attnlife dataset (a meta.json with `meta_version`, nothing but split .bin files beside it);
anything else there (a user's folder or file) is refused, never moved or deleted.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Optional

from attnlife.data.registry import DATASETS, DatasetSpec, dataset_names
from attnlife.data.sources import SourceBytes, resolve_source
from attnlife.data.tokenize import Tokenized, split_sizes, tokenize
from attnlife.errors import AttnlifeError, ChecksumError, OutputConflictError
from attnlife.store.atomic import atomic_dir, clean_temp_files

META_VERSION = 1
DATASET_FILES = {"meta.json", "train.bin", "val.bin", "test.bin"}
BAR_MIN_BYTES = 16 << 20


class UnknownDatasetError(AttnlifeError):
    """`attnlife prepare` was given a name that is not in the registry."""


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for `name`, or UnknownDatasetError listing the known names."""
    if name not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; choose one of "
                                  f"{', '.join(dataset_names())}")
    return DATASETS[name]


def is_canonical(spec: DatasetSpec, src: SourceBytes) -> bool:
    """True when the source is the canonical full file (sha256 when known, else its size)."""
    if spec.full_sha256 is not None:
        return src.sha256 == spec.full_sha256
    return spec.full_bytes is not None and len(src.data) == spec.full_bytes


def check_source(spec: DatasetSpec, src: SourceBytes) -> bool:
    """Return whether the source is a prefix; raise ChecksumError where it must be canonical."""
    if spec.url is None:  # `text`: any file, no canonical version
        return False
    canonical = is_canonical(spec, src)
    if canonical:
        return False
    if spec.require_canonical:
        raise ChecksumError(f"{src.path} has sha256 {src.sha256[:12]}..., not the canonical "
                            f"{spec.name} ({str(spec.full_sha256)[:12]}...); use "
                            f"`attnlife prepare text --source FILE` for other text")
    if spec.full_bytes is not None and len(src.data) == spec.full_bytes:
        raise ChecksumError(f"{src.path} has the size of the full {spec.name} but sha256 "
                            f"{src.sha256[:12]}..., expected {str(spec.full_sha256)[:12]}...; "
                            f"download it again")
    return True


def prepare_dataset(name: str, out_dir: str | os.PathLike,
                    source: str | os.PathLike | None = None, quiet: bool = False, *,
                    dataset_name: Optional[str] = None, sources_dir: str | os.PathLike | None = None) -> Path:
    """Prepare dataset `name` into `out_dir/<dataset_name or name>`; return that folder.

    Sources are looked up as `attnlife.data.sources` says; `sources_dir` is the folder of offline
    copies (default `$ATTNLIFE_SOURCES`).

    Splits: canonical enwik8/text8 -> 90M/5M/5M tokens; their prefixes -> int(0.9N)/int(0.05N)/rest
    with meta "prefix": true; shakespeare_char and text -> int(0.9N)/rest.
    """
    from tqdm import tqdm

    spec = get_spec(name)
    folder = dataset_name or name
    if not folder or "/" in folder or folder in (".", ".."):
        raise UnknownDatasetError(f"--name {folder!r} is not a plain folder name; use e.g. "
                                  f"--name my_text")
    final = Path(out_dir) / folder
    check_target(final)
    src = resolve_source(spec, source, quiet=quiet, sources_dir=sources_dir)
    # a stage bar only where a user waits (the full 100 MB files); small inputs take < 1 s
    with tqdm(total=2, desc=f"prepare {folder}", disable=quiet or len(src.data) < BAR_MIN_BYTES,
              unit="stage") as bar:
        tok = tokenize(src.data, spec.tokenizer, what=src.path)  # content errors first
        prefix = check_source(spec, src)
        fixed = spec.full_split_tokens if (spec.url and not prefix) else None
        sizes = split_sizes(len(tok.ids), spec.split_fractions, fixed)
        bar.update(1)
        meta = build_meta(spec, folder, src, tok, sizes, prefix)
        clean_temp_files(final.parent, final_name=folder)
        check_target(final)
        with atomic_dir(final) as tmp:
            start = 0
            for split, size in zip(spec.split_names, sizes):
                tok.ids[start:start + size].astype(tok.dtype, copy=False).tofile(tmp / f"{split}.bin")
                start += size
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
        bar.update(1)
    return final


def check_target(final: Path) -> None:
    """Raise OutputConflictError unless `final` is absent, an empty folder or an attnlife dataset."""
    parent = final.parent
    if parent.exists() and not parent.is_dir():
        raise OutputConflictError(f"--out {parent} is a file, not a folder; pass a folder path")
    if not final.exists() and not final.is_symlink():
        return
    if final.is_symlink() or not final.is_dir():
        raise OutputConflictError(f"{final} exists and is not a dataset folder (a file); pass "
                                  f"another --name or --out, or move it away")
    entries = {p.name for p in final.iterdir()}
    if not entries:
        return
    foreign = sorted(entries - DATASET_FILES)
    if foreign or not _is_dataset_meta(final / "meta.json"):
        what = f"it holds {', '.join(foreign[:3])}" if foreign else "it has no attnlife meta.json"
        raise OutputConflictError(f"{final} exists and is not an attnlife dataset ({what}); pass "
                                  f"another --name or --out, or move that folder away")


def _is_dataset_meta(path: Path) -> bool:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "meta_version" in meta and "split_tokens" in meta


def build_meta(spec: DatasetSpec, folder: str, src: SourceBytes, tok: Tokenized,
               sizes: tuple[int, ...], prefix: bool) -> dict:
    """meta.json content: vocab (itos/stoi), dtype, split sizes, source provenance, prefix flag."""
    stoi = None if tok.tokenizer == "byte" else {s: i for i, s in enumerate(tok.itos)}
    return {
        "meta_version": META_VERSION,
        "dataset": folder,
        "recipe": spec.name,
        "tokenizer": tok.tokenizer,
        "vocab_size": tok.vocab_size,
        "dtype": tok.dtype,
        "itos": tok.itos,
        "stoi": stoi,
        "split_tokens": dict(zip(spec.split_names, sizes)),
        "total_tokens": int(sum(sizes)),
        "prefix": prefix,
        "prefix_tokens": int(sum(sizes)) if prefix else None,
        "canonical_tokens": spec.full_bytes if spec.url else None,
        "source": {"path": src.path, "kind": src.kind, "sha256": src.sha256,
                   "bytes": len(src.data), "archive_sha256": src.archive_sha256},
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
