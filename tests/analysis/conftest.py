"""Fixtures for the analysis tests: a short real training run on tiny-shakespeare (a few seconds)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TINY = ["model.n_layer=1", "model.n_head=3", "model.n_embd=24", "model.block_size=16", "model.dropout=0.0",
        "train.batch_size=8", "train.eval_iters=2", "train.eval_interval=10", "train.warmup_iters=3",
        "train.learning_rate=3e-3", "train.min_lr=3e-4", "train.device=cpu", "train.max_iters=60",
        "train.lr_decay_iters=60", "train.ckpt_every=10", "track.every=5", "track.batch_fraction=0.5"]


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory, shakespeare_txt: Path) -> Path:
    from attnlife.data import prepare_dataset

    out = tmp_path_factory.mktemp("data")
    prepare_dataset("shakespeare_char", out, source=shakespeare_txt, quiet=True)
    return out


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, prepared_data: Path) -> Path:
    """A tracked 60-step run of a 1-layer, 3-head GPT with log-spaced + every-10 checkpoints."""
    import torch

    from attnlife.config import build_config
    from attnlife.run import default_callbacks, run_training

    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = build_config("cpu", "shakespeare_char", overrides=TINY + [f"data.data_dir={prepared_data}"],
                       out_dir=str(out))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_training(cfg, default_callbacks(cfg), quiet=True)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture()
def run_copy(tmp_path: Path, trained_run: Path) -> Path:
    """A private copy of the trained run that a test may analyse and grow."""
    dst = tmp_path / "run"
    shutil.copytree(trained_run, dst)
    return dst
