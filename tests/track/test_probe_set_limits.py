"""The probe set at its edges: the window against the model's context (refused one token past it,
by the API and by `attnlife track` as one `error:` line), the stored set reused only for its own
record (the record and the done-marker key are on-disk formats that earlier outputs were written
with), a damaged or foreign stored set named and rebuilt, and the exact one-line errors about the
ids themselves."""
from __future__ import annotations

import hashlib
import json
import locale
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from attnlife.store import damage
from attnlife.store.damage import DamagedFileWarning
from attnlife.track import probe_pass as P

OPTS = P.ProbeOptions(sequences=3, seq_len=8, repeat_sequences=2, seed=3)
# the record OUT/probe/probe_set.safetensors carries for OPTS, source "tokens:/data/val.npy" and a model
# of vocab_size 7 and context 16, spelled out: a probe set written before must still be recognised
RECORD = ('{"context": 16, "options": {"query_chunk": 256, "repeat_half": 0, "repeat_sequences": 2, "seed": 3, '
          '"seq_len": 8, "sequences": 3, "span_threshold": 0.01}, "source": "tokens:/data/val.npy", "vocab_size": 7}')
SOURCE = "tokens:/data/val.npy"
NO_TEXT = ("no probe text: pass --text FILE or --tokens FILE (a run directory uses its dataset's val split)")


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Damage warnings are given once per process: each test starts with none given."""
    monkeypatch.setattr(damage, "_WARNED", set())


def _tokens(n: int = 40, vocab: int = 7) -> np.ndarray:
    return np.arange(n) % vocab


def _stored(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as h:
        return {k: h.get_tensor(k) for k in h.keys()}, h.metadata()


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


# ---- the window against the model's context

def test_seq_len_up_to_the_context_is_the_window_one_more_is_refused_naming_the_fix() -> None:
    tokens = _tokens(100)
    assert P.probe_window(P.ProbeOptions(seq_len=16), 16) == 16
    assert P.make_probe_set(tokens, 7, 16, P.ProbeOptions(sequences=2, seq_len=16))["ids"].shape == (2, 16)
    assert P.make_probe_set(tokens, 7, 16, P.ProbeOptions(sequences=2, seq_len=15))["ids"].shape == (2, 15)
    for call in (lambda o: P.probe_window(o, 16), lambda o: P.make_probe_set(tokens, 7, 16, o)):
        with pytest.raises(P.ProbeSetError) as err:
            call(P.ProbeOptions(sequences=2, seq_len=17))
        assert str(err.value) == ("--seq-len 17 is longer than the model's context of 16 tokens; pass --seq-len 16 "
                                  "or less (0 = min(context, 256))")
    assert P.probe_window(P.ProbeOptions(seq_len=0), 16) == 16        # 0: the context, up to 256
    assert P.probe_window(P.ProbeOptions(seq_len=0), 257) == 256
    assert P.probe_window(P.ProbeOptions(seq_len=0), 256) == 256


def test_a_stored_probe_set_does_not_excuse_a_window_longer_than_the_context(tmp_path: Path) -> None:
    opts = P.ProbeOptions(sequences=2, seq_len=17)
    made = P.load_or_make_probe_set(tmp_path, _tokens(100), 7, 32, opts, SOURCE)   # a model of context 32
    assert made["ids"].shape == (2, 17)
    with pytest.raises(P.ProbeSetError, match=r"^--seq-len 17 is longer than the model's context of 16 tokens; "):
        P.load_or_make_probe_set(tmp_path, None, 7, 16, opts, SOURCE)              # then one of context 16


def test_track_refuses_a_seq_len_past_the_block_size_as_one_error_line(tmp_path: Path, capsys) -> None:
    from tests.track.test_probe_pass import CFG, _error_line, _nanogpt_files, _val_bin

    paths = _nanogpt_files(tmp_path, iters=(100,))
    out = tmp_path / "out"
    args = ["track", "--nanogpt", *paths, "--out", str(out), "--tokens", str(_val_bin(tmp_path)),
            "--sequences", "4", "--quiet", "--seq-len", str(CFG["block_size"] + 1)]
    line = _error_line(args, capsys)
    assert line == ("error: --seq-len 17 is longer than the model's context of 16 tokens; pass --seq-len 16 or "
                    "less (0 = min(context, 256))")
    assert not (out / "probe" / P.PROBE_SET_FILE).exists()               # refused before anything is written


# ---- the stored probe set: reused for its own record only

def test_the_stored_set_is_reused_for_its_record_without_the_text(tmp_path: Path) -> None:
    path = tmp_path / "probe" / P.PROBE_SET_FILE
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                  # nothing here is damaged
        made = P.load_or_make_probe_set(tmp_path, _tokens(), 7, 16, OPTS, SOURCE)
        assert _same(made, P.make_probe_set(_tokens(), 7, 16, OPTS))
        stored, meta = _stored(path)
        assert meta == {"record": RECORD} and _same(stored, made)
        assert _same(P.load_or_make_probe_set(tmp_path, None, 7, 16, OPTS, SOURCE), made)   # no text needed
        for options, source in ((P.ProbeOptions(3, 8, 2, 0, 4), SOURCE), (OPTS, "tokens:/data/other.npy")):
            with pytest.raises(P.ProbeSetError) as err:                 # another record: not this set
                P.load_or_make_probe_set(tmp_path, None, 7, 16, options, source)
            assert str(err.value) == NO_TEXT
        other = P.load_or_make_probe_set(tmp_path, _tokens(), 7, 16, P.ProbeOptions(3, 8, 2, 0, 4), SOURCE)
        assert not torch.equal(other["repeated"], made["repeated"])     # rebuilt for the new seed, stored
        assert json.loads(_stored(path)[1]["record"])["options"]["seed"] == 4


def test_a_set_an_earlier_release_wrote_is_returned_as_stored(tmp_path: Path) -> None:
    path = tmp_path / "probe" / P.PROBE_SET_FILE
    path.parent.mkdir()
    kept = {"ids": torch.full((3, 8), 5, dtype=torch.int64), "repeated": torch.full((2, 8), 6, dtype=torch.int64)}
    save_file(kept, str(path), metadata={"record": RECORD})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _same(P.load_or_make_probe_set(tmp_path, _tokens(), 7, 16, OPTS, SOURCE), kept)
        save_file(kept, str(path))                                      # no record at all: not ours, rebuilt
        assert _same(P.load_or_make_probe_set(tmp_path, _tokens(), 7, 16, OPTS, SOURCE),
                     P.make_probe_set(_tokens(), 7, 16, OPTS))


def test_a_set_made_for_another_models_shape_is_not_reused(tmp_path: Path) -> None:
    """The window (seq_len 0: the context) and the repeated tokens (drawn from the vocabulary) depend
    on the model: a set made for a larger one would index past this model's embeddings."""
    opts = P.ProbeOptions(sequences=2, seq_len=0, repeat_sequences=4)
    big = P.load_or_make_probe_set(tmp_path, _tokens(400), 50, 32, opts, SOURCE)
    assert big["ids"].shape == (2, 32) and int(big["repeated"].max()) >= 7
    for vocab, context in ((7, 16), (7, 32), (50, 16)):
        with pytest.raises(P.ProbeSetError) as err:
            P.load_or_make_probe_set(tmp_path, None, vocab, context, opts, SOURCE)
        assert str(err.value) == NO_TEXT
    small = P.load_or_make_probe_set(tmp_path, _tokens(400), 7, 16, opts, SOURCE)
    assert _same(small, P.make_probe_set(_tokens(400), 7, 16, opts)) and small["ids"].shape == (2, 16)
    assert _same(P.load_or_make_probe_set(tmp_path, None, 7, 16, opts, SOURCE), small)


