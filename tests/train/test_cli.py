"""`attnlife train` / `attnlife sample` end to end on the prepared real tiny-shakespeare."""
from __future__ import annotations

import subprocess
import sys

import torch
from typer.testing import CliRunner

from attnlife.cli import app
from attnlife.errors import AttnlifeError, ConfigError, RunDirError
from attnlife.store.run_dir import load_run

runner = CliRunner()


def test_train_then_sample(prepared_dir, tmp_path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "run"
    args = ["train", "--preset", "cpu", "--dataset", "shakespeare_char", "--data-dir", str(prepared_dir),
            "--out", str(out), "--max-iters", "30", "--batch-size", "8", "--lr", "3e-3", "--seed", "7",
            "--device", "cpu", "--no-track", "--track-every", "3", "--quiet",
            "--set", "model.n_layer=2", "--set", "model.n_embd=64", "--set", "train.warmup_iters=5",
            "--set", "train.eval_iters=4", "--set", "train.lr_decay_iters=30"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == f"run directory: {out}"
    assert lines[1].startswith("step 30: train loss ") and " val loss " in lines[1]
    assert lines[2] == "checkpoints: 7"  # 0 1 2 4 8 16 30
    run = load_run(out)
    cfg = run.config
    assert cfg["train"]["batch_size"] == 8 and cfg["train"]["seed"] == 7 and cfg["model"]["n_layer"] == 2
    assert cfg["track"]["enabled"] is False and cfg["track"]["every"] == 3
    m = run.metrics()
    val = m[(m.metric == "eval_loss") & (m.split == "val")].set_index("step")["value"]
    assert val[30] < val[0] - 0.5  # 30 real updates learn character frequencies

    sample = runner.invoke(app, ["sample", str(out), "--tokens", "40", "--seed", "1", "--prompt", "ROMEO:"])
    assert sample.exit_code == 0, sample.output
    text, speed = sample.output.rstrip("\n").rsplit("\n", 1)
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 40
    assert speed.endswith("tokens/s (40 tokens from step 30, KV cache, timed after a 16-token warm-up)")
    greedy = [runner.invoke(app, ["sample", str(out), "--tokens", "20", "--temperature", "0", "--step", "8"]
                            + flag).output.rsplit("\n", 2)[0] for flag in ([], ["--no-cache"])]
    assert greedy[0] == greedy[1] and len(greedy[0]) == 20  # cache == recompute within a block

    bad = runner.invoke(app, ["sample", str(out), "--prompt", "\u20ac"])  # not in the vocabulary
    assert isinstance(bad.exception, AttnlifeError), bad.exception

    again = runner.invoke(app, ["train", "--out", str(out), "--no-resume", "--data-dir", str(prepared_dir)])
    assert isinstance(again.exception, RunDirError)


def test_bad_override_is_one_line_exit_2(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "attnlife", "train", "--out", str(tmp_path / "r"),
                           "--set", "train.nope=1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: override: unknown field train.nope")
    assert not (tmp_path / "r").exists()
    for bad in (["--set", "train.max_iters"], ["--set", "train.max_iters=ten"], ["--set", "nosection.x=1"]):
        result = runner.invoke(app, ["train", "--out", str(tmp_path / "r")] + bad)
        assert isinstance(result.exception, ConfigError), bad


def test_sample_errors(tmp_path) -> None:
    result = runner.invoke(app, ["sample", str(tmp_path / "missing")])
    assert isinstance(result.exception, RunDirError)
