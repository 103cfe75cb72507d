"""Claims of the newer literature on attention development, each with its source and its number.

Every number was read in its source (quoted in the docstring); where our quantity differs from the
paper's the docstring says how. Left out, because the number could not be read in the source:
the induction-head emergence time law of Aoyama, Wilcox & Schneider (2025, arXiv 2511.16893):
only a third-party summary of the paper states the law (N = T sqrt(B C) tokens, T ~ 10^5.7); the
paper's own text with the equation and its units was not reachable (docs/analysis.md).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from attnlife.analysis.claim_context import FAILS, HOLDS, NA, ClaimContext, result

OLSSON = "Olsson et al. 2022"
DIEHL_MARTINEZ = "Diehl Martinez et al. 2024"
XU = "Xu 2026"
SOURCES = (OLSSON, DIEHL_MARTINEZ, XU)
SINK_THRESHOLD = 0.3  # a head is a sink head when its mean attention on token 0 exceeds this


def _slope(steps: np.ndarray, loss: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of loss on step (nats / step) and its standard error (inf below 3 points)."""
    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray(loss, dtype=np.float64)
    if len(x) < 3 or np.ptp(x) == 0:
        return float("nan"), float("inf")
    xc, yc = x - x.mean(), y - y.mean()
    b = float(xc @ yc / (xc @ xc))
    resid = yc - b * xc
    return b, float(np.sqrt(resid @ resid / (len(x) - 2) / (xc @ xc)))


def induction_loss_bump(ctx: ClaimContext) -> dict:
    """Olsson et al. (2022), "In-context Learning and Induction Heads": during the induction phase
    change "Loss undergoes a small 'bump' (that is, the loss curve undergoes a period of visibly
    steeper improvement than the parts of the curve before and after)"; "It is in fact the only
    place in training where the loss is not convex". Test: with the run's induction phase change
    [step_before, step] (table `induction_phase`) as window W of length w, the least-squares slope
    of the per-step training loss over W is steeper (more negative) than over the w steps before W
    and the w steps after it, each by more than 2 combined standard errors."""
    if ctx.induction_phase is None or ctx.induction_phase.empty:
        return result("", NA, "no induction phase change in this run (largest induction score rise too small)")
    row = ctx.induction_phase.iloc[0]
    a, b = int(row["step_before"]), int(row["step"])
    loss = ctx.train_loss.dropna()
    if loss.empty:
        return result("", NA, "run has no per-step training loss")
    w = max(b - a, 3)
    steps = loss.index.to_numpy(dtype=np.int64)
    windows = {"before": (a - w, a), "inside": (a, b), "after": (b, b + w)}
    fits = {k: _slope(steps[(steps >= lo) & (steps <= hi)], loss.to_numpy()[(steps >= lo) & (steps <= hi)])
            for k, (lo, hi) in windows.items()}
    if any(not np.isfinite(s) for s, _ in fits.values()):
        return result("", NA, f"too few training-loss points around the phase change {a}-{b} (window {w} steps)")
    (s_in, e_in), (s_b, e_b), (s_a, e_a) = fits["inside"], fits["before"], fits["after"]
    steeper = all(other - s_in > 2 * np.hypot(e_in, e) for other, e in ((s_b, e_b), (s_a, e_a)))
    text = (f"loss slope {s_in * 1e3:+.3f} mnats/step in {a}-{b} vs {s_b * 1e3:+.3f} before, "
            f"{s_a * 1e3:+.3f} after (se {e_in * 1e3:.3f}, {e_b * 1e3:.3f}, {e_a * 1e3:.3f})")
    return result(text, HOLDS if steeper else FAILS,
                  "steeper improvement inside the phase change than either side" if steeper
                  else "not steeper than both neighbouring windows by 2 standard errors")


def layers_stabilise_early(ctx: ClaimContext, share: float = 0.8, tol: float = 0.1) -> dict:
    """Diehl Martinez, Lesci & Buttery (2024), "Tending Towards Stability" (EMNLP Findings): "nearly
    all layers in larger models stabilise early in training - within the first 20%" (Pythia; the
    paper tracks the convergence of each layer's attention and MLP activations to their final
    state). Our quantity: a layer's attention state is the vector of its heads' entropies
    (`entropy_bits`, the attention split); its distance to the final state d(s) = ||v(s) - v(end)||
    / max_s ||v(s) - v(end)||; the layer stabilises at the first step after which d stays <= 0.1.
    Holds when at least 80 % of layers stabilise by 20 % of the last tracked step."""
    m = ctx.metrics
    heads = m[(m.split == ctx.split) & (m.metric == "entropy_bits") & (m.head_index >= 0) & (m.layer >= 0)]
    if heads.empty:
        return result("", NA, "run has no per-head entropy_bits on the attention split")
    wide = heads.pivot_table(index="step", columns=["layer", "head_index"], values="value").sort_index().dropna()
    if len(wide) < 4:
        return result("", NA, f"only {len(wide)} tracked steps")
    end = float(wide.index[-1])
    settled = {}
    for layer in sorted({c[0] for c in wide.columns}):
        v = wide.xs(layer, axis=1, level=0).to_numpy()
        d = np.linalg.norm(v - v[-1], axis=1)
        d = d / d.max() if d.max() > 0 else d
        above = np.nonzero(d > tol)[0]
        settled[int(layer)] = int(wide.index[above[-1] + 1]) if len(above) else int(wide.index[0])
    early = [layer for layer, s in settled.items() if s <= 0.2 * end]
    ok = len(early) >= share * len(settled)
    text = ", ".join(f"L{layer} @ {s}" for layer, s in settled.items())
    return result(f"stable from: {text} (20 % of training = step {0.2 * end:.0f})", HOLDS if ok else FAILS,
                  f"{len(early)} of {len(settled)} layers stable within the first 20 %")


