"""Scan-and-snap experiments written as run directories (run.json + tidy metric table).

Metric encoding (layer 0, head 0 = the single attention head; layer -1 = model level):
- single run (`kind: theory-scan-snap`): per class n, `attn_distinct_class{n}`, `attn_common_class{n}`,
  `entropy_distinct_bits_class{n}`, `z_distinct_max_class{n}`, `z_distinct_mean_class{n}`,
  `z_common_mean_class{n}`; their class means without the suffix (e.g. `entropy_distinct_bits`);
  `loss` (nats, model level).
- sweep (`kind: theory-scan-snap-sweep`): each value once, in the sweep table (RUN/sweep/,
  `attnlife.store.sweep_table`): one row per step, name (entropy_distinct_bits, attn_common, loss),
  grid point (m, k, eta_z, eta_y, ratio) and seed, the parameters as columns. Means and standard
  errors over seeds are computed by the analysis (`attnlife.analysis.theory_trends`).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from attnlife.errors import DivergenceError, TheoryConfigError
from attnlife.measures import log_spaced_steps
from attnlife.store.metrics_table import MetricWriter
from attnlife.store.lock import run_lock
from attnlife.store.run_dir import write_run_json
from attnlife.store.sweep_table import SweepWriter
from attnlife.theory.scan_snap import (
    ScanSnapAttention, SGDSpec, train_module, train_reparam,
)
from attnlife.theory.scan_snap_data import DISTINCT_PROFILES, SequenceClasses, build_sequence_classes

HEAD = {"layer": 0, "head_index": 0}
SWEEP_NAMES = ("entropy_distinct_bits", "attn_common", "loss")


DECODERS = ("vocab", "next")
INITS = ("uniform", "zero")


@dataclass
class ScanSnapConfig:
    """One scan-and-snap run (experiment 1). `param`: "reparam" (Y, Z) or "module" (W_Q, W_K, W_V, W_U).

    Defaults are the authors' synthetic setting (facebookresearch/luckmatters,
    ssl/real-dataset/scan_snap/figure_6.log: `decoder_only.py` with SGD momentum 0.9, batch 128,
    L = 128, 10 common + 10 distinct tokens weighted 1 and linspace(0.1, 1), a decoder over the whole
    vocabulary, torch's default uniform start) with eta_Y / eta_Z = 5, where the distinct-token
    entropy snaps (docs/theory.md: the search). `decoder`: "vocab" (all V + M + K tokens, the
    authors') or "next" (the K next tokens); `init`: "uniform" (U(+-1/sqrt(V + M + K))) or "zero".
    """

    n_last: int = 3
    n_next: int = 6
    n_distinct: int = 10
    n_common: int = 10
    common_mass: float = 0.5
    distinct_profile: str = "linear"
    seq_len: int = 128
    batch_size: int = 128
    steps: int = 2000
    eta_y: float = 5.0
    eta_z: float = 1.0
    momentum: float = 0.9
    decoder: str = "vocab"
    init: str = "uniform"
    seed: int = 0
    param: str = "reparam"
    log_points: int = 120


@dataclass
class SweepConfig:
    """Experiment 2: final distinct-token entropy vs eta_Y / eta_Z for several (M, K), `n_seeds` seeds.

    Defaults are the authors' Fig. 6 sweep (ssl/real-dataset/scan_snap/figure_6.log): M/K = 1/2,
    3/6, 5/10, 10/20, eta_Z in {0.5, 1, 2, 3}, eta_Y / eta_Z in {1, 2, 5, 10}, 10 seeds, 100 steps,
    and the single run's data, optimizer, decoder and start.
    """

    mk: list[tuple[int, int]] = field(default_factory=lambda: [(1, 2), (3, 6), (5, 10), (10, 20)])
    ratios: list[float] = field(default_factory=lambda: [1.0, 2.0, 5.0, 10.0])
    eta_z: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 3.0])
    n_seeds: int = 10
    n_distinct: int = 10
    n_common: int = 10
    common_mass: float = 0.5
    distinct_profile: str = "linear"
    seq_len: int = 128
    batch_size: int = 128
    steps: int = 100
    momentum: float = 0.9
    decoder: str = "vocab"
    init: str = "uniform"
    seed: int = 0
    log_points: int = 25


def sequence_classes(cfg: ScanSnapConfig | SweepConfig, m: int, k: int) -> SequenceClasses:
    """The data model of a run's config for M = m, K = k."""
    return build_sequence_classes(m, k, cfg.n_distinct, cfg.n_common, cfg.common_mass,
                                  distinct_profile=cfg.distinct_profile)


def sgd_spec(cfg: ScanSnapConfig | SweepConfig, classes: SequenceClasses) -> SGDSpec:
    """Steps, batches, momentum, decoder width and start of a run's config."""
    n_out = classes.vocab_size + classes.n_last + classes.n_next if cfg.decoder == "vocab" else classes.n_next
    init = 1.0 / math.sqrt(classes.vocab_size + classes.n_last + classes.n_next) if cfg.init == "uniform" else 0.0
    return SGDSpec(cfg.steps, cfg.batch_size, cfg.seq_len, cfg.seed, momentum=cfg.momentum, n_out=n_out,
                   init_scale=init)


def _validate(cfg: ScanSnapConfig | SweepConfig) -> None:
    problems = []
    if cfg.seq_len < 2:
        problems.append("--seq-len must be >= 2")
    if cfg.steps < 1 or cfg.batch_size < 1:
        problems.append("--steps and --batch-size must be >= 1")
    if not 0 <= cfg.common_mass < 1:
        problems.append("--common-mass must be in [0, 1)")
    if cfg.n_distinct < 1 or cfg.n_common < 0:
        problems.append("--n-distinct must be >= 1 and --n-common >= 0")
    if cfg.distinct_profile not in DISTINCT_PROFILES:
        problems.append(f"--profile must be one of {', '.join(DISTINCT_PROFILES)}")
    if not 0 <= cfg.momentum < 1:
        problems.append("--momentum must be in [0, 1)")
    if cfg.decoder not in DECODERS:
        problems.append(f"--decoder must be one of {', '.join(DECODERS)}")
    if cfg.init not in INITS:
        problems.append(f"--init must be one of {', '.join(INITS)}")
    if isinstance(cfg, ScanSnapConfig):
        if not 1 <= cfg.n_last <= cfg.n_next:
            problems.append("need 1 <= M (--n-last) <= K (--n-next)")
        if cfg.eta_y <= 0 or cfg.eta_z <= 0:
            problems.append("--eta-y and --eta-z must be > 0")
        if cfg.param not in ("reparam", "module"):
            problems.append("--param must be 'reparam' or 'module'")
    else:
        if any(not 1 <= m <= k for m, k in cfg.mk):
            problems.append("every M/K pair needs 1 <= M <= K (e.g. --mk 3/6)")
        if min(cfg.ratios, default=0) <= 0 or min(cfg.eta_z, default=0) <= 0 or cfg.n_seeds < 2:
            problems.append("ratios and eta_z must be > 0 and --seeds >= 2")
    if problems:
        raise TheoryConfigError("; ".join(problems))


def run_scan_snap(cfg: ScanSnapConfig, out_dir: str | os.PathLike, quiet: bool = False) -> Path:
    """Train one model (experiment 1) and write RUN/run.json and RUN/metrics; return the run dir."""
    _validate(cfg)
    with run_lock(out_dir, "theory scan-snap", reenter=True):  # one writer per run directory
        return _run_scan_snap(cfg, out_dir, quiet)


def _run_scan_snap(cfg: ScanSnapConfig, out_dir: str | os.PathLike, quiet: bool = False) -> Path:
    out = Path(out_dir)
    classes = sequence_classes(cfg, cfg.n_last, cfg.n_next)
    write_run_json(out, {"kind": "theory-scan-snap", "config": asdict(cfg), "seed": cfg.seed})
    log_at = log_spaced_steps(cfg.steps, cfg.log_points)
    spec = sgd_spec(cfg, classes)
    with MetricWriter(out) as writer, tqdm(total=cfg.steps, disable=quiet, desc="scan-snap") as bar:
        def logger(step: int, summary: dict[str, torch.Tensor]) -> None:
            for name, value in summary.items():
                per_class = value[0, 0]
                if name == "loss":
                    if step > 0:  # the loss is NaN at step 0 only: no batch was used yet
                        writer.log(step, "loss", float(per_class))
                        _check_finite(step, per_class.view(1, 1), [(cfg.eta_z, cfg.eta_y / cfg.eta_z)],
                                      "--eta-y / --eta-z")
                    continue
                for n, v in enumerate(per_class.tolist()):
                    writer.log(step, f"{name}_class{n}", v, **HEAD)
                writer.log(step, name, float(per_class.mean()), **HEAD)

        if cfg.param == "reparam":
            train_reparam(classes, [cfg.eta_y], [cfg.eta_z], 1, spec, log_at, logger, bar.update)
        else:
            module = ScanSnapAttention(classes.vocab_size, cfg.n_last, cfg.n_next, seed=cfg.seed)
            train_module(classes, module, cfg.eta_z, cfg.eta_y, spec, log_at, logger, bar.update)
    return out


def _check_finite(step: int, loss_gs: torch.Tensor, cells: list[tuple[float, float]], knob: str,
                  where: str = "") -> None:
    """DivergenceError naming the first grid cell (eta_z, ratio) whose loss [G, S] is not finite."""
    bad = ~torch.isfinite(loss_gs)
    if bool(bad.any()):
        g = int(bad.any(-1).nonzero()[0])
        eta_z, ratio = cells[g]
        raise DivergenceError(f"theory run diverged by step {step} ({where}eta_z={eta_z:g}, "
                              f"eta_y/eta_z={ratio:g}): the loss is {float(loss_gs[g][bad[g]][0])}; "
                              f"lower {knob}")


def run_sweep(cfg: SweepConfig, out_dir: str | os.PathLike, quiet: bool = False) -> Path:
    """Experiment 2: for each (M, K) train all (eta_Z, ratio) x seeds at once; write RUN; return it.

    Grid point (eta_z, r) trains with eta_Y = r * eta_z. Logged per seed at log-spaced steps into
    the sweep table (parameters as columns; the analysis takes means and standard errors).
    """
    _validate(cfg)
    with run_lock(out_dir, "theory scan-snap --sweep", reenter=True):  # one writer per run directory
        return _run_sweep(cfg, out_dir, quiet)


def _run_sweep(cfg: SweepConfig, out_dir: str | os.PathLike, quiet: bool = False) -> Path:
    out = Path(out_dir)
    write_run_json(out, {"kind": "theory-scan-snap-sweep", "config": asdict(cfg), "seed": cfg.seed})
    cells = [(ez, r) for ez in cfg.eta_z for r in cfg.ratios]
    log_at = log_spaced_steps(cfg.steps, cfg.log_points)
    total = cfg.steps * len(cfg.mk)
    with SweepWriter(out) as grid, tqdm(total=total, disable=quiet, desc="scan-snap sweep") as bar:
        for m, k in cfg.mk:
            classes = sequence_classes(cfg, m, k)

            def logger(step: int, summary: dict[str, torch.Tensor], m: int = m, k: int = k) -> None:
                if step > 0:
                    _check_finite(step, summary["loss"], cells, "the largest --ratios / --eta-z",
                                  f"M={m} K={k} ")
                for name in SWEEP_NAMES:
                    value = summary[name]
                    per_seed = value if value.dim() == 2 else value.mean(-1)          # [G, S]
                    if torch.isnan(per_seed).all():
                        continue
                    for g, (ez, r) in enumerate(cells):
                        for s, v in enumerate(per_seed[g].tolist()):
                            grid.log(step, name, m, k, ez, r, s, v)

            spec = sgd_spec(cfg, classes)
            train_reparam(classes, [ez * r for ez, r in cells], [ez for ez, _ in cells], cfg.n_seeds,
                          spec, log_at, logger, bar.update)
    return out