def test_no_text_and_no_stored_set_names_both_ways_to_give_one(tmp_path: Path) -> None:
    with pytest.raises(P.ProbeSetError) as err:
        P.load_or_make_probe_set(tmp_path, None, 7, 16, OPTS, SOURCE)
    assert str(err.value) == NO_TEXT
    assert not (tmp_path / "probe").exists()


def test_a_stored_set_of_other_tensors_is_named_and_rebuilt_from_its_source(tmp_path: Path) -> None:
    path = tmp_path / "probe" / P.PROBE_SET_FILE
    path.parent.mkdir()
    save_file({"ids": torch.zeros(3, 8, dtype=torch.int64)}, str(path), metadata={"record": RECORD})
    with pytest.warns(DamagedFileWarning) as got:
        probe = P.load_or_make_probe_set(tmp_path, _tokens(), 7, 16, OPTS, SOURCE)
    assert [str(w.message) for w in got] == [f"{path} is damaged (it holds ['ids'], not ids and repeated); "
                                             f"rebuilt from its source"]
    assert _same(probe, P.make_probe_set(_tokens(), 7, 16, OPTS)) and _same(_stored(path)[0], probe)


def test_a_damaged_set_without_the_text_says_how_to_rebuild_it(tmp_path: Path) -> None:
    path = tmp_path / "probe" / P.PROBE_SET_FILE
    path.parent.mkdir()
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":")     # a header cut short
    try:
        safe_open(str(path), framework="pt")
    except Exception as err:  # noqa: BLE001 - safetensors' own (Rust) error type
        reason = str(err).strip().splitlines()[0]
    with pytest.warns(DamagedFileWarning) as got, pytest.raises(P.ProbeSetError) as err:
        P.load_or_make_probe_set(tmp_path, None, 7, 16, OPTS, SOURCE)
    assert str(err.value) == NO_TEXT
    assert [str(w.message) for w in got] == [f"{path} is damaged ({reason}); pass --text or --tokens to rebuild it"]


# ---- the ids themselves