def _sink_masses(ctx: ClaimContext) -> pd.DataFrame:
    m = ctx.metrics
    return m[(m.split == ctx.split) & (m.metric == "sink_mass") & (m.head_index >= 0) & (m.layer >= 0)]


def sink_share_grows(ctx: ClaimContext) -> dict:
    """Xu (2026), "When Do Attention Circuits Form?" (arXiv 2606.02378): the whole-model share of
    first-token (BOS-attractor) heads follows "a gradual ramp in Pythia 1B"; the study's notes give
    10.9 % of heads at ~6B tokens, 46.1 % at ~80B, 57.8 % at 300B. Our quantity: the share of heads
    whose mean attention on token 0 (`sink_mass`) exceeds 0.3 (Xu classifies a head by
    selectivity >= 30x over a uniform-other baseline). Holds when the share at the last tracked step
    exceeds the share at the first and rises with step (Spearman rho > 0, exact/permutation p < 0.05)."""
    from attnlife.analysis.correlations import rank_test

    s = _sink_masses(ctx)
    if s.empty:
        return result("", NA, "run has no per-head sink_mass (run `attnlife track RUN`)")
    share = s.assign(sink=s.value > SINK_THRESHOLD).groupby("step").sink.mean().sort_index()
    first, last = float(share.iloc[0]), float(share.iloc[-1])
    test = rank_test(share.index.to_numpy(dtype=float), share.to_numpy())
    rising = np.isfinite(test.rho) and test.rho > 0 and test.p < 0.05
    ok = last > first and rising
    rho = f"rho {test.rho:+.2f}, p {test.p:.2g}" if np.isfinite(test.rho) else "constant"
    return result(f"sink-head share {first:.0%} at step {int(share.index[0])} -> {last:.0%} at step "
                  f"{int(share.index[-1])} (max {share.max():.0%}; {rho})", HOLDS if ok else FAILS,
                  "rises over training" if ok else ("no sink head forms" if share.max() == 0 else "does not rise"))


def no_sinks_in_first_two_layers(ctx: ClaimContext) -> dict:
    """Xu (2026): "Layers 0 and 1 produce zero BOS-classified heads at every revision in every
    model" (Pythia 1B: 0/8 heads in L0 and in L1 at every one of 10 revisions). Our quantity: no head
    of layers 0 and 1 has `sink_mass` > 0.3 at any tracked step. Needs at least 3 layers (otherwise
    layers 0-1 are the whole model)."""
    if ctx.n_layer < 3:
        return result("", NA, f"claim contrasts layers 0-1 with later ones; this model has {ctx.n_layer} layers")
    s = _sink_masses(ctx)
    if s.empty:
        return result("", NA, "run has no per-head sink_mass (run `attnlife track RUN`)")
    early = s[s.layer <= 1]
    worst = early.loc[early.value.idxmax()]
    n_sink = int((early.value > SINK_THRESHOLD).sum())
    ok = n_sink == 0
    return result(f"max sink_mass in layers 0-1: {worst.value:.3f} (L{int(worst.layer)}H{int(worst.head_index)} "
                  f"at step {int(worst.step)}); {n_sink} head-checkpoints above 0.3", HOLDS if ok else FAILS,
                  "no sink head in layers 0-1" if ok else "sink heads in layers 0-1")


CLAIMS = [("ol_induction_bump", OLSSON, "loss improves visibly faster during the induction phase change (the 'bump')",
           induction_loss_bump),
          ("dm_layers_stable_20", DIEHL_MARTINEZ, "nearly all layers stabilise within the first 20 % of training",
           layers_stabilise_early),
          ("xu_sink_share_grows", XU, "share of first-token sink heads grows over training (Pythia 1B: 10.9 % -> 57.8 %)",
           sink_share_grows),
          ("xu_no_sinks_l0_l1", XU, "no first-token sink heads in layers 0 and 1", no_sinks_in_first_two_layers)]
