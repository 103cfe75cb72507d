"""`attnlife spectra` on damaged inputs: corrupt checkpoints are skipped, NaN weights give NaN
statistics, bad HF configs and contradictory nanoGPT model_args give one line, "done" follows
the options, and killing the sweep leaves no orphaned workers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from attnlife.model.gpt import GPT, GPTConfig
from attnlife.store.checkpoints import save_checkpoint
from attnlife.store.run_dir import load_run, write_run_json
from tests.faults.conftest import attnlife_cmd, cli, subprocess_env, tree_snapshot

CFG = dict(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=True)


def _make_run(root: Path, steps=(0, 1, 2, 3)) -> dict[int, dict]:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CFG))
    write_run_json(root, {"config": {"model": CFG}})
    states = {}
    for step in steps:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        states[step] = {k: v.clone() for k, v in model.state_dict().items()}
        save_checkpoint(root, step, states[step], {})
    return states


def _ckpt_file(root: Path, step: int) -> Path:
    return root / "checkpoints" / f"step_{step:07d}" / "model.safetensors"


def _one_error(result) -> str:
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert result.err.strip().splitlines()[-1] == result.error_lines[0]
    return result.error_lines[0]


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_corrupt_checkpoint_is_reported_and_skipped(tmp_path: Path, capsys, damage: str) -> None:
    run = tmp_path / "run"
    _make_run(run)
    f = _ckpt_file(run, 2)
    f.write_bytes(f.read_bytes()[:200] if damage == "truncated" else os.urandom(4096))
    before = tree_snapshot(tmp_path, skip=("run/spectra",))
    result = cli("spectra", str(run), "--quiet", capsys=capsys)
    assert result.code == 0, result.err
    warnings = result.err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: skipped run step 2: cannot read ")
    assert "corrupt or truncated" in warnings[0]
    assert "spectra: 3 analysed, 0 already done, 1 unreadable (skipped)" in result.out
    table = load_run(run).spectra()
    assert sorted(set(table.step)) == [0, 1, 3]
    assert (run / "spectra" / "meetings" / "run.parquet").is_file()  # trajectory over the readable ones
    assert tree_snapshot(tmp_path, skip=("run/spectra",)) == before


def test_no_readable_checkpoint_is_one_error_line(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    _make_run(run, steps=(0, 1))
    for step in (0, 1):
        _ckpt_file(run, step).write_bytes(b"\x00" * 64)
    line = _one_error(cli("spectra", str(run), "--quiet", capsys=capsys))
    assert line.startswith("error: none of the 2 checkpoints could be read (first: skipped run step 0")


def test_nan_weights_give_nan_statistics(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    states = _make_run(run, steps=(0, 1, 2))
    bad = {k: v.clone() for k, v in states[1].items()}
    bad["transformer.h.1.attn.c_attn.weight"][:8] = float("nan")  # W_Q of head 0 in layer 1
    bad["transformer.h.0.attn.c_proj.weight"][:] = float("inf")    # W_O of every head in layer 0
    save_checkpoint(run, 1, bad, {})
    result = cli("spectra", str(run), "--quiet", "--ov", capsys=capsys)
    assert result.code == 0 and result.err == "", result.err
    t = load_run(run).spectra()
    t = t[t.stat == "stable_rank"]
    at = t.set_index(["step", "layer", "head_index", "matrix"])["value"]
    assert np.isnan(at[(1, 1, 0, "qk")]) and np.isnan(at[(1, 0, 0, "ov")]) and np.isnan(at[(1, 0, 1, "ov")])
    means = load_run(run).spectra_layer_means()
    means = means[means.stat == "stable_rank"].set_index(["step", "layer", "matrix"])["value"]
    assert np.isnan(means[(1, 0, "ov")])  # layer mean of NaN heads only
    # untouched heads keep the float64 reference value
    w = bad["transformer.h.1.attn.c_attn.weight"].double()
    dense = w[8:16].T @ w[24:32]  # head 1: W_Q^T W_K, [D, D]
    lam = torch.linalg.svdvals(dense) ** 2
    assert at[(1, 1, 1, "qk")] == pytest.approx(float(lam.sum() / lam[0]), rel=1e-6)
    assert means[(1, 1, "qk")] == pytest.approx(at[(1, 1, 1, "qk")], rel=1e-12)  # NaN-skipping mean
    assert np.isfinite(at[(0, 1, 0, "qk")]) and np.isfinite(at[(2, 1, 0, "qk")])


def test_done_follows_the_options_and_force_redoes(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    _make_run(run, steps=(0, 1))

    def sweep(*flags: str) -> str:
        result = cli("spectra", str(run), "--quiet", *flags, capsys=capsys)
        assert result.code == 0, result.err
        return result.out.splitlines()[0]

    assert sweep().startswith("spectra: 2 analysed, 0 already done")
    assert set(load_run(run).spectra().matrix) == {"qk"}
    assert sweep("--ov").startswith("spectra: 2 analysed, 0 already done")  # ov was missing
    assert set(load_run(run).spectra().matrix) == {"qk", "ov"}
    assert sweep().startswith("spectra: 0 analysed, 2 already done")  # qk is covered by qk+ov
    assert sweep("--ov").startswith("spectra: 0 analysed, 2 already done")
    assert sweep("--sample-rows", "8").startswith("spectra: 2 analysed, 0 already done")
    assert "elem_kl_gauss_se_nats" in set(load_run(run).spectra().stat)
    assert sweep("--sample-rows", "8").startswith("spectra: 0 analysed, 2 already done")
    assert sweep("--sample-rows", "8", "--force").startswith("spectra: 2 analysed, 0 already done")


def _hf_dir(root: Path, config_text: str) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    rev = root / "model" / "step0"
    rev.mkdir(parents=True)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=11, n_positions=16))
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if "attn" in k}, str(rev / "model.safetensors"))
    (rev / "config.json").write_text(config_text)
    return root / "model"


@pytest.mark.parametrize("config_text,fragment", [
    ('{"model_type": "gpt2", "n_layer": 1, ', "config.json is not readable JSON"),
    ('[1, 2]', "holds a JSON list, not an object"),
    ('{"model_type": "gpt_neox", "num_attention_heads": 2, "num_hidden_layers": 1}', "lacks a usable hidden_size"),
    ('{"model_type": "gpt2", "n_head": 2, "n_embd": 16}', "model config lacks n_layer/n_head/n_embd"),
    ('{"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 32}', "the model config contradicts the weights"),
])
def test_bad_hf_config_is_one_line(tmp_path: Path, capsys, config_text: str, fragment: str) -> None:
    model = _hf_dir(tmp_path, config_text)
    before = tree_snapshot(tmp_path, skip=("out",))
    line = _one_error(cli("spectra", "--hf", str(model), "--revisions", "step0", "--out", str(tmp_path / "out"),
                          "--quiet", capsys=capsys))
    assert fragment in line, line
    assert tree_snapshot(tmp_path, skip=("out",)) == before


@pytest.mark.parametrize("model_args,fragment", [
    (dict(CFG, n_embd=32), "the model config contradicts the weights"),
    (dict(CFG, n_embd=8, n_head=2), "the model config contradicts the weights"),
    (dict(CFG, n_layer=3), "no weight named 'transformer.h.2.attn.c_attn.weight'"),
    (dict(CFG, n_head=0), "is not a valid shape"),
])
def test_nanogpt_model_args_contradicting_weights(tmp_path: Path, capsys, model_args: dict, fragment: str) -> None:
    torch.manual_seed(0)
    good = {"model": GPT(GPTConfig(**CFG)).state_dict(), "model_args": CFG, "iter_num": 10}
    torch.save(good, tmp_path / "ckpt_10.pt")
    torch.save(dict(good, model_args=model_args, iter_num=20), tmp_path / "ckpt_20.pt")
    before = tree_snapshot(tmp_path, skip=("out",))
    result = cli("spectra", "--nanogpt", str(tmp_path / "ckpt_10.pt"), str(tmp_path / "ckpt_20.pt"),
                 "--out", str(tmp_path / "out"), "--quiet", capsys=capsys)
    assert result.code == 0 and "1 analysed, 0 already done, 1 unreadable (skipped)" in result.out, result.err
    (warning,) = result.err.strip().splitlines()
    assert warning.startswith("warning: skipped nanogpt step 20: ") and fragment in warning, warning
    alone = cli("spectra", "--nanogpt", str(tmp_path / "ckpt_20.pt"), "--out", str(tmp_path / "out2"),
                "--quiet", capsys=capsys)
    assert fragment in _one_error(alone)
    assert tree_snapshot(tmp_path, skip=("out", "out2")) == before


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _blocked_on_fifo(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/wchan").read_text().strip() == "wait_for_partner"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="needs Linux /proc")
def test_killed_sweep_leaves_no_orphaned_workers(tmp_path: Path) -> None:
    """Two workers block inside a checkpoint read (a FIFO nobody writes); SIGKILL the sweep."""
    model = _hf_dir(tmp_path, json.dumps({"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 16}))
    (model / "step1").mkdir()
    (model / "step1" / "config.json").write_text((model / "step0" / "config.json").read_text())
    for rev in ("step0", "step1"):
        (model / rev / "model.safetensors").unlink(missing_ok=True)
        os.mkfifo(model / rev / "model.safetensors")
    proc = subprocess.Popen(attnlife_cmd("spectra", "--hf", str(model), "--revisions", "step0,step1",
                                         "--out", str(tmp_path / "out"), "--workers", "2", "--quiet"),
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            workers = [p for p in _children(proc.pid) if _blocked_on_fifo(p)]
            if len(workers) == 2:
                break
            time.sleep(0.2)
        assert len(workers) == 2, f"workers never started reading (exit {proc.poll()}): {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"
        everyone = _children(proc.pid)
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in everyone):
            time.sleep(0.1)
        assert not any(_alive(p) for p in everyone), [p for p in everyone if _alive(p)]
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.stderr.close()
