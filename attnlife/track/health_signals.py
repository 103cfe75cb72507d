"""Attention-health signals: what the light tier measures at every step, arranged for detectors.

A formula sheet (pure numpy, no torch): every signal is a function of the light tier's per-head
rows at one step (`attnlife.track.light_tracker`), plus, for the rate of fall, the rows of earlier
steps. Shapes: [L, H] per head, [L] per layer; T = the sequence length the light tier read.

  entropy_bits        H = mean_i H_i, clamped at 0 (a mean of exact zeros can round below 0)   (bits)
  uniform_entropy     U(T) = mean_{i<T} log2(i + 1) = log2(T!) / T: H of uniform causal
                      attention, the largest value H can take; U(64) = 4.62 bits            (bits)
  uniform_fraction    H / U(T) in [0, 1]; 1 = every row uniform over its keys (a "dead" head
                      that mixes without selecting; every head starts near 1); NaN at T = 1    (1)
  entropy_fall_bits   max of H over the steps in (s - W, s] minus H at s, W = a window in steps:
                      how far the head fell from its recent high; >= 0                        (bits)
  lse_max_nats        max_i logsumexp_j s_ij: max logit <= lse_max <= max logit + log T; zero
                      logits give log T = 4.16 at T = 64                                       (nats)
  sink_mass           mean_{i>=1} a_i0: mass on token 0; 1 / (i + 1) per row when uniform,
                      (H_T - 1) / (T - 1) = 0.059 averaged at T = 64 (H_T the harmonic number)   (1)
  layer_sink_mass     mean over the layer's heads of sink_mass                       [L]       (1)
  collapsed_share     share of the layer's heads with H <= a floor                   [L]       (1)

`StepSignals` holds one step's arrays; `signals_from_rows` builds it from the light tier's
`MetricRow`s, `signals_from_table` from a run's metric table (split `train`), so the live monitor
and the offline replay read the same numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
import pandas as pd

# light-tier metric -> signal name (the light tier logs these per head at every read step)
LIGHT_METRICS = {"light_entropy_bits": "entropy_bits", "light_lse_max_nats": "lse_max_nats",
                 "light_sink_mass": "sink_mass"}


def uniform_entropy_bits(seq_len: int) -> float:
    """U(T) = mean_{i=0}^{T-1} log2(i + 1) = log2(T!) / T: the light tier's row-mean entropy of
    uniform causal attention over T tokens (the largest it can be)."""
    if seq_len < 1:
        raise ValueError(f"seq_len={seq_len} must be >= 1")
    return math.lgamma(seq_len + 1) / (seq_len * math.log(2.0))


def uniform_sink_mass(seq_len: int) -> float:
    """mean_{i=1}^{T-1} 1 / (i + 1) = (H_T - 1) / (T - 1): sink mass of uniform causal attention
    (NaN for T = 1, where no row i >= 1 exists)."""
    if seq_len < 2:
        return math.nan
    return (sum(1.0 / k for k in range(1, seq_len + 1)) - 1.0) / (seq_len - 1)


@dataclass(frozen=True)
class StepSignals:
    """One step's per-head signals [L, H] (NaN where a head was not measured) and T."""

    step: int
    entropy_bits: np.ndarray
    lse_max_nats: np.ndarray
    sink_mass: np.ndarray
    seq_len: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.entropy_bits.shape  # type: ignore[return-value]

    def uniform_fraction(self) -> np.ndarray:
        """H / U(T) per head, in [0, 1] up to rounding; NaN for one-token sequences (U(1) = 0: a
        single key leaves nothing to select, so no head is dead or alive there)."""
        u = uniform_entropy_bits(self.seq_len)
        if u > 0:
            return self.entropy_bits / u
        return np.full(self.entropy_bits.shape, np.nan)

    def layer_sink_mass(self) -> np.ndarray:
        """Mean sink mass over each layer's heads [L] (NaN heads left out)."""
        return _nanmean_rows(self.sink_mass)

    def collapsed_share(self, floor_bits: float) -> np.ndarray:
        """Share of each layer's measured heads with H <= floor_bits [L]."""
        measured = ~np.isnan(self.entropy_bits)
        low = (self.entropy_bits <= floor_bits) & measured
        return low.sum(axis=1) / np.maximum(measured.sum(axis=1), 1)


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    n = (~np.isnan(a)).sum(axis=1)
    return np.where(n > 0, np.nansum(a, axis=1) / np.maximum(n, 1), np.nan)


