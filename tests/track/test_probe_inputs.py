"""The probe pass's inputs at their edges, with the exact one-line errors: token files (.npy that
cannot be read, pickles, floats; .bin of a broken length; read-only maps), text without a
tokenizer, a run without a dataset, unreadable series, and the shapes read from config.json."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from attnlife.series.refs import CheckpointRef
from attnlife.store.run_dir import write_run_json
from attnlife.track import probe_pass as P


def _numpy_error(path: Path) -> str:
    """The first line of what np.load says about `path` (the reason the message quotes)."""
    try:
        np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        return str(err).strip().splitlines()[0]
    raise AssertionError("np.load read it")


FIX = "save them with np.save(path, ids.astype(np.int64))"


def test_an_unreadable_npy_is_named_with_numpys_reason_cut_at_160_characters(tmp_path: Path) -> None:
    header = ("{'descr': '<" + "q" * 300 + "', 'fortran_order': False, 'shape': (3,), }").encode().ljust(511) + b"\n"
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header)
    reason = _numpy_error(bad)
    assert len(reason) > 161
    with pytest.raises(P.ProbeSetError) as err:
        P.read_token_file(bad)
    assert str(err.value) == f"cannot read token ids from {bad} ({reason[:160]}); {FIX}"


def test_a_pickled_npy_is_refused_unread_and_floats_are_not_token_ids(tmp_path: Path) -> None:
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([1, "two", None], dtype=object), allow_pickle=True)
    with pytest.raises(P.ProbeSetError) as err:                             # loading it would run pickle code
        P.read_token_file(pickled)
    assert str(err.value) == f"cannot read token ids from {pickled} ({_numpy_error(pickled)}); {FIX}"
    floats = tmp_path / "f.npy"
    np.save(floats, np.array([1.0, 2.0]))
    with pytest.raises(P.ProbeSetError) as err:
        P.read_token_file(floats)
    assert str(err.value) == f"{floats} holds float64 values, not integer token ids; {FIX}"
    ints = tmp_path / "i.npy"
    np.save(ints, np.array([[3, 1], [4, 1]], dtype=np.int32))
    assert P.read_token_file(ints).tolist() == [3, 1, 4, 1]


def test_a_bin_of_a_broken_length_and_a_read_only_map(tmp_path: Path) -> None:
    odd = tmp_path / "train.bin"
    odd.write_bytes(b"\x01\x00\x02")
    with pytest.raises(P.ProbeSetError) as err:
        P.read_token_file(odd)
    assert str(err.value) == (f"{odd} has 3 bytes, not a whole number of uint16 ids (read as uint16 (nanoGPT's "
                              f"default; no meta.json with a dtype beside it)); put the meta.json of its dataset "
                              f"beside it")
    good = tmp_path / "val.bin"
    np.array([5, 6, 7], dtype=np.uint16).tofile(good)
    ids = P.read_token_file(good)
    assert ids.tolist() == [5, 6, 7] and not ids.flags.writeable            # mapped read-only: never written
    (tmp_path / "meta.json").write_text(json.dumps({"dtype": "uint8"}))
    assert P.read_token_file(good).tolist() == [5, 0, 6, 0, 7, 0]           # the dataset's dtype wins
    (tmp_path / "meta.json").write_text("{not json")
    assert P.token_file_dtype(good)[0] == "uint16"


def test_text_without_a_tokenizer_and_an_empty_text(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("héllo")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(P.ProbeSetError) as err:
        P.tokenize_text(text, str(empty))
    assert str(err.value) == (f"{empty} holds no tokenizer (tokenizer.json, tokenizer_config.json, vocab.json, ...), "
                              f"so --text cannot be tokenized; copy the model's tokenizer files there or pass "
                              f"--tokens FILE (.npy of token ids)")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer_config.json").write_text("{")
    with pytest.raises(P.ProbeSetError) as err:
        P.tokenize_text(text, str(broken))
    assert str(err.value) == (f"no tokenizer in {broken} (JSONDecodeError); pass --tokens FILE of token ids "
                              f"instead of --text")                         # the class of transformers' error


def test_a_run_without_a_dataset_is_refused_by_name(tmp_path: Path) -> None:
    for data in ({}, {"data_dir": str(tmp_path)}, {"dataset": "shakespeare_char"}):
        run = tmp_path / f"run{len(data)}{''.join(data)}"
        write_run_json(run, {"config": {"data": data}})
        with pytest.raises(P.ProbeSetError) as err:
            P.run_val_tokens(run)
        assert str(err.value) == f"{run}/run.json names no dataset (config.data); pass --tokens or --text"


def test_no_readable_checkpoint_names_the_first_failure(tmp_path: Path) -> None:
    garbage = tmp_path / "ckpt_100.pt"
    garbage.write_bytes(b"not a checkpoint")
    refs = [CheckpointRef("nanogpt", 100, "nanogpt", str(garbage)), CheckpointRef("ours", 5, "run", str(tmp_path / "no"))]
    with pytest.raises(P.ProbeSetError) as err:
        P.first_readable_model(refs)
    assert str(err.value) == (f"none of the 2 checkpoints could be read (first: nanogpt step 100: cannot read "
                              f"{garbage} as a nanoGPT ckpt.pt (RuntimeError); expected torch.save({{'model': ..., "
                              f"'model_args': ...}}))")


@pytest.mark.parametrize("cfg, want", [
    ({"vocab_size": 50, "n_positions": 64, "max_position_embeddings": 99}, (50, 64)),
    ({"vocab_size": 50, "max_position_embeddings": 99}, (50, 99)),
    ({"vocab_size": 50}, (50, 2048)),
])
def test_hf_shape_comes_from_config_json_without_loading(tmp_path: Path, cfg: dict, want: tuple) -> None:
    (tmp_path / "config.json").write_text(json.dumps(cfg))                  # no weights: nothing to load
    assert P.series_shape(CheckpointRef("m", 0, "hf", str(tmp_path))) == want


def test_our_shape_comes_from_the_loaded_model(tmp_path: Path) -> None:
    from tests.track.test_probe_pass import CFG, _nanogpt_files

    from attnlife.series.refs import nanogpt_series

    ref = nanogpt_series(_nanogpt_files(tmp_path, iters=(100,)))[0]
    assert P.series_shape(ref) == (CFG["vocab_size"], CFG["block_size"])


def test_a_tokenizer_that_yields_nothing_is_named_and_one_token_or_none_is_fine(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"a": 0, "b": 1, "?": 2}, unk_token="?"))
    tok.pre_tokenizer = pre_tokenizers.Split("x", "removed")                # every "x" vanishes
    folder = tmp_path / "tok"
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="?").save_pretrained(folder)
    xs = tmp_path / "xs.txt"
    xs.write_text("xxxx")
    with pytest.raises(P.ProbeSetError) as err:
        P.tokenize_text(xs, str(folder))
    assert str(err.value) == (f"the tokenizer in {folder} turned 4 characters of {xs} into no tokens; it is not "
                              f"this model's tokenizer: pass --tokens FILE instead")
    one = tmp_path / "one.txt"
    one.write_text("b")
    got = P.tokenize_text(one, str(folder))
    assert got.tolist() == [1] and got.dtype == np.int64
    blank = tmp_path / "blank.txt"
    blank.write_text("")
    none = P.tokenize_text(blank, str(folder))
    assert none.tolist() == [] and none.dtype == np.int64                   # token ids even when there are none


def test_meta_json_and_text_are_read_as_utf8_under_any_locale(tmp_path: Path) -> None:
    """`attnlife prepare` writes meta.json with its vocabulary unescaped (ensure_ascii=False), and text
    files are UTF-8: both are read as UTF-8 even where the locale's encoding is ASCII (checked in a
    process started under the C locale without UTF-8 coercion)."""
    import os
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    np.array([1, 2], dtype=np.uint8).tofile(data / "val.bin")
    (data / "meta.json").write_text(json.dumps({"dtype": "uint8", "chars": "é"}, ensure_ascii=False), encoding="utf-8")
    assert P.token_file_dtype(data / "val.bin")[0] == "uint8"
    text = tmp_path / "t.txt"
    text.write_text("ébé", encoding="utf-8")
    no_tok = tmp_path / "none"
    no_tok.mkdir()
    with pytest.raises(P.ProbeSetError):
        P.tokenize_text(text, str(no_tok))
    code = ("import sys, locale\n"
            "from attnlife.track import probe_pass as P\n"
            "print(locale.getpreferredencoding(False))\n"
            f"print(P.token_file_dtype({str(data / 'val.bin')!r})[0])\n")
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONCOERCECLOCALE="0", PYTHONUTF8="0")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    encoding, dtype = done.stdout.split()
    assert encoding != "UTF-8" and dtype == "uint8"
