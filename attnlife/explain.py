"""Where measurement passes and pure analysis meet: `analyze_run`, `claims_run`, across-run rows.

`analyze_run(RUN)` reads a run through the store and writes RUN/analysis/. Order: series
integrity (checkpoint digests; spectra digests for spectra-only directories) -> generation
quality of every checkpoint not sampled yet (split `sample` of the metric table, sampled by
`attnlife.track.generation`) -> the pure analysis of `attnlife.analysis` (phases, head types,
cycles, correlations, trajectory embedding, claims, the theory runs' tables, attention-health
alerts against loss events) -> the tables
and summary.json, each replaced atomically. Everything is recomputed from the run, so re-running
after the run grew gives what a fresh analysis would (sampling only adds new checkpoints).

Excluded steps (duplicate or non-finite weights) are dropped from the checkpoint-derived data:
splits `probe` and `sample` and the spectra table; metrics measured live during training stay.
The CLI (`attnlife analyze`, `claims`, `theory`) and `reproduce` call this module.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from attnlife.analysis import builders, correlations
from attnlife.analysis.across_runs import finals_correlation_rows, merge_runs_rows, run_finals
from attnlife.analysis.claim_context import ClaimContext
from attnlife.analysis.claims import check_claims
from attnlife.analysis.health import health_note, health_tables
from attnlife.analysis.integrity import attention_digest, integrity_table, spectra_digests
from attnlife.analysis.series import (attention_split, head_table, layer_series, model_series, probe_loss,
                                      train_loss, val_loss)
from attnlife.analysis.summary import make_summary
from attnlife.analysis.theory_trends import sweep_eta_z_trend, sweep_final_table, sweep_trend, theory_tables
from attnlife.data.tokenize import decode_ids
from attnlife.errors import CheckpointError, RunDirError
from attnlife.store import analysis_tables as store
from attnlife.store.checkpoints import load_state_dict
from attnlife.store.damage import warn_damaged_text
from attnlife.store.metrics_table import MetricWriter
from attnlife.store.run_dir import Run, load_run
from attnlife.track.generation import quality_rows, sample_checkpoint

CHECKPOINT_SPLITS = ("probe", "sample")
STAGES = ("integrity", "generation quality", "phases", "head types", "cycles", "correlations",
          "embedding", "claims", "write")


@dataclass(frozen=True)
class CycleOptions:
    """Cycle detection: peaks and troughs need rel_prominence x the signal's range; per-head focus
    signals are smoothed over `smooth_window` samples, the Markov runs' focus excess over
    `focus_window`."""

    rel_prominence: float = 0.2
    smooth_window: int = 3
    focus_window: int = 5


def checkpoint_integrity(run: Run, quiet: bool = True, unreadable: set[int] | None = None) -> pd.DataFrame:
    """Integrity rows from each checkpoint's attention tensors (names containing "attn"), or from the
    spectra table when the directory has no checkpoints. A checkpoint that cannot be read is
    skipped with one warning (its step is added to `unreadable`, so later stages skip it quietly)."""
    import torch

    found = run.checkpoints()
    if not found:
        spectra = run.spectra()
        return integrity_table(spectra_digests(spectra)) if len(spectra) else builders.empty("integrity")
    digests = []
    for step, path in tqdm(found, desc="hash checkpoints", disable=quiet, leave=False):
        try:
            state = load_state_dict(path)
        except CheckpointError as err:  # damaged: skipped with one warning, like `spectra`
            warn_damaged_text(f"{err}; skipped")
            if unreadable is not None:
                unreadable.add(int(step))
            continue
        attn = {k: v for k, v in state.items() if "attn" in k}
        raw = {k: v.detach().contiguous().view(-1).view(torch.uint8).numpy() for k, v in attn.items()}
        finite = all(bool(v.isfinite().all()) for v in attn.values() if v.is_floating_point())
        digest, _ = attention_digest(raw)
        digests.append((step, digest, not finite))
    return integrity_table(digests)


def sample_generation_quality(run: Run, excluded: set[int], quiet: bool = True) -> int:
    """Sample every complete checkpoint not yet in split `sample` (and not excluded); write its rows
    (distinct_1..4, repetition_4, mean_logprob_nats, sample_tokens_per_s, attention metrics). Returns
    the number of checkpoints sampled (rows written). A checkpoint that cannot be read is skipped with
    one warning. When the analysis table `samples` is damaged (warned once), the checkpoints sampled
    before are sampled again for their text only: their rows are never written twice."""
    frame = run.metrics()
    done = set(frame[frame.split == "sample"].step.unique())
    itos = run.record.get("dataset", {}).get("meta", {}).get("itos")
    old, damaged = _stored_texts(run) if itos else (None, False)
    todo = [(s, p) for s, p in run.checkpoints() if s not in excluded and (s not in done or damaged)]
    if not todo:
        return 0
    n, texts = 0, []
    with MetricWriter(run.root) as writer:
        for step, path in tqdm(todo, desc="sample checkpoints", disable=quiet, leave=False):
            try:
                got = sample_checkpoint(path)
            except CheckpointError as err:  # damaged: skipped with one warning, the rest go on
                warn_damaged_text(f"{err}; not sampled")
                continue
            if step not in done:           # a checkpoint sampled before only gives its text again
                writer.log_rows(step, quality_rows(got), split="sample")
                n += 1
            if itos:
                texts.append({"step": int(step), "text": decode_ids(got.sequences[0], itos)})
    if texts:
        _append_sample_texts(run, old, pd.DataFrame(texts))
    return n


def _stored_texts(run: Run) -> tuple[pd.DataFrame | None, bool]:
    """The analysis table `samples` (None when there is none) and whether it is damaged: then it is
    warned about once and the texts of the checkpoints sampled before are sampled again."""
    try:
        return store.read_analysis_table(run.root, "samples"), False
    except store.DamagedTableError as err:
        warn_damaged_text(f"{err}; the texts of sampled checkpoints are sampled again")
        return None, True
    except RunDirError:   # not written yet
        return None, False


def _append_sample_texts(run: Run, old: pd.DataFrame | None, new: pd.DataFrame) -> None:
    """Add the first generated sequence of newly sampled checkpoints to analysis table `samples`
    (step, text) holding `old`; steps sampled before keep their text."""
    merged = new if old is None else pd.concat([old[~old.step.isin(new.step)], new])
    store.write_analysis_table(run.root, "samples", merged.sort_values("step"))


def _clean(frame: pd.DataFrame, spectra: pd.DataFrame, excluded: set[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    bad = frame.step.isin(excluded) & frame.split.isin(CHECKPOINT_SPLITS)
    return frame[~bad], spectra[~spectra.step.isin(excluded)]


def _excluded(integrity: pd.DataFrame) -> set[int]:
    return set(integrity[integrity.excluded].step.astype(int)) if len(integrity) else set()


def _context(run: Run, frame: pd.DataFrame, spectra: pd.DataFrame, split: str | None,
             phases: pd.DataFrame, cycles: pd.DataFrame, induction: pd.DataFrame) -> ClaimContext:
    layers = {}
    if split is not None:
        layers = {int(layer): layer_series(frame, split, int(layer))
                  for layer in sorted(head_table(frame, split).layer.unique())}
    record = run.record
    trend, eta_z_trend = [], []
    if record.get("kind") == "theory-scan-snap-sweep":
        final = sweep_final_table(run.sweep())
        trend, eta_z_trend = sweep_trend(final), sweep_eta_z_trend(final)
    model = model_series(frame, split) if split is not None else pd.DataFrame()
    return ClaimContext(metrics=frame, split=split, model=model, layers=layers, val_loss=val_loss(frame),
                        spectra=spectra, record=record, phases=phases, cycles=cycles, sweep_trend=trend,
                        sweep_eta_z_trend=eta_z_trend, induction_phase=induction, train_loss=train_loss(frame),
                        probe_loss=probe_loss(frame))


def compute_tables(run: Run, quiet: bool = True, sample: bool = True, bar: tqdm | None = None,
                   cycles: CycleOptions = CycleOptions()) -> tuple[dict[str, pd.DataFrame], dict]:
    """Every analysis table of `run` and the summary notes (nothing written except sample rows)."""
    def advance() -> None:
        if bar is not None:
            bar.update(1)

    unreadable: set[int] = set()
    integrity = checkpoint_integrity(run, quiet, unreadable)
    excluded = _excluded(integrity)
    advance()
    sampled = sample_generation_quality(run, excluded | unreadable, quiet) if sample else 0
    advance()
    frame, spectra = _clean(run.metrics(), run.spectra(), excluded)
    split = attention_split(frame)
    notes: dict = {"attention_split": split, "excluded_steps": sorted(int(s) for s in excluded),
                   "checkpoints_sampled_now": sampled}
    tables = {"integrity": integrity}
    tables["phases"], notes["phases"] = builders.phases_table(frame, split)
    advance()
    types, notes["head_types"] = builders.head_type_tables(frame)
    tables.update(types)
    advance()
    tables["cycles"], notes["cycles"] = builders.cycles_table(frame, split, cycles.rel_prominence,
                                                              cycles.smooth_window, cycles.focus_window)
    advance()
    rows = builders.correlation_rows(frame, split, spectra)
    tables["correlations"] = correlations.finish(rows) if rows else builders.empty("correlations")
    advance()
    tables["embedding"], tables["embedding_edges"], notes["embedding"] = builders.embedding_tables(frame, split, spectra)
    advance()
    ctx = _context(run, frame, spectra, split, tables["phases"], tables["cycles"], tables["induction_phase"])
    tables["claims"] = check_claims(ctx)
    tables.update(theory_tables(str(run.record.get("kind", "")), frame, run.sweep()))
    health = health_tables(frame)
    tables.update(health)
    notes["health"] = health_note(health)
    advance()
    return tables, notes


def write_tables(run_dir: str | os.PathLike, tables: dict[str, pd.DataFrame], summary: dict) -> None:
    """Write every table, claims.csv/.md and summary.json into RUN/analysis/ (each atomically)."""
    for name, frame in tables.items():
        store.write_analysis_table(run_dir, name, frame)
    if "claims" in tables:
        store.write_claims_files(run_dir, tables["claims"])
    store.write_summary(run_dir, summary)


def analyze_run(run_dir: str | os.PathLike, *, quiet: bool = False, sample: bool = True,
                cycles: CycleOptions = CycleOptions()) -> dict:
    """Analyse one run directory and write RUN/analysis/; returns the summary (also summary.json).

    `sample=False` skips generation-quality sampling of checkpoints; `cycles` sets the cycle
    detection (the `theory markov` verb passes its --rel-prominence and --smooth).
    """
    run = load_run(run_dir)
    with tqdm(total=len(STAGES), desc=f"analyze {Path(run_dir).name}", disable=quiet) as bar:
        tables, notes = compute_tables(run, quiet=True, sample=sample, bar=bar, cycles=cycles)
        summary = make_summary(str(run.root), tables, notes)
        write_tables(run.root, tables, summary)
        bar.update(1)
    return summary


def claims_run(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Only the claims check (no sampling, no embedding): writes claims.parquet/.csv/.md; returns it."""
    run = load_run(run_dir)
    frame, spectra = _clean(run.metrics(), run.spectra(), _excluded(checkpoint_integrity(run)))
    split = attention_split(frame)
    phases, _ = builders.phases_table(frame, split)
    cycles, _ = builders.cycles_table(frame, split)
    types, _ = builders.head_type_tables(frame)
    claims = check_claims(_context(run, frame, spectra, split, phases, cycles, types["induction_phase"]))
    store.write_analysis_table(run.root, "claims", claims)
    store.write_claims_files(run.root, claims)
    return claims


def across_run_rows(run_dirs: list[str | os.PathLike]) -> list[dict]:
    """Spearman rows (kind `runs`) between final attention values and outcomes across runs."""
    return finals_correlation_rows([run_finals(load_run(d).metrics()) for d in run_dirs])


def add_across_runs(run_dirs: list[str | os.PathLike]) -> int:
    """Compute the `runs` rows and merge them into each run's correlations table; returns the row count."""
    rows = across_run_rows(run_dirs)
    for d in run_dirs:
        try:
            table = store.read_analysis_table(d, "correlations")
        except RunDirError:  # a run that was not analysed gets none
            continue
        store.write_analysis_table(d, "correlations", merge_runs_rows(table, rows))
    return len(rows)
