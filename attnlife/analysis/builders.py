"""Build each analysis table of one run from its metric and spectra frames (pure pandas/numpy).

Every builder takes DataFrames already cleaned of excluded steps and returns a DataFrame with the
contract columns (attnlife.store.analysis_tables.ANALYSIS_COLUMNS), empty when the run lacks the
data, plus a short note for the summary saying what was used or skipped.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from attnlife.analysis import correlations as corr
from attnlife.analysis.cycles import cycle_rows, smooth
from attnlife.analysis.embedding import embed_trajectories
from attnlife.analysis.head_types import TYPE_SCORES, emergence_table, induction_phase, label_types
from attnlife.analysis.phases import detect_phases, phase_rows
from attnlife.analysis.series import (HEAD_METRICS, PHASE_SERIES, checkpoint_loss, head_table, layer_series,
                                      model_series, spectra_head_series, train_loss)
from attnlife.store.analysis_tables import ANALYSIS_COLUMNS

SAMPLE_METRICS = ("distinct_1", "distinct_2", "distinct_3", "distinct_4", "repetition_4", "mean_logprob_nats")
WEIGHT_STATS = ("stable_rank", "spectral_entropy_bits", "lambda_1")
FOCUS_SIGNALS = {"sink_mass": 1.0, "entropy_bits": -1.0, "max_attention": 1.0}  # sign: + = focus is high


def empty(name: str) -> pd.DataFrame:
    return pd.DataFrame(columns=ANALYSIS_COLUMNS[name])


def _phase_input(table: pd.DataFrame, loss: tuple[str, pd.Series]) -> dict[str, np.ndarray]:
    """The phase series of `table` plus the checkpoint loss when it was measured at every one of
    the table's steps (the probe loss is; val loss at its eval steps usually is not, and is then
    left out: never interpolated)."""
    cols = {c: table[c].to_numpy(dtype=float) for c in PHASE_SERIES if c in table.columns}
    name, series = loss
    if len(series) and table.index.isin(series.index).all():
        cols[name] = series.reindex(table.index).to_numpy(dtype=float)
    return cols


def _phase_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The PHASE_SERIES columns of a step-indexed table on the steps that measured them (steps with
    only other metrics, e.g. the light tier's every-step rows, dropped), columns with gaps dropped."""
    cols = [c for c in PHASE_SERIES if c in table.columns]
    return table[cols].dropna(axis=0, how="all").dropna(axis=1, how="any")


def phases_table(frame: pd.DataFrame, split: str | None, min_size: int = 3) -> tuple[pd.DataFrame, str]:
    """Phases at model scope (layer means) and per layer, on `split`'s attention series and the
    checkpoint loss (`series.checkpoint_loss`) where it covers every step."""
    if split is None:
        return empty("phases"), "skipped: no attention metrics in this run"
    loss = checkpoint_loss(frame)
    rows = []
    model = _phase_frame(model_series(frame, split))
    rows += phase_rows("model", -1, detect_phases(model.index.to_numpy(), _phase_input(model, loss), min_size))
    for layer in sorted(head_table(frame, split).layer.unique()):
        t = _phase_frame(layer_series(frame, split, int(layer)))
        rows += phase_rows(f"L{layer}", int(layer), detect_phases(t.index.to_numpy(), _phase_input(t, loss), min_size))
    used = loss[0] if len(loss[1]) and model.index.isin(loss[1].index).all() else "no loss (not measured at every step)"
    note = f"split {split}, {len(model)} steps, min segment {min_size} samples, loss series: {used}"
    return pd.DataFrame(rows, columns=ANALYSIS_COLUMNS["phases"]), note   # no rows: empty("phases")


def type_split(frame: pd.DataFrame) -> str | None:
    """`probe` when it holds type scores, else `train` when it does, else None (sink_mass, an
    attention metric every tracked split has, does not count)."""
    scores = [m for m in TYPE_SCORES if m != "sink_mass"]
    for split in ("probe", "train"):
        if frame[(frame.split == split) & frame.metric.isin(scores)].size:
            return split
    return None


