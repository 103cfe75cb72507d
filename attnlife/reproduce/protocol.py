"""The published four-run protocol as data: runs, datasets, seeds, scales, cadence, published numbers.

A cell is one (run, dataset, seed) training run, trained into `OUT/runs/run{k}/{dataset}/seed{s}`.
Runs differ only in what the protocol says:

  run 0  baseline, attention tracking off
  run 1  attention tracking and per-head / per-layer metrics (cross-layer rows dropped)
  run 2  run 1 + cross-layer metrics (xlayer_jsd, xlayer_cos)
  run 3  run 2 + sampling with tracked generation quality (split `sample`) at the same cadence

Cadence: `paper` tracks every 500 updates on 10% of the batch (the published cadence); `cpu`
keeps the same shape scaled to the run length, every = max_iters // 10 (11 events per run, steps
0, every, ..., max_iters, like 0, 500, ..., 5000); `smoke` (40 updates) tracks every 10. The early log-spaced checkpoint schedule
and the every-step light tier are off (`track.at_checkpoints=false`, `track.light_every=0`): the
protocol does not have them; `--set` turns them on.

Seed s trains with `train.seed = 1337 + s` (the seed offset of the published runs).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Optional

from attnlife.config import RunConfig, TrackConfig, build_config
from attnlife.errors import ConfigError

RUNS: dict[int, str] = {
    0: "baseline (tracking off)",
    1: "attention tracking and metrics",
    2: "+ cross-layer metrics",
    3: "+ sampling with tracked generation quality",
}
PROTOCOL_SEEDS: dict[str, int] = {"shakespeare_char": 3, "enwik8": 1, "text8": 1}
BASE_SEED = 1337
CROSS_LAYER_PREFIX = "xlayer_"

# the published numbers this protocol is compared with (docs/results.md gives their source)
PUBLISHED_BEST_VAL_LOSS = {"shakespeare_char": 1.47, "enwik8": 1.01, "text8": 0.98}
PUBLISHED_TRAIN_TIME_S = {"shakespeare_char": 142.0}
PUBLISHED_TOKENS_PER_S = 420.0
PUBLISHED_OVERHEAD_PCT = 0.8


@dataclass(frozen=True)
class Scale:
    """How big every cell is: the config preset, the step budget and the sampling sizes.

    `overrides` are `section.key=value` applied to every cell on top of the preset;
    inference = `inference_samples` sequences of `inference_tokens` new tokens after training
    (tokens/s, the published `avg_inference_tokens_per_second`); run 3 samples
    `quality_samples` sequences of up to one block at each tracked checkpoint.
    """

    name: str
    preset: str
    max_iters: int
    overrides: tuple[str, ...] = ()
    track_every: int = 0              # 0: max_iters // 10
    inference_samples: int = 10
    inference_tokens: int = 500
    quality_samples: int = 8

    @property
    def every(self) -> int:
        """Tracking (and run-3 sampling) cadence in updates."""
        return self.track_every or max(1, self.max_iters // 10)


# cpu: the `cpu` preset model (4 layers, 4 heads, 128 dims, block 64, batch 12) for 600 updates;
# measured cost per cell and the whole-grid budget in docs/results.md
CPU_ITERS = 600
SCALES: dict[str, Scale] = {
    "paper": Scale("paper", "paper", 5000, track_every=500),
    "cpu": Scale("cpu", "cpu", CPU_ITERS,
                 overrides=(f"train.warmup_iters={CPU_ITERS // 20}",
                            f"train.eval_interval={CPU_ITERS // 10}", "train.eval_iters=20",
                            f"train.ckpt_every={CPU_ITERS // 10}"),
                 inference_samples=3, inference_tokens=250, quality_samples=4),
    "smoke": Scale("smoke", "cpu", 40,
                   overrides=("model.n_layer=2", "model.n_head=2", "model.n_embd=32",
                              "model.block_size=32", "train.batch_size=8", "train.learning_rate=3e-3",
                              "train.min_lr=3e-4", "train.warmup_iters=4", "train.eval_interval=10",
                              "train.eval_iters=4", "train.ckpt_every=10", "train.ckpt_log_max=0"),
                   track_every=10, inference_samples=2, inference_tokens=32, quality_samples=2),
}


@dataclass(frozen=True, order=True)
class Cell:
    """One (run, dataset, seed) training run of the grid."""

    run: int
    dataset: str
    seed: int

    @property
    def rel_dir(self) -> Path:
        """OUT-relative run directory: runs/run{k}/{dataset}/seed{s}."""
        return Path("runs") / f"run{self.run}" / self.dataset / f"seed{self.seed}"

    @property
    def label(self) -> str:
        return f"run{self.run}/{self.dataset}/seed{self.seed}"


def parse_runs(text: str) -> tuple[int, ...]:
    """'0,1,2,3' -> (0, 1, 2, 3); ConfigError for anything outside RUNS."""
    try:
        runs = tuple(sorted({int(t) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise ConfigError(f"--runs {text!r} is not a comma-separated list of run numbers; "
                          f"use e.g. 0,1,2,3") from None
    bad = [r for r in runs if r not in RUNS]
    if not runs or bad:
        raise ConfigError(f"--runs {text!r} names no run or unknown runs {bad}; use numbers from "
                          f"{sorted(RUNS)}")
    return runs


def grid(runs: Iterable[int], datasets: Iterable[str], seeds: Optional[int] = None) -> list[Cell]:
    """Every cell, ordered dataset, seed, run (so a rank's share mixes runs evenly).

    `seeds` None: the protocol's count per dataset (PROTOCOL_SEEDS, 1 for other datasets).
    """
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds {seeds} must be >= 1")
    cells = []
    for dataset in datasets:
        n = seeds if seeds is not None else PROTOCOL_SEEDS.get(dataset, 1)
        cells += [Cell(run, dataset, s) for s in range(n) for run in runs]
    return cells


def cell_config(cell: Cell, scale: Scale, out_dir: str | Path, data_dir: str | Path,
                device: str = "auto", overrides: Iterable[str] = ()) -> RunConfig:
    """The RunConfig of one cell: preset < scale < protocol cadence < `overrides` < run switches.

    Only `track.enabled` (off for run 0) differs between runs of the same dataset and seed.
    """
    protocol = [f"train.max_iters={scale.max_iters}", f"train.lr_decay_iters={scale.max_iters}",
                f"train.seed={BASE_SEED + cell.seed}", f"train.device={device}",
                f"data.data_dir={data_dir}", f"track.every={scale.every}",
                "track.batch_fraction=0.1"]
    known = {f.name for f in fields(TrackConfig)}
    protocol += [f"track.{k}={v}" for k, v in (("min_sequences", 1), ("at_checkpoints", "false"),
                                                ("light_every", 0)) if k in known]
    run_switch = [f"track.enabled={'false' if cell.run == 0 else 'true'}"]
    return build_config(scale.preset, cell.dataset,
                        overrides=[*scale.overrides, *protocol, *overrides, *run_switch],
                        out_dir=str(Path(out_dir) / cell.rel_dir))
