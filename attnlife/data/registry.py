"""The dataset registry: one `DatasetSpec` per name that `attnlife prepare` knows.

A spec says where the canonical bytes come from (URL, archive member, checksums), how text becomes
token ids (`tokenizer`: "char" = sorted distinct characters, "byte" = the 256 byte values with the
identity mapping, "text8" = the fixed 27-symbol alphabet " abc...z") and how the ids are split.

Canonical checksums (see docs/data.md for provenance):
- tiny-shakespeare `input.txt`: sha256 86c4e6aa...65ed, 1,115,394 bytes.
- `enwik8.zip`: sha256 547994d9...34bc, 36,445,475 bytes (huggingface/datasets enwik8
  dataset_infos.json); its member `enwik8` has sha256 2b49720e...24a8, 100,000,000 bytes.
- `text8.zip`: no published sha256 could be confirmed; the archive size (31,344,016 bytes, the figure
  the TensorFlow word2vec tutorial checks) and the member size (100,000,000 bytes) are verified.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

SPLITS = ("train", "val", "test")
FULL_TOKENS_100M = 100_000_000


@dataclass(frozen=True)
class DatasetSpec:
    """How to obtain and tokenise one named dataset.

    `split_fractions` apply to anything that is not the canonical full file (and to char datasets
    always); `full_split_tokens` are the fixed split sizes of the canonical full file (tokens).
    `offline_paths` are globs relative to `$ATTNLIFE_SOURCES`, tried in order.
    """

    name: str
    tokenizer: str  # "char" | "byte" | "text8"
    split_fractions: tuple[float, ...]
    url: Optional[str] = None
    cache_name: Optional[str] = None  # file name of the download inside the cache folder
    download_sha256: Optional[str] = None
    download_bytes: Optional[int] = None
    member: Optional[str] = None  # the file inside the canonical zip
    full_sha256: Optional[str] = None  # of the unpacked canonical file
    full_bytes: Optional[int] = None
    full_split_tokens: Optional[tuple[int, ...]] = None
    offline_paths: tuple[str, ...] = ()
    require_canonical: bool = False  # a non-canonical source is an error, not a prefix

    @property
    def split_names(self) -> tuple[str, ...]:
        return SPLITS[: len(self.split_fractions)]


SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
ENWIK8_ZIP_SHA256 = "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc"
ENWIK8_SHA256 = "2b49720ec4d78c3c9fabaee6e4179a5e997302b3a70029f30f2d582218c024a8"
TEXT8_ALPHABET = " abcdefghijklmnopqrstuvwxyz"

DATASETS: dict[str, DatasetSpec] = {
    "shakespeare_char": DatasetSpec(
        name="shakespeare_char", tokenizer="char", split_fractions=(0.9, 0.1),
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        cache_name="input.txt", download_sha256=SHAKESPEARE_SHA256, download_bytes=1_115_394,
        full_sha256=SHAKESPEARE_SHA256, full_bytes=1_115_394,
        offline_paths=("shakespeare/input.txt", "shakespeare_char/input.txt"),
        require_canonical=True),
    "enwik8": DatasetSpec(
        name="enwik8", tokenizer="byte", split_fractions=(0.9, 0.05, 0.05),
        url="http://mattmahoney.net/dc/enwik8.zip", cache_name="enwik8.zip",
        download_sha256=ENWIK8_ZIP_SHA256, download_bytes=36_445_475, member="enwik8",
        full_sha256=ENWIK8_SHA256, full_bytes=FULL_TOKENS_100M,
        full_split_tokens=(90_000_000, 5_000_000, 5_000_000),
        offline_paths=("enwik8/enwik8.zip", "enwik8/enwik8", "enwik8/enwik8_head_*")),
    "text8": DatasetSpec(
        name="text8", tokenizer="text8", split_fractions=(0.9, 0.05, 0.05),
        url="http://mattmahoney.net/dc/text8.zip", cache_name="text8.zip",
        download_sha256=None, download_bytes=31_344_016, member="text8",
        full_sha256=None, full_bytes=FULL_TOKENS_100M,
        full_split_tokens=(90_000_000, 5_000_000, 5_000_000),
        offline_paths=("text8/text8.zip", "text8/text8", "text8/text8_head_*")),
    "text": DatasetSpec(name="text", tokenizer="char", split_fractions=(0.9, 0.1)),
}


def dataset_names() -> list[str]:
    """Names `attnlife prepare` accepts, in registry order."""
    return list(DATASETS)
