"""`reproduce`: prepare the datasets, run this rank's share of the grid, write the results.

    reproduce("study", scale="cpu")            # the whole cpu grid, one process
    reproduce("study", scale="cpu", workers=2)  # two cells at a time

Rank r of W (torchrun's RANK / WORLD_SIZE, or given) takes cells r, r+W, ... of the grid
(`attnlife.series.workers.rank_share`, `run_in_processes` for --workers), exactly as the spectra
sweep splits checkpoints. Whichever process finds every cell of the grid done writes
OUT/results/ (run_{k}.json, overhead.csv, compare.md, figures/), so the last rank, or any
later rerun, completes it; a rerun skips done cells.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from attnlife.errors import AttnlifeError
from attnlife.reproduce.cell import CellJob, CellOutcome, is_done, read_done, run_cell
from attnlife.reproduce.protocol import PROTOCOL_SEEDS, RUNS, SCALES, Cell, cell_config, grid


class ReproduceError(AttnlifeError):
    """Some cells of the grid failed (each is listed with its error)."""


@dataclass(frozen=True)
class GridSummary:
    """Cells run now, skipped as done, failed; the results folder once the grid is complete."""

    outcomes: tuple[CellOutcome, ...]
    total: int
    results: Optional[Path]
    notes: tuple[str, ...] = ()


def prepare_data(datasets: Sequence[str], data_dir: Path, quiet: bool,
                 sources_dir: Optional[str | os.PathLike] = None) -> dict[str, dict]:
    """Prepare each dataset not yet in `data_dir` (offline sources as `prepare` finds them, in
    `sources_dir` when given).

    Returns dataset -> {prefix, train_tokens, total_tokens} from its meta.json.
    """
    from attnlife.data import load_prepared, prepare_dataset

    info = {}
    for name in datasets:
        if not (data_dir / name / "meta.json").is_file():
            prepare_dataset(name, data_dir, quiet=quiet, sources_dir=sources_dir)
        meta = load_prepared(data_dir, name).meta
        info[name] = {"prefix": bool(meta.get("prefix")),
                      "train_tokens": int(meta["split_tokens"]["train"]),
                      "total_tokens": int(meta["total_tokens"])}
    return info


def reproduce(out_dir: str | os.PathLike, scale: str = "cpu", datasets: Optional[Sequence[str]] = None,
              seeds: Optional[int] = None, runs: Sequence[int] = tuple(RUNS), workers: int = 1,
              rank: Optional[int] = None, world_size: Optional[int] = None,
              data_dir: Optional[str | os.PathLike] = None, overrides: Sequence[str] = (),
              quiet: bool = False, executor: Any = None,
              sources_dir: Optional[str | os.PathLike] = None) -> GridSummary:
    """Run this rank's unfinished cells of the grid, then the results if every cell is done.

    scale: "cpu" | "paper" | "smoke" (`protocol.SCALES`); datasets default to the protocol's
    three; seeds None = the protocol's counts (3 / 1 / 1); rank/world_size default to
    torchrun's environment (0 / 1 without it). `executor` (`attnlife.series.executors`: Ray,
    submitit) runs one task per cell instead of `workers` local processes; every worker must see
    OUT. Raises ReproduceError listing failed cells.
    """
    from tqdm.auto import tqdm

    from attnlife.series.executors import LocalExecutor
    from attnlife.series.workers import rank_share
    from attnlife.train.runtime import dist_info_from_env

    if scale not in SCALES:
        raise AttnlifeError(f"unknown scale {scale!r}; use one of {sorted(SCALES)}")
    if workers < 1:
        raise AttnlifeError(f"--workers {workers} must be >= 1")
    env = dist_info_from_env()
    rank = env.rank if rank is None else rank
    world_size = env.world_size if world_size is None else world_size
    out = Path(out_dir)
    datasets = list(datasets or PROTOCOL_SEEDS)
    data = Path(data_dir) if data_dir else out / "data"
    cells = grid(runs, datasets, seeds)  # checks runs and seeds before any data is prepared
    data_info = prepare_data(datasets, data, quiet, sources_dir)
    device = _device(env.local_rank) if world_size > 1 else "auto"
    import torch

    executor = executor or LocalExecutor(workers)
    local = isinstance(executor, LocalExecutor)
    threads = max(1, torch.get_num_threads() // workers) if local else 0   # remote: the executor's
    jobs = [CellJob(str(out), c, scale, str(data), device, tuple(overrides),
                    quiet=quiet or workers > 1 or not local, threads=threads)
            for c in rank_share(cells, rank, world_size)]
    todo = [j for j in jobs if not is_done(j.run_dir)]
    with tqdm(total=len(todo), desc=f"reproduce {scale} (rank {rank}/{world_size})", unit="cell",
              disable=quiet or not todo) as bar:
        outcomes = executor.map(run_cell, [(j,) for j in todo], on_done=lambda o: _report(bar, o))
    outcomes += [CellOutcome(j.cell, "skipped", 0.0, "already done") for j in jobs if j not in todo]
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise ReproduceError(f"{len(failed)} of {len(jobs)} cells failed ("
                             + "; ".join(f"{o.cell.label}: {o.message}" for o in failed[:3])
                             + "); fix the cause and rerun the same command: done cells are skipped")
    results, notes = None, ()
    if all(read_done(out / c.rel_dir) is not None for c in cells):
        results, notes = write_all(out, cells, scale, data, data_info, overrides)
    return GridSummary(tuple(outcomes), len(cells), results, notes)


def write_all(out: Path, cells: list[Cell], scale: str, data_dir: Path, data_info: dict,
              overrides: Sequence[str] = ()) -> tuple[Path, tuple[str, ...]]:
    """results/run_{k}.json, overhead.csv, compare.md and the study figures of a complete grid."""
    from attnlife.reproduce.compare import compare_markdown, write_compare
    from attnlife.reproduce.results import cell_table, overhead_table, run_results, write_results

    table = cell_table(out, cells)
    configs = {c.dataset: _config_summary(cell_config(c, SCALES[scale], out, data_dir,
                                                      overrides=overrides))
               for c in cells}
    write_results(out, table, data_info, configs)
    results = {int(k): run_results(table, int(k), data_info, configs) for k in sorted(table.run.unique())}
    write_compare(out, compare_markdown(results, overhead_table(table), _hardware(out, cells), scale))
    return out / "results", draw_figures(out, cells)


def draw_figures(out: Path, cells: list[Cell]) -> tuple[str, ...]:
    """The four training-run figure families (report contract): per dataset, one line per protocol
    run with a standard-error band over its seeds, in results/figures/*_{dataset}.png.

    Runs 1-3 share one config (they differ in callbacks only), so the runs are handed over as
    labelled groups ("run 0", ...) rather than grouped by config.
    """
    from attnlife.report import draw_study_figures as draw

    groups = {f"run {run}": [out / c.rel_dir for c in cells if c.run == run]
              for run in sorted({c.run for c in cells})}
    try:
        total = len(draw(groups, out / "results" / "figures", formats=("png",)))
    except Exception as err:  # noqa: BLE001 - the results are written; say which figures failed
        return (f"study figures failed in draw_study_figures ({type(err).__name__}: {err}); "
                f"the results files are complete",)
    return (f"{total} study figures in {out / 'results' / 'figures'}/",)


def _report(bar, outcome: CellOutcome) -> None:  # noqa: ANN001 - a tqdm bar
    bar.update(1)
    if outcome.status == "failed":
        bar.write(f"{outcome.cell.label}: FAILED ({outcome.message})")


def _device(local_rank: int) -> str:
    """cuda:LOCAL_RANK on a multi-GPU node under torchrun, else auto."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return "auto"


def _config_summary(config) -> dict:  # noqa: ANN001 - RunConfig
    d = config.to_dict()
    return {"model": d["model"], "train": {k: d["train"][k] for k in (
        "batch_size", "learning_rate", "min_lr", "max_iters", "warmup_iters", "lr_decay_iters",
        "eval_interval", "eval_iters")},
        "track": {k: d["track"].get(k) for k in ("every", "batch_fraction")}}


def _hardware(out: Path, cells: list[Cell]) -> str:
    """'device dtype, torch version, platform' of the first cell's run.json."""
    from attnlife.store.run_dir import Run

    record = Run(out / cells[0].rel_dir).record
    env = record.get("environment", {})
    cpu = f", {os.cpu_count()} CPUs" if record.get("device") == "cpu" else ""
    return (f"ours on {record.get('device')} {record.get('dtype')}{cpu}, torch {env.get('torch')} "
            f"({platform.machine()})")
