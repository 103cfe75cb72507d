"""`load_prepared`: a prepared dataset folder -> memory-mapped splits + encode/decode."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from attnlife.errors import AttnlifeError, DataSourceError


class DatasetNotPreparedError(AttnlifeError):
    """The dataset folder (or its meta.json) is missing: `attnlife prepare` has not been run."""


class UnknownSymbolError(AttnlifeError, ValueError):
    """Text to encode holds a symbol outside the dataset's vocabulary."""


class PreparedDataset:
    """A prepared dataset: `meta` (dict), `vocab_size`, `splits` (split -> np.memmap ids [N]).

    `train`, `val`, `test` are the split arrays (`test` None if absent).
    """

    def __init__(self, name: str, folder: Path, meta: dict, splits: dict[str, np.memmap]):
        self.name = name
        self.folder = folder
        self.meta = meta
        self.splits = splits
        self.vocab_size = int(meta["vocab_size"])
        self.tokenizer = meta["tokenizer"]
        self._itos = meta["itos"]
        self._stoi = meta.get("stoi")

    @property
    def train(self) -> np.memmap:
        return self.splits["train"]

    @property
    def val(self) -> np.memmap:
        return self.splits["val"]

    @property
    def test(self) -> Optional[np.memmap]:
        return self.splits.get("test")

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (UTF-8 bytes for byte-level datasets); UnknownSymbolError if a
        character is outside the vocabulary."""
        if self.tokenizer == "byte":
            return list(text.encode("utf-8"))
        try:
            return [self._stoi[ch] for ch in text]
        except KeyError as err:
            raise UnknownSymbolError(f"symbol {err.args[0]!r} is not in the {self.name} "
                                     f"vocabulary of {self.vocab_size}; use only its characters") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids; byte-level ids are decoded as UTF-8 with U+FFFD for broken sequences."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise UnknownSymbolError(f"token id {bad[0]} is outside the {self.name} vocabulary "
                                     f"0..{self.vocab_size - 1}")
        if self.tokenizer == "byte":
            return bytes(ids).decode("utf-8", errors="replace")
        return "".join(self._itos[i] for i in ids)


def load_prepared(data_dir: str | os.PathLike, name: str) -> PreparedDataset:
    """Open `data_dir/name` (written by `prepare_dataset`), memory-mapping every split read-only."""
    folder = Path(data_dir) / name
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise DatasetNotPreparedError(f"dataset {name} is not prepared in {data_dir}; run "
                                      f"`attnlife prepare {name} --out {data_dir}`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        sizes = dict(meta["split_tokens"])
        dtype = np.dtype(meta["dtype"])
    except (ValueError, KeyError, TypeError) as err:
        raise DataSourceError(f"{meta_path} is unreadable ({err}); rerun `attnlife prepare`") from None
    splits = {}
    for split, n_tokens in sizes.items():
        path = folder / f"{split}.bin"
        expected = int(n_tokens) * dtype.itemsize
        if not path.is_file() or path.stat().st_size != expected:
            raise DataSourceError(f"{path} is missing or not {expected:,} bytes; rerun "
                                  f"`attnlife prepare {meta.get('recipe', name)} --out {data_dir}`")
        splits[split] = np.memmap(path, dtype=dtype, mode="r", shape=(int(n_tokens),))
    return PreparedDataset(name, folder, meta, splits)