def test_negative_ids_and_ids_past_the_vocabulary_are_named(tmp_path: Path) -> None:
    opts = P.ProbeOptions(sequences=1, seq_len=4, repeat_sequences=1)
    with pytest.raises(P.ProbeSetError) as err:
        P.make_probe_set(np.array([0, 1, -3, 2, 1]), 7, 16, opts)
    assert str(err.value) == "probe text holds a negative token id (-3); token ids are 0 .. vocab_size - 1"
    big = np.array([0, 1, 9, 2, 1])
    want = "probe tokens hold id 9 >= the model's vocab_size 7; the ids were made for another model"
    for source in ({}, {"source": "tokens:/data/val.npy"}, {"source": "text:/data/val.bin"}):
        with pytest.raises(P.ProbeSetError) as err:                     # not a .bin of tokens: no dtype to doubt
            P.make_probe_set(big, 7, 16, opts, **source)
        assert str(err.value) == want
    data = tmp_path / "data"
    data.mkdir()
    (data / "meta.json").write_text('{"dtype": "uint32"}')
    with pytest.raises(P.ProbeSetError) as err:                         # a .bin: the dtype it was read as
        P.make_probe_set(big, 7, 16, opts, source=f"tokens:{data / 'val.bin'}")
    assert str(err.value) == f"{want}, or the file holds another dtype than it was read as (dtype uint32 from " \
                             f"{data / 'meta.json'})"


def test_the_repeat_half_is_at_most_128_and_at_most_half_the_context() -> None:
    long = _tokens(400)
    rep = P.make_probe_set(long, 7, 600, P.ProbeOptions(sequences=2, seq_len=300, repeat_sequences=2))["repeated"]
    assert rep.shape == (2, 256) and torch.equal(rep[:, :128], rep[:, 128:])
    rep = P.make_probe_set(long, 7, 7, P.ProbeOptions(sequences=2, seq_len=6, repeat_sequences=2, repeat_half=9))
    assert rep["repeated"].shape == (2, 6) and rep["repeated"].dtype == torch.int64   # half 7 // 2 = 3


# ---- the done-marker key

def test_the_options_key_is_the_format_done_markers_were_written_with() -> None:
    probe = {"repeated": torch.ones(1, 4, dtype=torch.int64), "ids": torch.arange(6).view(2, 3)}
    digest = hashlib.sha256(probe["ids"].numpy().tobytes() + probe["repeated"].numpy().tobytes()).hexdigest()
    assert digest[:16] == "75167959183bbbaf"                            # ids then repeated, no separator
    assert P.options_key(P.ProbeOptions(), probe) == (
        '{"options": {"query_chunk": 256, "repeat_half": 0, "repeat_sequences": 16, "seed": 0, "seq_len": 0, '
        '"sequences": 16, "span_threshold": 0.01}, "probe": "75167959183bbbaf"}')


# ---- token files and text

def test_a_load_error_without_a_message_is_named_by_its_type(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "t.npy"
    np.save(path, np.arange(3))

    def silent(*_a, **_k):
        raise EOFError()

    monkeypatch.setattr(P.np, "load", silent)
    with pytest.raises(P.ProbeSetError) as err:
        P.read_token_file(path)
    assert str(err.value) == f"cannot read token ids from {path} (EOFError); save them with " \
                             f"np.save(path, ids.astype(np.int64))"


def test_an_npz_archive_or_a_broken_zip_named_npy_is_refused_by_name(tmp_path: Path) -> None:
    archive = tmp_path / "ids.npy"
    with open(archive, "wb") as f:                                      # np.savez would add .npz to the name
        np.savez(f, ids=np.arange(5), mask=np.ones(5))
    with pytest.raises(P.ProbeSetError) as err:
        P.read_token_file(archive)
    assert str(err.value) == (f"{archive} is an .npz archive (ids, mask), not one array of token ids; save them "
                              f"with np.save(path, ids.astype(np.int64))")
    broken = tmp_path / "cut.npy"
    broken.write_bytes(archive.read_bytes()[:40])                       # a zip's magic, then nothing whole
    with pytest.raises(P.ProbeSetError) as err:
        P.read_token_file(broken)
    assert str(err.value) == (f"cannot read token ids from {broken} (File is not a zip file); save them with "
                              f"np.save(path, ids.astype(np.int64))")


def test_text_is_read_as_utf8_under_an_ascii_locale(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"a": 0, "é": 1, "?": 2}, unk_token="?"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")            # one id per character
    folder = tmp_path / "tok"
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="?").save_pretrained(folder)
    text = tmp_path / "t.txt"
    text.write_text("aéa", encoding="utf-8")
    old = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C")
        assert locale.getencoding() != "UTF-8"                          # what open() would read with
        ids = P.tokenize_text(text, str(folder))
    finally:
        locale.setlocale(locale.LC_CTYPE, old)
    assert ids.tolist() == [0, 1, 0]
