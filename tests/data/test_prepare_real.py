"""prepare + load on the real shared files: exact sizes, vocabularies, splits and round trips."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlife.data import load_prepared, prepare_dataset
from attnlife.data.registry import SHAKESPEARE_SHA256

SHAKESPEARE_CHARS = 1_115_394
ENWIK8_PREFIX_BYTES = 4_154_400
TEXT8_PREFIX_CHARS = 3_010_294


def test_shakespeare_exact(prepared_real: Path, shakespeare_txt: Path):
    data = load_prepared(prepared_real, "shakespeare_char")
    text = shakespeare_txt.read_text(encoding="utf-8")
    assert len(text) == SHAKESPEARE_CHARS
    assert data.vocab_size == 65 and data.meta["itos"] == sorted(set(text))
    assert data.meta["split_tokens"] == {"train": 1_003_854, "val": 111_540}
    assert data.test is None and data.train.dtype == np.uint8
    assert data.meta["prefix"] is False and data.meta["source"]["sha256"] == SHAKESPEARE_SHA256
    assert data.decode(data.train[:200]) == text[:200]
    assert data.decode(data.val[-100:]) == text[-100:]
    full = np.concatenate([data.train, data.val])
    assert data.decode(full) == text


def test_enwik8_prefix_identity_bytes(prepared_real: Path, shared_data: Path):
    raw = (shared_data / "enwik8" / "enwik8_head_4154400").read_bytes()
    data = load_prepared(prepared_real, "enwik8")
    meta = data.meta
    assert meta["prefix"] is True and meta["prefix_tokens"] == ENWIK8_PREFIX_BYTES
    assert meta["split_tokens"] == {"train": 3_738_960, "val": 207_720, "test": 207_720}
    assert data.vocab_size == 256 and meta["itos"] == list(range(256))
    joined = np.concatenate([data.train, data.val, data.test]).tobytes()
    assert joined == raw  # identity mapping, no reordering
    assert data.encode("é<") == [0xC3, 0xA9, 0x3C]
    assert data.decode(data.encode("<mediawiki> é")) == "<mediawiki> é"


def test_text8_prefix_alphabet(prepared_real: Path, shared_data: Path):
    text = (shared_data / "text8" / "text8_head_3010294.txt").read_text(encoding="ascii")
    data = load_prepared(prepared_real, "text8")
    assert data.meta["prefix"] is True and data.meta["prefix_tokens"] == TEXT8_PREFIX_CHARS
    assert data.meta["split_tokens"] == {"train": 2_709_264, "val": 150_514, "test": 150_516}
    assert "".join(data.meta["itos"]) == " abcdefghijklmnopqrstuvwxyz" and data.vocab_size == 27
    assert data.encode(" az") == [0, 1, 26]
    assert data.decode(data.test) == text[-150_516:]
    counts = np.bincount(np.asarray(data.train), minlength=27)
    assert counts[0] == text[:2_709_264].count(" ")


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet=st.sampled_from(sorted(set("First Citizen:\nBefore we proceed any further, hear me speak.!?$&'-3;"))),
               max_size=200))
def test_char_round_trip(prepared_real: Path, s: str):
    data = load_prepared(prepared_real, "shakespeare_char")
    ids = data.encode(s)
    assert data.decode(ids) == s and all(0 <= i < 65 for i in ids)


def test_unknown_symbol_is_value_error(prepared_real: Path):
    from attnlife.data import UnknownSymbolError

    data = load_prepared(prepared_real, "shakespeare_char")
    with pytest.raises(UnknownSymbolError, match="'é' is not in the shakespeare_char"):
        data.encode("café")
    with pytest.raises(ValueError):
        data.decode([65])


def test_text_dataset_unicode_uint16(tmp_path: Path):
    """`text`: sorted distinct characters; > 256 symbols switch the bins to uint16."""
    chars = [chr(0x4E00 + i) for i in range(300)] + list("ab\n")
    body = "".join(chars[i % len(chars)] for i in range(0, 5000, 7))
    src = tmp_path / "zh.txt"
    src.write_text(body, encoding="utf-8")
    folder = prepare_dataset("text", tmp_path / "out", source=src, quiet=True, dataset_name="zh")
    assert folder == tmp_path / "out" / "zh"
    data = load_prepared(tmp_path / "out", "zh")
    assert data.meta["itos"] == sorted(set(body)) and data.vocab_size == len(set(body))
    assert data.meta["dtype"] == "uint16" and data.train.dtype == np.uint16
    assert data.meta["split_tokens"] == {"train": int(len(body) * 0.9), "val": len(body) - int(len(body) * 0.9)}
    assert data.decode(np.concatenate([data.train, data.val])) == body


def test_meta_json_and_reprepare_replaces(tmp_path: Path, shakespeare_txt: Path):
    out = tmp_path / "d"
    prepare_dataset("shakespeare_char", out, source=shakespeare_txt, quiet=True)
    first = json.loads((out / "shakespeare_char" / "meta.json").read_text())
    assert first["source"] == {"path": str(shakespeare_txt), "kind": "given", "sha256": SHAKESPEARE_SHA256,
                               "bytes": SHAKESPEARE_CHARS, "archive_sha256": None}
    assert first["stoi"]["a"] == first["itos"].index("a")
    prepare_dataset("shakespeare_char", out, source=shakespeare_txt, quiet=True)
    assert sorted(p.name for p in out.iterdir()) == ["shakespeare_char"]  # no temp dirs left


def test_sources_dir_lookup(tmp_path: Path, shared_data: Path, monkeypatch):
    monkeypatch.setenv("ATTNLIFE_SOURCES", str(shared_data))
    prepare_dataset("enwik8", tmp_path, quiet=True)
    meta = load_prepared(tmp_path, "enwik8").meta
    assert meta["source"]["kind"] == "sources_dir"
    assert meta["source"]["path"].endswith("enwik8/enwik8_head_4154400") and meta["prefix"] is True


def test_sources_dir_argument_and_reproduce_default(tmp_path: Path, shared_data: Path, monkeypatch):
    """`sources_dir` (prepare/reproduce --sources) wins over no $ATTNLIFE_SOURCES; reproduce's default
    is $ATTNLIFE_SOURCES, else ../shared/data when it exists (as `make demo` finds it)."""
    from attnlife.cli.reproduce_cmd import default_sources

    prepare_dataset("text8", tmp_path / "out", quiet=True, sources_dir=shared_data)
    meta = load_prepared(tmp_path / "out", "text8").meta
    assert meta["source"]["kind"] == "sources_dir" and meta["prefix"] is True
    repo = tmp_path / "checkout" / "repo"
    repo.mkdir(parents=True)
    monkeypatch.chdir(repo)
    assert default_sources(None) is None                     # no ../shared/data here
    (tmp_path / "checkout" / "shared" / "data").mkdir(parents=True)
    assert default_sources(None) == Path("../shared/data")
    monkeypatch.setenv("ATTNLIFE_SOURCES", str(shared_data))
    assert default_sources(None) == shared_data
    assert default_sources(tmp_path) == tmp_path


def test_zip_source_member(tmp_path: Path, shared_data: Path):
    """A zip that holds a `text8` member (here: the prefix) is read like the canonical archive."""
    import zipfile

    zpath = tmp_path / "text8.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(shared_data / "text8" / "text8_head_3010294.txt", arcname="text8")
    prepare_dataset("text8", tmp_path / "out", source=zpath, quiet=True)
    meta = load_prepared(tmp_path / "out", "text8").meta
    assert meta["source"]["path"] == f"{zpath}!text8" and meta["prefix_tokens"] == TEXT8_PREFIX_CHARS
    assert meta["source"]["sha256"] == "f3413b8d00bc41ef9dda3f92d1c7d028545d385ed476e518fdb0491f57e5a137"


def test_not_prepared_and_corrupt(tmp_path: Path, shakespeare_txt: Path):
    from attnlife.data import DatasetNotPreparedError
    from attnlife.errors import DataSourceError

    with pytest.raises(DatasetNotPreparedError,
                       match=f"dataset text8 is not prepared in {tmp_path}; run `attnlife prepare text8 --out {tmp_path}`"):
        load_prepared(tmp_path, "text8")
    prepare_dataset("shakespeare_char", tmp_path, source=shakespeare_txt, quiet=True)
    bin_path = tmp_path / "shakespeare_char" / "val.bin"
    bin_path.write_bytes(bin_path.read_bytes()[:-1])
    with pytest.raises(DataSourceError, match="val.bin is missing or not 111,540 bytes"):
        load_prepared(tmp_path, "shakespeare_char")


@pytest.mark.slow
def test_full_size_sources(tmp_path: Path):
    """A 10^8-byte text8 is the full file (fixed 90M/5M/5M, prefix false); a 10^8-byte enwik8 whose
    sha256 is not the canonical one is rejected (~10 s, ~1 GB RAM)."""
    from attnlife.errors import ChecksumError

    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(b" abcdefghijklmnopqrstuvwxyz", np.uint8)
    src = tmp_path / "text8"
    src.write_bytes(alphabet[rng.integers(0, 27, 100_000_000, dtype=np.uint8)].tobytes())
    prepare_dataset("text8", tmp_path / "out", source=src, quiet=True)
    meta = load_prepared(tmp_path / "out", "text8").meta
    assert meta["prefix"] is False and meta["prefix_tokens"] is None
    assert meta["split_tokens"] == {"train": 90_000_000, "val": 5_000_000, "test": 5_000_000}
    src.rename(tmp_path / "enwik8")
    with pytest.raises(ChecksumError, match="has the size of the full enwik8 but sha256"):
        prepare_dataset("enwik8", tmp_path / "out", source=tmp_path / "enwik8", quiet=True)
    assert not (tmp_path / "out" / "enwik8").exists()


def test_decode_ids_chars_and_bytes() -> None:
    from attnlife.data.tokenize import decode_ids, tokenize

    text = "To be, or not to be"
    tok = tokenize(text.encode(), "char")
    assert decode_ids(tok.ids.tolist(), tok.itos) == text
    raw = "naïve café".encode()
    byt = tokenize(raw, "byte")
    assert decode_ids(byt.ids.tolist(), byt.itos) == "naïve café"
    assert decode_ids(list(raw[:3]), byt.itos) == "na\ufffd"  # a cut multi-byte character
