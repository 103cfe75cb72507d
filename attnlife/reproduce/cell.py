"""One protocol cell end to end: train (or resume), measure inference speed, analyse, report, mark done.

`run_cell(job)` is the unit of work the grid hands to a worker process (it is picklable and
importable). Steps, each skipped when already done:
  1. train `OUT/runs/run{k}/{dataset}/seed{s}` with the cell's callbacks (resuming from the
     newest checkpoint; skipped when the final checkpoint and its clock entry exist);
  2. inference speed: `inference_samples` sequences of `inference_tokens` new tokens from the
     final checkpoint on the training device (batch 1, KV cache, temperature 0.8, top-k 200,
     after one untimed warm-up call), tokens/s = new tokens / seconds, averaged over sequences
     (the published avg_inference_tokens_per_second);
  3. `attnlife.explain.analyze_run` and `attnlife.report.report_run`;
  4. `RUN/reproduce/done.json`, written atomically last: the cell's numbers (`cell_numbers`).
A cell is done when done.json exists and records every post-processing step as done (a marker
written by an older build that lacked one, `unavailable`, makes a rerun finish the cell).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from attnlife.errors import TrainingInterrupted
from attnlife.explain import analyze_run
from attnlife.report import report_run
from attnlife.track.generation import SampleQuality
from attnlife.reproduce.callbacks import TrainClock, WithoutCrossLayer, read_clock
from attnlife.reproduce.protocol import SCALES, Cell, cell_config
from attnlife.store.atomic import atomic_path

DONE_FILE = Path("reproduce") / "done.json"
UNAVAILABLE = "unavailable"
DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class CellJob:
    """Everything a worker needs to run one cell (picklable)."""

    out_dir: str
    cell: Cell
    scale: str
    data_dir: str
    device: str = "auto"
    overrides: tuple[str, ...] = ()
    quiet: bool = True
    threads: int = 0          # torch threads for training (0: leave as is)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.cell.rel_dir


@dataclass(frozen=True)
class CellOutcome:
    """What happened to a cell: status `trained` | `skipped` | `failed`, and a one-line message."""

    cell: Cell
    status: str
    seconds: float
    message: str = ""
    steps: dict = field(default_factory=dict)


def read_done(run_dir: str | Path) -> Optional[dict]:
    """The cell's done marker, or None when it has not finished (or, with one warning, when the
    marker is damaged: the cell then counts as not done and a rerun rebuilds it)."""
    from attnlife.store.damage import first_line, warn_damaged

    path = Path(run_dir) / DONE_FILE
    if not path.is_file():
        return None
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(done, dict) or not isinstance(done.get("numbers", {}), dict):
            raise ValueError("not a done record")
        return done
    except (OSError, ValueError, UnicodeDecodeError) as err:
        warn_damaged(path, first_line(err), "the cell counts as not done; rerunning `attnlife "
                     "reproduce` rebuilds it")
        return None


def is_done(run_dir: str | Path) -> bool:
    """Finished, with every post-processing step (analysis, report) done."""
    done = read_done(run_dir)
    return done is not None and UNAVAILABLE not in done.get("post", {}).values()


@contextlib.contextmanager
def single_process_env() -> Iterator[None]:
    """Hide torchrun's RANK/WORLD_SIZE/LOCAL_RANK: a cell is one process, not a DDP rank."""
    saved = {k: os.environ.pop(k) for k in DIST_ENV if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def run_cell(job: CellJob) -> CellOutcome:
    """Run (or finish) one cell; never raises, a failure comes back as status `failed`."""
    t0 = time.perf_counter()
    if is_done(job.run_dir):
        return CellOutcome(job.cell, "skipped", 0.0, "already done")
    try:
        with single_process_env():
            steps = _run_steps(job)
    except TrainingInterrupted:  # SIGTERM/SIGINT: the checkpoint is written; stop the grid
        raise
    except Exception as err:  # noqa: BLE001 - reported per cell; the grid goes on
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        return CellOutcome(job.cell, "failed", time.perf_counter() - t0, last)
    return CellOutcome(job.cell, "trained", time.perf_counter() - t0, "", steps)


def _run_steps(job: CellJob) -> dict:
    from attnlife.run import default_callbacks, run_training

    if job.threads > 0:  # the analysis' thread-pool libraries can leave torch on every core
        import torch

        torch.set_num_threads(job.threads)
    scale = SCALES[job.scale]
    config = cell_config(job.cell, scale, job.out_dir, job.data_dir, job.device, job.overrides)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    max_iters = config.train.max_iters
    if not _trained(job.run_dir, max_iters):
        callbacks: list[Any] = [TrainClock(job.run_dir)]
        tracking = default_callbacks(config)
        callbacks += [WithoutCrossLayer(c) for c in tracking] if job.cell.run == 1 else tracking
        if job.cell.run == 3:
            callbacks.append(SampleQuality(config.track.every, max_iters, scale.quality_samples,
                                           config.train.seed))
        run_training(config, callbacks, quiet=job.quiet, resume=True)
    seconds["train"] = time.perf_counter() - t
    t = time.perf_counter()
    inference = measure_inference(job.run_dir, config.train.device, scale.inference_samples,
                                  scale.inference_tokens, config.train.seed)
    seconds["inference"] = time.perf_counter() - t
    post = {}
    for key, fn in (("analysis", analyze_run), ("report", report_run)):
        t = time.perf_counter()
        fn(job.run_dir, quiet=True)
        post[key] = "ok"
        seconds[key] = time.perf_counter() - t
    numbers = cell_numbers(job.run_dir, max_iters)
    numbers["avg_inference_tokens_per_second"] = inference
    done = {"cell": asdict(job.cell), "scale": scale.name, "numbers": numbers, "post": post,
            "seconds": seconds}
    with atomic_path(job.run_dir / DONE_FILE) as tmp:
        tmp.write_text(json.dumps(done, indent=1) + "\n")
    return seconds


def _trained(run_dir: Path, max_iters: int) -> bool:
    """The final checkpoint and its clock entry exist (training finished)."""
    from attnlife.store.layout import list_checkpoints

    found = list_checkpoints(run_dir) if run_dir.is_dir() else []
    return bool(found) and found[-1][0] == max_iters and max_iters in read_clock(run_dir)


def cell_numbers(run_dir: str | Path, max_iters: int) -> dict:
    """The published per-run numbers of one cell, read back from its run directory.

    final_train_loss: training loss of the last update (nats/token, step max_iters - 1);
    best_val_loss / final_val_loss: lowest / last `eval_loss` on val (nats/token) and its step;
    total_train_time: training-loop wall seconds to max_iters (`TrainClock`).
    """
    from attnlife.store.run_dir import load_run

    m = load_run(run_dir).metrics()
    loss = m[(m.metric == "loss") & (m.split == "train")].sort_values("step", kind="stable")
    val = m[(m.metric == "eval_loss") & (m.split == "val")].sort_values("step", kind="stable")
    best = val.loc[val.value.idxmin()]
    return {"final_train_loss": float(loss.value.iloc[-1]),
            "best_val_loss": float(best.value), "best_val_step": int(best.step),
            "final_val_loss": float(val.value.iloc[-1]),
            "total_train_time": read_clock(run_dir)[max_iters], "max_iters": max_iters}


def measure_inference(run_dir: str | Path, device: str, n_samples: int, tokens: int,
                      seed: int) -> float:
    """Mean tokens/s of `n_samples` single sequences of `tokens` new tokens (module docstring)."""
    import torch

    from attnlife.model.generate import timed_generate
    from attnlife.series.models import checkpoint_dir, load_model
    from attnlife.train.runtime import dist_info_from_env, resolve_device

    dev = resolve_device(device, dist_info_from_env())
    model = load_model(checkpoint_dir(run_dir), device=dev)
    model.generate(torch.zeros((1, 1), dtype=torch.long, device=dev), 4)  # warm-up, not timed
    rates = []
    for i in range(n_samples):
        gen = torch.Generator(device=dev).manual_seed(seed + i)
        idx = torch.zeros((1, 1), dtype=torch.long, device=dev)
        _, seconds = timed_generate(model, idx, tokens, temperature=0.8, top_k=200, generator=gen)
        rates.append(tokens / max(seconds, 1e-9))
    return float(sum(rates) / len(rates))
