"""`attnlife spectra` end to end on real run directories, nanoGPT files and HF revision folders."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from attnlife.cli import app
from attnlife.model.gpt import GPT, GPTConfig
from attnlife.spectra.analyse import SpectraOptions
from attnlife.series.refs import SeriesSourceError, hf_series, run_series
from attnlife.spectra.sweep import run_sweep
from attnlife.store.spectra_arrays import read_meetings, read_spectra_arrays
from attnlife.store.checkpoints import save_checkpoint
from attnlife.store.run_dir import load_run, write_run_json

CFG = dict(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=True)


def _make_run(root, steps=(0, 10, 20)):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CFG))
    write_run_json(root, {"config": {"model": CFG}})
    for step in steps:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        save_checkpoint(root, step, model.state_dict(), {"val_loss": 1.0})
    return model


def _invoke(args):
    result = CliRunner().invoke(app, args)
    return result


def test_sweep_run_dir_end_to_end_resumable_and_parallel_equal(tmp_path) -> None:
    run = tmp_path / "run"
    model = _make_run(run)
    r1 = _invoke(["spectra", str(run), "--quiet", "--ov"])
    assert r1.exit_code == 0, r1.output
    assert "3 analysed, 0 already done" in r1.output
    table = load_run(run).spectra()
    assert set(table["step"]) == {0, 10, 20} and set(table["matrix"]) == {"qk", "ov"}
    # the table holds the values a float64 dense reference gives
    w = model.state_dict()["transformer.h.1.attn.c_attn.weight"].double()
    wq, wk = w[:16].view(2, 8, 16), w[16:32].view(2, 8, 16)
    dense = wq[1].T @ wk[1]
    s = torch.linalg.svdvals(dense) ** 2
    row = table[(table.step == 20) & (table.layer == 1) & (table["head_index"] == 1) & (table.matrix == "qk")]
    got = row.set_index("stat")["value"]
    assert got["lambda_1"] == pytest.approx(float(s[0]), rel=1e-6)
    assert got["stable_rank"] == pytest.approx(float(s.sum() / s[0]), rel=1e-6)
    assert got["elem_std"] == pytest.approx(float(dense.std(unbiased=False)), rel=1e-6)
    assert (table["head_index"] >= 0).all()  # layer means live in their own view
    means = load_run(run).spectra_layer_means()
    assert "head_index" not in means.columns and len(means) > 0
    layer_mean = means[(means.step == 20) & (means.layer == 1) & (means.matrix == "qk")]
    heads = table[(table.step == 20) & (table.layer == 1) & (table.matrix == "qk")]
    assert layer_mean.set_index("stat")["value"]["stable_rank"] == pytest.approx(
        heads[heads.stat == "stable_rank"]["value"].mean())
    arrays = read_spectra_arrays(run, "run", 20)
    assert arrays["qk.lambda"].shape == (2, 2, 8) and arrays["qk.u_top"].shape == (2, 2, 4, 16)
    assert float(arrays["qk.lambda"][1, 1, 0]) == pytest.approx(float(s[0]), rel=1e-6)
    assert "track_overlap_1" in set(table["stat"])
    assert list(read_meetings(run).columns)[:4] == ["model", "matrix", "layer", "head_index"]
    # resumable: nothing left to do
    r2 = _invoke(["spectra", str(run), "--quiet", "--ov"])
    assert "0 analysed, 3 already done" in r2.output
    # two workers give the same table
    other = tmp_path / "run2"
    other.mkdir()
    import shutil

    shutil.copytree(run / "checkpoints", other / "checkpoints")
    shutil.copy(run / "run.json", other / "run.json")
    refs = run_series(other, model="run")
    summary = run_sweep(refs, other, SpectraOptions(matrices=("qk", "ov")), workers=2, progress=False)
    assert summary.analysed == 3
    key = ["model", "step", "layer", "head_index", "matrix", "stat"]
    a = table.sort_values(key).reset_index(drop=True)
    b = load_run(other).spectra().sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_rank_split_sweep_merges_on_read(tmp_path) -> None:
    run = tmp_path / "run"
    _make_run(run, steps=(0, 5, 10, 15))
    refs = run_series(run)
    opts = SpectraOptions(elements=False)
    s0 = run_sweep(refs, run, opts, rank=0, world_size=2, progress=False)
    assert s0.analysed == 2 and s0.meetings is None  # rank 1 not done yet
    s1 = run_sweep(refs, run, opts, rank=1, world_size=2, progress=False)
    assert s1.analysed == 2 and s1.meetings is not None
    assert set(load_run(run).spectra()["step"]) == {0, 5, 10, 15}


def test_nanogpt_files_cli(tmp_path) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CFG))
    paths = []
    for it in (100, 200):
        state = {"_orig_mod." + k: v for k, v in model.state_dict().items()}
        p = tmp_path / f"ckpt_{it}.pt"
        torch.save({"model": state, "model_args": CFG, "iter_num": it}, p)
        paths.append(str(p))
    out = tmp_path / "out"
    r = _invoke(["spectra", "--nanogpt", *paths, "--out", str(out), "--quiet", "--no-elements"])
    assert r.exit_code == 0, r.output
    table = load_run(out).spectra()
    assert set(table["step"]) == {100, 200} and set(table["model"]) == {"nanogpt"}
    assert "elem_kl_gauss_nats" not in set(table["stat"])


def _save_hf(dirpath, seed):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.GPTNeoXConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, vocab_size=13, max_position_embeddings=16)
    transformers.GPTNeoXForCausalLM(cfg).save_pretrained(dirpath)
    return cfg


def test_hf_revisions_from_local_dirs_and_cache_layout(tmp_path, monkeypatch) -> None:
    local = tmp_path / "pythia-local"
    _save_hf(local / "step0", 0)
    _save_hf(local / "step1000", 1)
    out = tmp_path / "out"
    r = _invoke(["spectra", "--hf", str(local), "--revisions", "step0,step1000", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    table = load_run(out).spectra()
    assert set(table["step"]) == {0, 1000} and set(table["model"]) == {"pythia-local"}
    # the HF cache layout: models--org--name/{refs/REV, snapshots/HASH}
    cache = tmp_path / "hub"
    repo = cache / "models--org--tiny"
    _save_hf(repo / "snapshots" / "abc123", 2)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "step500").write_text("abc123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    (ref,) = hf_series("org/tiny", ["step500"])
    assert ref.step == 500 and ref.path.endswith("abc123")
    with pytest.raises(SeriesSourceError, match="revision 'step9' of org/tiny is not in the Hugging Face cache"):
        hf_series("org/tiny", ["step500", "step9"])
    r = _invoke(["spectra", "--hf", "org/tiny", "--revisions", "step9", "--out", str(out)])
    assert r.exit_code != 0


def test_bad_inputs_give_one_line_errors(tmp_path) -> None:
    from attnlife.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["spectra", str(empty)], ["spectra", "--nanogpt", str(tmp_path / "no.pt"), "--out", str(tmp_path)],
                 ["spectra", "--hf", str(empty), "--revisions", "x", "--out", str(tmp_path / "o")]):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
    assert not (tmp_path / "o").exists()
