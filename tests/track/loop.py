"""A small real training loop (our GPT on tiny-shakespeare characters) with the tracker attached.

Run as a script for the SIGKILL test: `python tests/track/loop.py RUN_DIR MAX_STEPS [SLEEP_S]`.
Resumes from the newest checkpoint in RUN_DIR (checkpoint every 4 steps).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import torch

from attnlife.model.gpt import GPT, GPTConfig
from attnlife.store.checkpoints import latest_checkpoint, load_state_dict, load_trainer_state, save_checkpoint
from attnlife.store.metrics_table import MetricWriter
from attnlife.track.tracker import Tracker

REPO = Path(__file__).resolve().parents[2]


def shakespeare_ids(n_chars: int = 20_000) -> torch.Tensor:
    from tests.conftest import shared_data_root

    text = (shared_data_root() / "shakespeare" / "input.txt").read_text()[:n_chars]
    vocab = sorted(set(text))
    return torch.tensor([vocab.index(c) for c in text], dtype=torch.long)


def train_loop(run_dir: Optional[Path], max_steps: int, tracker: Optional[Tracker], seed: int = 0,
               sleep_s: float = 0.0, ckpt_every: int = 0, writer: Optional[MetricWriter] = None) -> list[float]:
    """Train a 2-layer GPT; returns the training losses. Resumes from run_dir's newest checkpoint."""
    torch.manual_seed(seed)
    data = shakespeare_ids()
    model = GPT(GPTConfig(block_size=32, vocab_size=int(data.max()) + 1, n_layer=2, n_head=2, n_embd=32))
    opt = model.configure_optimizer(0.1, 3e-3, (0.9, 0.99))
    start = 0
    found = latest_checkpoint(run_dir) if run_dir is not None and ckpt_every else None
    if found is not None:
        model.load_state_dict(load_state_dict(found[1]))
        state = load_trainer_state(found[1])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start = found[0]
    losses = []
    for step in range(start, max_steps):
        if ckpt_every and step % ckpt_every == 0 and step > start:
            if writer is not None:
                writer.flush()
            save_checkpoint(run_dir, step, model.state_dict(), {"step": step},
                            {"optimizer": opt.state_dict(), "rng": torch.get_rng_state()})
        ix = torch.randint(0, len(data) - 33, (8,))
        x = torch.stack([data[i:i + 32] for i in ix])
        y = torch.stack([data[i + 1:i + 33] for i in ix])
        if tracker is not None:  # the weights after `step` updates, before this step's update
            tracker.maybe_track(step, model, (x, y))
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if writer is not None:
            writer.log(step, "loss", loss.item())
        print(f"STEP {step}", flush=True)
        time.sleep(sleep_s)
    return losses


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    torch.set_num_threads(1)
    run = Path(sys.argv[1])
    tracker = Tracker(every=1, batch_fraction=0.25, min_sequences=2, run_dir=run)
    tracker.writer.flush_rows = 100
    train_loop(run, int(sys.argv[2]), tracker, sleep_s=float(sys.argv[3]) if len(sys.argv) > 3 else 0.0,
               ckpt_every=4, writer=tracker.writer)
    tracker.close()
