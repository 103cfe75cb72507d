"""Fixtures for trainer tests: the real tiny-shakespeare, prepared once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from attnlife.config import RunConfig, build_config

TINY = ["model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=16",
        "model.dropout=0.1", "train.batch_size=4", "train.eval_iters=2", "train.eval_interval=5",
        "train.warmup_iters=3", "train.learning_rate=3e-3", "train.min_lr=3e-4",
        "train.device=cpu", "train.log_interval=1"]


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory, shakespeare_txt: Path) -> Path:
    from attnlife.data import prepare_dataset

    out = tmp_path_factory.mktemp("data")
    prepare_dataset("shakespeare_char", out, source=shakespeare_txt, quiet=True)
    return out


def tiny_overrides(prepared_dir: Path, max_iters: int, *extra: str) -> list[str]:
    """`section.key=value` overrides of a ~1k-parameter model trained for `max_iters` steps."""
    return TINY + [f"data.data_dir={prepared_dir}", f"train.max_iters={max_iters}",
                   f"train.lr_decay_iters={max_iters}", *extra]


def tiny_config(prepared_dir: Path, out: Path, max_iters: int, *extra: str) -> RunConfig:
    return build_config("cpu", "shakespeare_char", overrides=tiny_overrides(prepared_dir, max_iters, *extra),
                        out_dir=str(out))


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (the DDP and compile tests start their own processes), restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
