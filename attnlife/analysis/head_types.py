"""Head types over training: per-step type labels, emergence steps, the induction phase change (pure).

Type scores (contract names, measured per head per checkpoint by the probe pass or the tracker):
`prev_token_score` (mean a_{i,i-1}), `local_score` (mass within 3 tokens back incl. self),
`sink_mass` (mean a_{i,0}, i >= 1: the attention metric), `self_score` (mean a_{i,i}), `induction_score`.

- Label at a step: among the types whose score reaches its threshold, the one with the largest
  score / threshold; "mixed" when none does (score column: that type's score, or the largest
  ratio's score for "mixed"). Thresholds (`THRESHOLDS`): previous-token 0.4, local 0.7, sink 0.3
  (the contract's sink_head_share cut), self 0.4, induction 0.3.
- Emergence of a type in a head: the first sample k with score_k >= threshold such that every
  later sample stays >= (1 - hysteresis) * threshold and at least `min_points` samples (k
  included) remain; a score that crosses and falls back is no emergence.
- Induction phase change of a run: over the per-step maximum of `induction_score` across heads,
  the largest rise between consecutive samples, kept when it is at least `min_jump` and at least
  half of the total rise, and the score after it reaches the induction threshold. Loss before /
  after are the checkpoint loss (`probe_loss_nats`, measured at every checkpoint; never
  interpolated: NaN where that step has no loss), and loss_bump = max(0, max loss over the
  samples in [step_before, step_after] of the densest loss series - loss_before) in nats: a rise of
  the loss. Olsson et al.'s "bump" is a different thing, a stretch of steeper improvement; the
  claim `ol_induction_bump` tests that one.
- The emergence table also gives the checkpoint loss at the emergence step (`probe_loss_nats`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

TYPE_SCORES = {"prev_token_score": "previous_token", "local_score": "local", "sink_mass": "sink",
               "self_score": "self", "induction_score": "induction"}
THRESHOLDS = {"previous_token": 0.4, "local": 0.7, "sink": 0.3, "self": 0.4, "induction": 0.3}


def label_types(scores: pd.DataFrame, thresholds: dict[str, float] = THRESHOLDS) -> pd.DataFrame:
    """Per (step, layer, head_index) the dominant type: scores has step, layer, head_index, metric, value
    (metric among TYPE_SCORES) -> DataFrame step, layer, head_index, type, score."""
    cols = ["step", "layer", "head_index", "type", "score"]
    rows = scores[scores.metric.isin(list(TYPE_SCORES))]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    wide = rows.pivot_table(index=["step", "layer", "head_index"], columns="metric", values="value")
    types = [TYPE_SCORES[m] for m in wide.columns]
    vals = wide.to_numpy(dtype=np.float64)                                    # [N, types]
    ratio = vals / np.array([thresholds[t] for t in types])[None, :]
    ratio = np.where(np.isfinite(ratio), ratio, -np.inf)
    best = ratio.argmax(axis=1)
    score = vals[np.arange(len(vals)), best]
    label = np.where(ratio[np.arange(len(vals)), best] >= 1.0, np.array(types)[best], "mixed")
    out = wide.index.to_frame(index=False)
    out["type"] = label
    out["score"] = score
    return out[cols]


def emergence_index(values: np.ndarray, threshold: float, hysteresis: float = 0.1,
                    min_points: int = 2) -> int | None:
    """First index k with values[k] >= threshold and values[k:] >= (1 - hysteresis) threshold,
    len(values) - k >= min_points; None if there is none (module docstring)."""
    v = np.asarray(values, dtype=np.float64)
    floor = (1.0 - hysteresis) * threshold
    # stays[k]: every value from k on is above the floor (suffix minimum)
    stays = np.minimum.accumulate(np.where(np.isfinite(v), v, -np.inf)[::-1])[::-1] >= floor
    for k in range(len(v) - min_points + 1):
        if v[k] >= threshold and stays[k]:
            return k
    return None


def emergence_table(scores: pd.DataFrame, loss: pd.Series | None = None, thresholds: dict[str, float] = THRESHOLDS,
                    hysteresis: float = 0.1, min_points: int = 2) -> pd.DataFrame:
    """Rows layer, head_index, type, emergence_step, threshold, probe_loss_nats (the loss by step
    `loss` at the emergence step, NaN where it has none) for every head and type that emerged."""
    rows = []
    sel = scores[scores.metric.isin(list(TYPE_SCORES))]
    at = loss if loss is not None else pd.Series(dtype=float)
    for (layer, head, metric), g in sel.groupby(["layer", "head_index", "metric"]):
        g = g.sort_values("step")
        kind = TYPE_SCORES[metric]
        k = emergence_index(g.value.to_numpy(), thresholds[kind], hysteresis, min_points)
        if k is not None:
            step = int(g.step.iloc[k])
            rows.append({"layer": int(layer), "head_index": int(head), "type": kind, "emergence_step": step,
                         "threshold": thresholds[kind], "probe_loss_nats": float(at.get(step, np.nan))})
    return pd.DataFrame(rows, columns=EMERGENCE_COLUMNS)


EMERGENCE_COLUMNS = ["layer", "head_index", "type", "emergence_step", "threshold", "probe_loss_nats"]


def induction_phase(steps: np.ndarray, max_score: np.ndarray, loss: pd.Series | None = None,
                    threshold: float = THRESHOLDS["induction"], min_jump: float = 0.1,
                    dense: tuple[np.ndarray, np.ndarray] | None = None) -> dict | None:
    """The induction phase change (module docstring) or None: dict step, step_before, score_before,
    score_after, loss_before, loss_after (the checkpoint loss `loss` by step at those steps, NaN
    where missing), loss_bump (nats; NaN without any loss). `dense` (steps, loss), e.g. the
    per-step train loss, is searched for the bump instead of `loss`."""
    s = np.asarray(max_score, dtype=np.float64)
    x = np.asarray(steps)
    if len(s) < 2:
        return None
    jumps = np.diff(s)
    k = int(np.argmax(jumps))
    total = float(s.max() - s[0])
    if jumps[k] < min_jump or jumps[k] < 0.5 * total or s[k + 1] < threshold:
        return None
    before, after = int(x[k]), int(x[k + 1])
    loss = loss if loss is not None else pd.Series(dtype=float)
    loss_before, loss_after = float(loss.get(before, np.nan)), float(loss.get(after, np.nan))
    if dense is not None and len(dense[0]):
        ls, lv = np.asarray(dense[0], dtype=np.float64), np.asarray(dense[1], dtype=np.float64)
    else:
        ls, lv = loss.index.to_numpy(dtype=np.float64), loss.to_numpy(dtype=np.float64)
    window = lv[(ls >= before) & (ls <= after)]
    if not np.isfinite(loss_before):
        bump = float("nan")
    else:
        bump = max(0.0, float(window.max()) - loss_before) if len(window) else 0.0
    return {"step": after, "step_before": before, "score_before": float(s[k]), "score_after": float(s[k + 1]),
            "loss_before": loss_before, "loss_after": loss_after, "loss_bump": bump}
