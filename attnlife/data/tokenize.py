"""Pure tokenisation and splitting: bytes -> token ids + vocabulary; ids -> split sizes.

Tokenisers (all character level):
- "char": vocab = the sorted distinct Unicode characters of the UTF-8 text; id = rank in that list.
- "byte": vocab = the 256 byte values, identity mapping (id == byte value); the text is not decoded.
- "text8": the fixed 27 symbols " abcdefghijklmnopqrstuvwxyz" (space = 0, a = 1, ..., z = 26).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from attnlife.data.registry import TEXT8_ALPHABET
from attnlife.errors import DataSourceError

MAX_UINT16_VOCAB = 1 << 16


@dataclass(frozen=True)
class Tokenized:
    """ids: [N] token ids already in the storage dtype; itos: id -> symbol (str, or int byte value
    for "byte")."""

    ids: np.ndarray
    itos: list
    tokenizer: str

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def dtype(self) -> str:
        """Storage dtype of the .bin files: uint8 if vocab <= 256, else uint16."""
        return "uint8" if self.vocab_size <= 256 else "uint16"


def decode_ids(ids: list[int], itos: list) -> str:
    """Token ids -> text with a dataset's `itos` (meta.json): symbols (str) are joined; byte
    values (int, tokenizer "byte") are decoded as UTF-8, undecodable bytes replaced by U+FFFD."""
    if itos and isinstance(itos[0], int):
        return bytes(int(itos[i]) for i in ids).decode("utf-8", errors="replace")
    return "".join(str(itos[i]) for i in ids)


def tokenize(data: bytes, tokenizer: str, what: str = "source") -> Tokenized:
    """Turn raw source bytes into ids [N] (N = characters, or bytes for "byte")."""
    if tokenizer == "byte":
        return Tokenized(np.frombuffer(data, dtype=np.uint8), list(range(256)), "byte")
    if tokenizer == "text8":
        return _tokenize_text8(data, what)
    if tokenizer == "char":
        return _tokenize_chars(data, what)
    raise ValueError(f"unknown tokenizer {tokenizer!r}")


def _tokenize_text8(data: bytes, what: str) -> Tokenized:
    table = np.full(256, 255, dtype=np.uint8)  # 255 marks a byte outside the alphabet
    for i, ch in enumerate(TEXT8_ALPHABET):
        table[ord(ch)] = i
    ids = table[np.frombuffer(data, dtype=np.uint8)]  # uint8 [N]
    bad = np.flatnonzero(ids == 255)
    if bad.size:
        offset = int(bad[0])
        raise DataSourceError(f"{what} has byte 0x{data[offset]:02x} at offset {offset:,} outside "
                              f"text8's alphabet (a-z and space); use `attnlife prepare text` for "
                              f"other text")
    return Tokenized(ids, list(TEXT8_ALPHABET), "text8")


def _tokenize_chars(data: bytes, what: str) -> Tokenized:
    """ids via a code-point lookup table: O(N), vocab sorted by code point (= Python str order)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataSourceError(f"{what} is not UTF-8 (byte 0x{data[err.start]:02x} at offset "
                              f"{err.start:,}); convert it to UTF-8 or use enwik8-style bytes") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    present = np.flatnonzero(np.bincount(points))
    if present.size > MAX_UINT16_VOCAB:
        raise DataSourceError(f"{what} has {present.size:,} distinct characters, more than "
                              f"{MAX_UINT16_VOCAB:,}; use a smaller text")
    dtype = np.uint8 if present.size <= 256 else np.uint16
    table = np.zeros(int(present[-1]) + 1, dtype=dtype)
    table[present] = np.arange(present.size)
    return Tokenized(table[points], [chr(int(p)) for p in present], "char")


def split_sizes(n_tokens: int, fractions: Sequence[float],
                fixed: Optional[Sequence[int]] = None) -> tuple[int, ...]:
    """Split sizes (tokens) of a stream of `n_tokens`.

    `fixed` (canonical full files) is used as is. Otherwise train = int(n * f_train),
    val = int(n * f_val) when there is a test split (test = the rest), else val = the rest.
    Every split must hold at least one token.
    """
    if fixed is not None:
        if sum(fixed) != n_tokens:
            raise ValueError(f"fixed splits {fixed} do not sum to {n_tokens}")
        return tuple(int(s) for s in fixed)
    sizes = [int(n_tokens * f) for f in fractions[:-1]]
    sizes.append(n_tokens - sum(sizes))
    if min(sizes) < 1:
        raise DataSourceError(f"source has only {n_tokens} tokens, too few for a "
                              f"{'/'.join(f'{f:g}' for f in fractions)} split; use a longer text")
    return tuple(sizes)
