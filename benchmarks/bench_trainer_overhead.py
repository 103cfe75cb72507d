"""Trainer overhead: ms per iteration of `run_training` vs a bare training loop, same process.

Both train the `cpu` preset (4 layers, 4 heads, 128 dims, block 64, batch 12, float32 on CPU)
from the same initial weights on the same batches (BatchSampler, same seed): the bare loop does
lr setting, forward, backward, grad clipping, AdamW step, zero_grad, `loss.item()`. The trainer
adds its machinery (metric rows, StepRecord events, the progress bar, the timing).

Eval and checkpoint steps are excluded from the trainer's timing: the wall time between
consecutive `on_step_end` events is measured, and intervals whose top of loop ran an eval or
a checkpoint are dropped. The statistic is the median ms/iteration, runs alternate
trainer / bare `--repeats` times and the best median of each is kept (the machine is shared).
Because whole-run medians swing with the load of a shared machine, the script also times the
machinery alone (wall time per step outside `Trainer._update`, which holds the bare loop's
work plus the trainer's autocast / grad-scaler / accumulation wrappers, so this slightly
underestimates) and prints (bare + machinery) / bare as a load-independent estimate.
Target (issue 2): ratio trainer / bare <= 1.05.

    python benchmarks/bench_trainer_overhead.py [--iters 150] [--repeats 2] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from attnlife.config import build_config
from attnlife.data import BatchSampler, load_prepared, prepare_dataset
from attnlife.events import Callback
from attnlife.model import GPT, GPTConfig
from attnlife.run import run_training
from attnlife.train.checkpoint_series import is_checkpoint_step
from attnlife.train.schedule import lr_at
from attnlife.train.trainer import Trainer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "shakespeare" / "input.txt"


class StepClock(Callback):
    """Wall-clock time of every on_step_end event."""

    def __init__(self) -> None:
        self.times: dict[int, float] = {}

    def on_step_end(self, rec) -> None:
        self.times[rec.step] = time.perf_counter()


def trainer_ms(config) -> tuple[float, float]:
    """Median ms between consecutive steps whose next loop top had no eval and no checkpoint,
    and the median ms of those steps spent outside `Trainer._update` (the machinery alone)."""
    clock = StepClock()
    update_ms: dict[int, float] = {}
    original = Trainer._update

    def timed_update(self, step):
        t0 = time.perf_counter()
        out = original(self, step)
        update_ms[step] = (time.perf_counter() - t0) * 1e3
        return out

    Trainer._update = timed_update
    try:
        with tempfile.TemporaryDirectory() as out:
            config.out_dir = out
            run_training(config, [clock], quiet=False)
    finally:
        Trainer._update = original
    tc = config.train
    steps = [s for s in range(tc.max_iters - 1)
             if not is_checkpoint_step(s + 1, tc.max_iters, tc.ckpt_log_max, tc.ckpt_every)
             and (s + 1) % tc.eval_interval != 0]
    gaps = {s: (clock.times[s + 1] - clock.times[s]) * 1e3 for s in steps}
    return (statistics.median(gaps.values()),
            statistics.median(gaps[s] - update_ms[s + 1] for s in steps))


def bare_ms(config, train_ids, vocab_size: int) -> float:
    """Median ms per iteration of a plain loop with the trainer's math and batches."""
    m, tc = config.model, config.train
    torch.manual_seed(tc.seed)
    model = GPT(GPTConfig(block_size=m.block_size, vocab_size=vocab_size, n_layer=m.n_layer,
                          n_head=m.n_head, n_embd=m.n_embd, dropout=m.dropout, bias=m.bias))
    opt = model.configure_optimizer(tc.weight_decay, tc.learning_rate, (tc.beta1, tc.beta2))
    sampler = BatchSampler(train_ids, m.block_size, tc.batch_size, seed=tc.seed)
    torch.manual_seed(tc.seed)
    times = []
    for step in range(tc.max_iters):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, tc.learning_rate, tc.min_lr, tc.warmup_iters, tc.lr_decay_iters)
        x, y = sampler.next()
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None, help="holds a prepared shakespeare_char")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or tmp
        if args.data_dir is None:
            prepare_dataset("shakespeare_char", data_dir, source=SHARED, quiet=True)
        data = load_prepared(data_dir, "shakespeare_char")
        config = build_config("cpu", "shakespeare_char", overrides=[
            f"data.data_dir={data_dir}", f"train.max_iters={args.iters}", "train.device=cpu",
            "train.eval_iters=2"])
        trainer, bare, machinery = [], [], []
        for _ in range(args.repeats):
            total, extra = trainer_ms(config)
            trainer.append(total)
            machinery.append(extra)
            bare.append(bare_ms(config, data.train, data.vocab_size))
    t, b = min(trainer), min(bare)
    print("## Trainer overhead (issue 2)\n")
    print(f"`cpu` preset (4x4x128, block 64, batch 12), shakespeare_char, CPU float32, "
          f"{args.threads} thread(s), torch {torch.__version__}; {args.iters} iterations per run, "
          f"{args.repeats} alternating runs each, best median ms/iteration; eval and checkpoint "
          f"steps excluded from the trainer's timing.\n")
    print("| loop | ms / iteration (median) | all runs |")
    print("|---|---:|---|")
    print(f"| bare loop (baseline) | {b:.2f} | {', '.join(f'{v:.2f}' for v in bare)} |")
    print(f"| `run_training` | {t:.2f} | {', '.join(f'{v:.2f}' for v in trainer)} |")
    print(f"| `run_training` machinery alone (outside the update) | {min(machinery):.3f} | "
          f"{', '.join(f'{v:.3f}' for v in machinery)} |")
    print(f"\nload-independent estimate (bare + machinery) / bare: {(b + min(machinery)) / b:.4f}")
    print(f"ratio trainer / bare (target <= 1.05): {t / b:.3f}")


if __name__ == "__main__":
    main()