def head_type_tables(frame: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], str]:
    """head_types, emergence and induction_phase from the per-head type scores."""
    split = type_split(frame)
    if split is None:
        return {n: empty(n) for n in ("head_types", "emergence", "induction_phase")}, \
            "skipped: no per-head type scores (run `attnlife track RUN` to add split probe)"
    scores = head_table(frame, split)
    scores = scores[scores.metric.isin(list(TYPE_SCORES))]
    ind = scores[scores.metric == "induction_score"].groupby("step").value.max().sort_index()
    (_, loss), dense = checkpoint_loss(frame), train_loss(frame)
    phase = induction_phase(ind.index.to_numpy(), ind.to_numpy(), loss, dense=(dense.index.to_numpy(), dense.to_numpy()))
    induction = pd.DataFrame([phase] if phase else [], columns=ANALYSIS_COLUMNS["induction_phase"])
    return {"head_types": label_types(scores), "emergence": emergence_table(scores, loss),
            "induction_phase": induction}, f"split {split}"


LIGHT_FOCUS_SIGNALS = {"light_sink_mass": 1.0, "light_entropy_bits": -1.0}   # the per-step light tier
MARKOV_FOCUS_SIGNALS = ("attn_focus_excess", "attn_token_excess_max")          # model level, theory-markov


LIGHT_NOISE_FLOOR = 8.0   # a light-tier dip must exceed this many standard errors of the smoothed noise