def signals_from_rows(step: int, rows: Iterable, seq_len: int,
                      shape: Optional[tuple[int, int]] = None) -> Optional[StepSignals]:
    """`StepSignals` of one step from light-tier `MetricRow`s (layer, head_index, metric, value),
    or None when the rows hold no per-head light entropy. `shape` = (L, H) if known (else the
    largest layer and head seen + 1)."""
    picked = [(r.layer, r.head_index, LIGHT_METRICS[r.metric], r.value) for r in rows
              if r.metric in LIGHT_METRICS and r.layer >= 0 and r.head_index >= 0]
    if not any(name == "entropy_bits" for _, _, name, _ in picked):
        return None
    if shape is None:
        shape = (max(p[0] for p in picked) + 1, max(p[1] for p in picked) + 1)
    arrays = {name: np.full(shape, np.nan) for name in LIGHT_METRICS.values()}
    for layer, head, name, value in picked:
        arrays[name][layer, head] = value
    return _signals(step, arrays, seq_len)


def _signals(step: int, arrays: dict, seq_len: int) -> StepSignals:
    return StepSignals(int(step), np.maximum(arrays["entropy_bits"], 0.0), arrays["lse_max_nats"],
                       arrays["sink_mass"], int(seq_len))


def signals_from_table(metrics: pd.DataFrame, seq_len: int, split: str = "train") -> Iterator[StepSignals]:
    """`StepSignals` of every step of a metric table (long format: step, split, layer,
    head_index, metric, value) that has per-head light entropy, in step order."""
    m = metrics[(metrics["split"] == split) & metrics["metric"].isin(list(LIGHT_METRICS))
                & (metrics["layer"] >= 0) & (metrics["head_index"] >= 0)]
    if m.empty:
        return
    L, H = int(m["layer"].max()) + 1, int(m["head_index"].max()) + 1
    steps = np.sort(m.loc[m["metric"] == "light_entropy_bits", "step"].unique())
    cube = {}
    for metric, name in LIGHT_METRICS.items():
        sub = m[m["metric"] == metric]
        arr = np.full((len(steps), L, H), np.nan)
        idx = np.searchsorted(steps, sub["step"].to_numpy())
        # a step after the last entropy step searches to len(steps): compared with the last step, it is not kept
        ok = steps[np.minimum(idx, len(steps) - 1)] == sub["step"].to_numpy()
        arr[idx[ok], sub["layer"].to_numpy()[ok], sub["head_index"].to_numpy()[ok]] = sub["value"].to_numpy()[ok]
        cube[name] = arr
    for i, step in enumerate(steps):
        yield _signals(int(step), {name: arr[i] for name, arr in cube.items()}, seq_len)


def entropy_fall_bits(history: Sequence[StepSignals], window: int) -> np.ndarray:
    """max of H over the steps s - window < t <= s of `history` (ascending, last = s) minus H_s,
    per head [L, H] (>= 0; NaN where H_s is NaN)."""
    last = history[-1]
    recent = [h.entropy_bits for h in history if h.step > last.step - window]
    if len(recent) < 2:
        return np.where(np.isnan(last.entropy_bits), np.nan, 0.0)
    # the high over the steps (axis 0) leaving NaNs out; a head unmeasured at every step of the
    # window has no high: fmax.reduce gives NaN there quietly (nanmax would warn "All-NaN slice")
    high = np.fmax.reduce(np.stack(recent))
    # fmax would turn the NaN of an unmeasured head into 0: keep it NaN, as documented
    return np.where(np.isnan(last.entropy_bits), np.nan, np.fmax(high - last.entropy_bits, 0.0))
