"""The analysis tables of a run: `RUN/analysis/{name}.parquet` + `summary.json` (+ claims.csv/.md).

Written by `attnlife analyze` (attnlife.explain.analyze_run), read by the report. Each table is
one whole Parquet file replaced atomically on every analysis (the analysis is recomputed from the
run, so re-running after the run grew gives the same answer as a fresh run). Tables and their
columns (a writer may add columns, never rename these):

  phases           scope, layer, segment, start_step, end_step, label, slopes, evidence
  head_types       step, layer, head_index, type, score
  emergence        layer, head_index, type, emergence_step, threshold, probe_loss_nats
  induction_phase  step, step_before, score_before, score_after, loss_before, loss_after, loss_bump
  cycles           layer, head_index, signal, start_step, trough_step, end_step, period_steps,
                   prominence, status
  correlations     x, x_layer, x_head, y, kind, rho, p, p_bh, n, p_min, method
  embedding        layer, head_index, x, y, cluster;  embedding_edges  src, dst, distance
  integrity        step, digest, duplicate_of, nonfinite, excluded
  claims           claim_id, source, claim, measured, verdict, reason
  samples          step, text
  health_alerts    kind, layer, head_index, first_step, last_step, alerts, first_value
  health_events    step, event, loss           (loss spikes, plateau, divergence)
  health_leads     event_step, event, alert_kind, first_alert_step, lead_steps, units

Theory runs add (THEORY_COLUMNS; `cycles` holds the Markov runs' focus-dilution cycles, signal
attn_focus_excess, with status open / closed):

  scan_snap        signal, start, end                      (scan-and-snap runs)
  z_growth         from_step, to_step, slope_per_ln_step   (max distinct logit per log decade)
  snap             signal, tolerance, snap_step, last_decade_change, total_change, status
                                                            (distinct-token entropy freezes: snapped)
  sweep_final      m, k, eta_z, ratio, mean, se             (sweep runs: final entropy over seeds)
  sweep_trend      m, k, eta_z, spearman_entropy_vs_ratio, rises
  sweep_eta_z_trend m, k, ratio, spearman_entropy_vs_eta_z, falls
  focus_stages     stage, step, signal, value, attn_qk_rel_change  (Markov runs: the stages' steps)
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from attnlife.errors import RunDirError
from attnlife.store.atomic import atomic_path, write_json_atomic, write_text_atomic
from attnlife.store.damage import first_line, warn_damaged, warn_damaged_text

ANALYSIS_DIR = "analysis"
SUMMARY = "summary.json"
ANALYSIS_COLUMNS: dict[str, list[str]] = {
    "phases": ["scope", "layer", "segment", "start_step", "end_step", "label", "slopes", "evidence"],
    "head_types": ["step", "layer", "head_index", "type", "score"],
    "emergence": ["layer", "head_index", "type", "emergence_step", "threshold", "probe_loss_nats"],
    "induction_phase": ["step", "step_before", "score_before", "score_after", "loss_before", "loss_after",
                        "loss_bump"],
    "cycles": ["layer", "head_index", "signal", "start_step", "trough_step", "end_step", "period_steps",
               "prominence", "status"],
    "correlations": ["x", "x_layer", "x_head", "y", "kind", "rho", "p", "p_bh", "n", "p_min", "method"],
    "embedding": ["layer", "head_index", "x", "y", "cluster"],
    "embedding_edges": ["src", "dst", "distance"],
    "integrity": ["step", "digest", "duplicate_of", "nonfinite", "excluded"],
    "claims": ["claim_id", "source", "claim", "measured", "verdict", "reason"],
    "samples": ["step", "text"],
    "health_alerts": ["kind", "layer", "head_index", "first_step", "last_step", "alerts", "first_value"],
    "health_events": ["step", "event", "loss"],
    "health_leads": ["event_step", "event", "alert_kind", "first_alert_step", "lead_steps", "units"],
}
THEORY_COLUMNS: dict[str, list[str]] = {
    "scan_snap": ["signal", "start", "end"],
    "z_growth": ["from_step", "to_step", "slope_per_ln_step"],
    "snap": ["signal", "tolerance", "snap_step", "last_decade_change", "total_change", "status"],
    "sweep_final": ["m", "k", "eta_z", "ratio", "mean", "se"],
    "sweep_trend": ["m", "k", "eta_z", "spearman_entropy_vs_ratio", "rises"],
    "sweep_eta_z_trend": ["m", "k", "ratio", "spearman_entropy_vs_eta_z", "falls"],
    "focus_stages": ["stage", "step", "signal", "value", "attn_qk_rel_change"],
}


def analysis_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / ANALYSIS_DIR


def write_analysis_table(run_dir: str | os.PathLike, name: str, frame: pd.DataFrame) -> Path:
    """Write table `name` to RUN/analysis/{name}.parquet atomically (columns checked, extra kept;
    the run-format version in its schema metadata)."""
    cols = ANALYSIS_COLUMNS.get(name, THEORY_COLUMNS.get(name))
    if cols is not None:
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"analysis table {name} lacks columns {missing}")
        frame = frame[cols + [c for c in frame.columns if c not in cols]]
    import pyarrow.parquet as pq

    from attnlife.store.run_format import part_metadata

    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **part_metadata()})
    path = analysis_dir(run_dir) / f"{name}.parquet"
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def write_claims_files(run_dir: str | os.PathLike, claims: pd.DataFrame) -> list[Path]:
    """claims.csv and claims.md (a Markdown table) beside claims.parquet."""
    d = analysis_dir(run_dir)
    md = ["| " + " | ".join(ANALYSIS_COLUMNS["claims"]) + " |",
          "|" + "---|" * len(ANALYSIS_COLUMNS["claims"])]
    for row in claims[ANALYSIS_COLUMNS["claims"]].itertuples(index=False):
        md.append("| " + " | ".join(str(v).replace("|", "/").replace("\n", " ") for v in row) + " |")
    return [write_text_atomic(d / "claims.csv", claims.to_csv(index=False)),
            write_text_atomic(d / "claims.md", "\n".join(md) + "\n")]


def write_summary(run_dir: str | os.PathLike, summary: dict) -> Path:
    return write_json_atomic(analysis_dir(run_dir) / SUMMARY, summary)


class DamagedTableError(RunDirError):
    """An analysis table or summary.json cannot be read (truncated, not Parquet / JSON)."""


_REBUILD = "`attnlife analyze {run}` rebuilds it"


def _read_table_file(path: Path, run_dir: str | os.PathLike) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, TypeError, KeyError, pa.ArrowException) as err:
        raise DamagedTableError(f"{path} is damaged ({first_line(err)}); "
                                f"{_REBUILD.format(run=run_dir)}") from None


def read_analysis_table(run_dir: str | os.PathLike, name: str) -> pd.DataFrame:
    """Table `name` of RUN/analysis/ as a DataFrame; RunDirError naming the fix if absent,
    DamagedTableError (a RunDirError, one line) if it cannot be read."""
    path = analysis_dir(run_dir) / f"{name}.parquet"
    if not path.is_file():
        known = ", ".join(sorted(ANALYSIS_COLUMNS))
        raise RunDirError(f"{path} does not exist; run `attnlife analyze {run_dir}` first "
                          f"(tables: {known})")
    return _read_table_file(path, run_dir)


def read_analysis(run_dir: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Every readable table in RUN/analysis/ (name -> DataFrame); {} when the run was never
    analysed. A damaged table is left out with one DamagedFileWarning naming it and the fix."""
    d = analysis_dir(run_dir)
    if not d.is_dir():
        return {}
    tables = {}
    for path in sorted(d.glob("*.parquet")):
        try:
            tables[path.stem] = _read_table_file(path, run_dir)
        except DamagedTableError as err:
            warn_damaged_text(f"{err}; skipped until then")
    return tables


def read_summary(run_dir: str | os.PathLike) -> dict:
    """RUN/analysis/summary.json ({} when the run was never analysed, or, with one
    DamagedFileWarning, when it is damaged)."""
    path = analysis_dir(run_dir) / SUMMARY
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(summary, dict):
            raise ValueError(f"a JSON {type(summary).__name__}, not an object")
        return summary
    except (OSError, ValueError, UnicodeDecodeError) as err:
        warn_damaged(path, first_line(err), f"skipped; {_REBUILD.format(run=run_dir)}")
        return {}