def light_window(n: int, smooth_window: int) -> int:
    """Moving-average window for a per-step (light tier) signal of n samples: 1 % of the run, at
    least `smooth_window`, odd."""
    return max(smooth_window, (n // 100) | 1)


def light_prominence(values: np.ndarray, window: int, rel_prominence: float) -> float:
    """Cycle threshold for a per-step signal: rel_prominence x the range of the smoothed signal, but
    at least LIGHT_NOISE_FLOOR x sigma / sqrt(window), sigma = std(first differences) / sqrt(2) (the
    batch-to-batch noise). Without the floor a flat noisy signal's range is its noise, and 20 % of
    it makes wiggles cycles (white noise, 3000 steps, window 31: 0.3 cycles per series at 6 sigma,
    none in 40 series at 8)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 3:
        return float("inf")
    s = smooth(v, window)
    noise = float(np.std(np.diff(v)) / np.sqrt(2) / np.sqrt(window))
    return max(rel_prominence * float(s.max() - s.min()), LIGHT_NOISE_FLOOR * noise)


def cycles_table(frame: pd.DataFrame, split: str | None, rel_prominence: float = 0.2,
                 smooth_window: int = 3, focus_window: int = 5) -> tuple[pd.DataFrame, str]:
    """Focus-dilution cycles per head on the focus signals (sink mass, max attention, -entropy;
    smoothed over `smooth_window` samples) and on the per-step light tier (light sink mass,
    -light entropy; smoothed over `light_window`, above `light_prominence`), plus the model-level focus signals of Markov
    theory runs (`attn_focus_excess`, `attn_token_excess_max`; smoothed over `light_window(n, focus_window)`,
    above `light_prominence`: a run logged every step is as noisy as the light tier)."""
    rows = []
    if split is not None:
        heads = head_table(frame, split)
        for (layer, head, metric), g in heads[heads.metric.isin(list(FOCUS_SIGNALS))].groupby(
                ["layer", "head_index", "metric"]):
            g = g.sort_values("step")
            for r in cycle_rows(g.step.to_numpy(), FOCUS_SIGNALS[metric] * g.value.to_numpy(),
                                rel_prominence, smooth_window):
                rows.append({"layer": int(layer), "head_index": int(head), "signal": metric, **r})
    light = frame[frame.metric.isin(list(LIGHT_FOCUS_SIGNALS)) & (frame.split == "train") & (frame.head_index >= 0)]
    for (layer, head, metric), g in light.groupby(["layer", "head_index", "metric"]):
        g = g.groupby("step").value.mean().sort_index()
        window = light_window(len(g), smooth_window)
        v = LIGHT_FOCUS_SIGNALS[metric] * g.to_numpy()
        for r in cycle_rows(g.index.to_numpy(), v, smooth_window=window,
                            prominence=light_prominence(v, window, rel_prominence)):
            rows.append({"layer": int(layer), "head_index": int(head), "signal": metric, **r})
    for metric in MARKOV_FOCUS_SIGNALS:   # same noise floor as the light tier: logged every step they are as noisy
        focus = frame[(frame.metric == metric) & (frame.split == "train")].sort_values("step")
        window = light_window(len(focus), focus_window)
        v = focus.value.to_numpy()
        for r in cycle_rows(focus.step.to_numpy(), v, smooth_window=window,
                            prominence=light_prominence(v, window, rel_prominence)):
            rows.append({"layer": -1, "head_index": -1, "signal": metric, **r})
    out = pd.DataFrame(rows, columns=ANALYSIS_COLUMNS["cycles"])
    closed = int((out.status == "closed").sum())
    return out, f"{closed} closed, {len(out) - closed} open (open cycles are not counted)"


def _attention_columns(frame: pd.DataFrame, split: str) -> dict[tuple[str, int], pd.Series]:
    out = {}
    model = model_series(frame, split)
    for c in model.columns:
        out[(c, -1)] = model[c].dropna()
    for layer in sorted(head_table(frame, split).layer.unique()):
        t = layer_series(frame, split, int(layer))
        for c in t.columns:
            out[(c, int(layer))] = t[c].dropna()
    return out


def correlation_rows(frame: pd.DataFrame, split: str | None, spectra: pd.DataFrame) -> list[dict]:
    """steps_raw / steps_diff / steps_resid rows (attention vs the checkpoint loss and the sample
    metrics) and head_weights / head_weights_resid rows (per head, attention vs W_QK statistics)."""
    if split is None:
        return []
    name, loss = checkpoint_loss(frame)
    targets = {name: loss}
    sample = frame[(frame.split == "sample") & (frame.layer < 0)]
    for m in SAMPLE_METRICS:
        s = sample[sample.metric == m].groupby("step").value.mean()
        if len(s):
            targets[m] = s
    rows = []
    for (xname, layer), x in _attention_columns(frame, split).items():
        for yname, y in targets.items():
            rows += corr.paired_rows(x, y, (xname, layer, -1, yname))
    heads = head_table(frame, split)
    for stat in WEIGHT_STATS:
        w = spectra_head_series(spectra, stat)
        for metric in HEAD_METRICS:
            h = heads[heads.metric == metric]
            for (layer, head), g in h.groupby(["layer", "head_index"]):
                if (layer, head) not in w.columns:
                    continue
                rows += corr.paired_rows(g.set_index("step").value, w[(layer, head)],
                                         (metric, int(layer), int(head), f"qk_{stat}"),
                                         kinds=("head_weights", None, "head_weights_resid"))
    return rows


def embedding_tables(frame: pd.DataFrame, split: str | None, spectra: pd.DataFrame,
                     seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """UMAP embedding of per-head trajectories of the attention metrics and W_QK statistics."""
    blocks, keys = [], None
    sources = []
    if split is not None:
        heads = head_table(frame, split)
        sources += [heads[heads.metric == m].pivot_table(index="step", columns=["layer", "head_index"],
                                                         values="value") for m in HEAD_METRICS]
    sources += [spectra_head_series(spectra, s) for s in WEIGHT_STATS]
    for wide in sources:
        wide = wide.dropna(axis=0, how="any")
        if wide.empty or wide.shape[1] < 2:
            continue
        cols = sorted(wide.columns)
        if keys is None:
            keys = cols
        if cols != keys:
            continue
        blocks.append(wide[keys].to_numpy(dtype=float).T)                    # [N heads, T steps]
    if keys is None or len(keys) < 2:
        return empty("embedding"), empty("embedding_edges"), {"skipped": "fewer than 2 heads with trajectories"}
    emb, edges, info = embed_trajectories([(int(a), int(b)) for a, b in keys], blocks, seed=seed)
    info["statistics"] = len(blocks)
    return emb, edges, info
