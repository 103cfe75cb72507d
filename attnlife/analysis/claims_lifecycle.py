"""Claims of the attention-lifecycle paper, each a small function of a ClaimContext.

Layers are numbered from 0 here as everywhere in attnlife; the paper numbers them from 1, so its
"early layers (1-3)" are our layers 0-2, its "middle layers (4-6)" (of a 6-layer model) our
layers 3-5, and its "final layers" our last three layers. The layer-similarity claims read the
paper's eq. 6, the cross-layer JSD (`xlayer_jsd`: JSD in bits between the head-averaged attention
rows of two layers, on the probe windows): a group's value at a step is the mean over every pair
(a, b), a < b, of layers in the group. Each function's docstring gives its definition; a number
holds within REL_TOL (15 %).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from attnlife.analysis.claim_context import FAILS, HOLDS, NA, ClaimContext, near, result, value_near_step

SOURCE = "lifecycle paper"


def _start_and_1000(ctx: ClaimContext, name: str):
    s = ctx.series(name)
    if s.empty:
        return None, f"run has no {name} series"
    at = value_near_step(s, 1000)
    if at is None or s.index[-1] < 750:
        return None, f"no {name} sample near step 1000 (run ends at {int(s.index[-1])})"
    return (int(s.index[0]), float(s.iloc[0]), *at), ""


def entropy_falls_first_1000(ctx: ClaimContext) -> dict:
    """Model-mean attention entropy (bits) at the first tracked step is 4.2 and at the tracked step
    nearest 1000 (within 25 %) is 2.8: both within 15 %."""
    got, why = _start_and_1000(ctx, "entropy_bits")
    if got is None:
        return result("", NA, why)
    s0, v0, s1, v1 = got
    ok = near(v0, 4.2) and near(v1, 2.8)
    return result(f"{v0:.2f} bits at step {s0} -> {v1:.2f} bits at step {s1}", HOLDS if ok else FAILS,
                  "both ends within 15 % of 4.2 and 2.8" if ok else "an end is more than 15 % from 4.2 / 2.8")


def span_rises_first_1000(ctx: ClaimContext) -> dict:
    """Model-mean effective span (`span_tokens`) rises from 5 to 25 tokens by step ~1000 (15 %)."""
    got, why = _start_and_1000(ctx, "span_tokens")
    if got is None:
        return result("", NA, why)
    s0, v0, s1, v1 = got
    ok = near(v0, 5.0) and near(v1, 25.0)
    why = "both ends within 15 % of 5 and 25" if ok else (
        "span falls instead of rising" if v1 < v0 else "an end is more than 15 % from 5 / 25 tokens")
    return result(f"{v0:.1f} tokens at step {s0} -> {v1:.1f} at step {s1}", HOLDS if ok else FAILS, why)


def group_xlayer_jsd(ctx: ClaimContext, layers: list[int]) -> pd.Series:
    """Cross-layer JSD of a layer group by step: mean of `xlayer_jsd` over the pairs (a, b), a < b,
    with both layers in `layers` (the attention split's rows; empty when the run has none)."""
    m = ctx.metrics
    rows = m[(m.metric == "xlayer_jsd") & (m.split == ctx.split) & (m.layer_b >= 0)
             & m.layer.isin(layers) & m.layer_b.isin(layers) & (m.layer != m.layer_b)]
    rows = rows.assign(lo=np.minimum(rows.layer, rows.layer_b), hi=np.maximum(rows.layer, rows.layer_b))
    per_pair = rows.groupby(["step", "lo", "hi"]).value.mean()
    return per_pair.groupby("step").mean().sort_index()


def _pairs_text(layers: list[int]) -> str:
    return f"layers {layers[0]}-{layers[-1]} ({len(layers) * (len(layers) - 1) // 2} pairs)"


def _group_jsd_1000_3000(ctx: ClaimContext, layers: list[int], bound: float) -> dict:
    """Max over tracked steps 1000-3000 of the group's cross-layer JSD below `bound` (bits)."""
    if max(layers) >= ctx.n_layer:
        return result("", NA, f"claim is about layers {layers[0]}-{layers[-1]} (0-based) of a 6-layer model; "
                              f"this model has {ctx.n_layer} layers")
    s = group_xlayer_jsd(ctx, layers)
    if s.empty:
        return result("", NA, "run has no cross-layer JSD (xlayer_jsd) rows")
    s = s[(s.index >= 1000) & (s.index <= 3000)]
    if s.empty:
        return result("", NA, "no tracked step between 1000 and 3000")
    worst = float(s.max())
    return result(f"max cross-layer JSD of {_pairs_text(layers)}, pair mean, {worst:.3f} bits in steps "
                  f"{int(s.index[0])}-{int(s.index[-1])}", HOLDS if worst < bound else FAILS,
                  f"{'below' if worst < bound else 'not below'} {bound}")


def early_layers_jsd(ctx: ClaimContext) -> dict:
    """Specialisation (1000-3000 iterations): the cross-layer JSD among the paper's early layers 1-3
    (our 0-2; pairs 0-1, 0-2, 1-2, averaged) stays < 0.1 bits at every tracked step in 1000-3000."""
    return _group_jsd_1000_3000(ctx, [0, 1, 2], 0.1)


def middle_layers_jsd(ctx: ClaimContext) -> dict:
    """Specialisation (1000-3000 iterations): the cross-layer JSD among the paper's middle layers 4-6
    (our 3-5; pairs 3-4, 3-5, 4-5, averaged) stays < 0.15 bits at every tracked step in 1000-3000."""
    return _group_jsd_1000_3000(ctx, [3, 4, 5], 0.15)


def stabilisation_entropy(ctx: ClaimContext) -> dict:
    """Model-mean entropy over the last detected `stabilisation` phase (else the last 20 % of the
    tracked steps) lies in 2.8-3.2 bits (its mean)."""
    s = ctx.series("entropy_bits")
    if s.empty:
        return result("", NA, "run has no entropy_bits series")
    model = ctx.phases[(ctx.phases.scope == "model") & (ctx.phases.label == "stabilisation")] \
        if len(ctx.phases) else ctx.phases
    if len(model):
        a, b = int(model.start_step.iloc[-1]), int(model.end_step.iloc[-1])
        where = f"stabilisation phase {a}-{b}"
    else:
        a, b = int(np.quantile(s.index, 0.8)), int(s.index[-1])
        where = f"last 20 % of steps ({a}-{b}); no stabilisation phase detected"
    v = float(s[(s.index >= a) & (s.index <= b)].mean())
    ok = 2.8 <= v <= 3.2
    return result(f"{v:.2f} bits over {where}", HOLDS if ok else FAILS, "inside 2.8-3.2" if ok else "outside 2.8-3.2")


def final_layers_jsd(ctx: ClaimContext) -> dict:
    """Final layers' cross-layer JSD reaches up to 0.3 bits: the maximum over tracked steps of the
    cross-layer JSD among the last three layers (all pairs, averaged; the last two in a 2-layer
    model) is 0.3 within 15 %."""
    if ctx.n_layer < 2:
        return result("", NA, "cross-layer JSD needs at least 2 layers")
    layers = list(range(max(0, ctx.n_layer - 3), ctx.n_layer))
    s = group_xlayer_jsd(ctx, layers)
    if s.empty:
        return result("", NA, "run has no cross-layer JSD (xlayer_jsd) rows")
    v, at = float(s.max()), int(s.idxmax())
    return result(f"max cross-layer JSD of {_pairs_text(layers)}, pair mean, {v:.3f} bits at step {at}",
                  HOLDS if near(v, 0.3) else FAILS,
                  "within 15 % of 0.3" if near(v, 0.3) else "not within 15 % of 0.3")


def generation_entropy_band(ctx: ClaimContext) -> dict:
    """Good generations go with entropy 2.8-3.2 bits, poor with < 2.5: among checkpoints sampled for
    generation quality (split `sample`), those whose entropy while sampling is in 2.8-3.2 have a
    lower mean checkpoint loss (the quality proxy: `probe_loss_nats`, else val loss at the sampled
    steps it was measured at) than those below 2.5."""
    m = ctx.metrics
    ent = m[(m.split == "sample") & (m.metric == "entropy_bits") & (m.head_index >= 0)].groupby("step").value.mean()
    if ent.empty:
        return result("", NA, "no generation-quality samples (split sample)")
    loss, name = (ctx.probe_loss, "probe loss") if len(ctx.probe_loss) else (ctx.val_loss, "val loss")
    joined = ent.to_frame("ent").join(loss.rename("loss"), how="inner").dropna()
    good = joined[(joined.ent >= 2.8) & (joined.ent <= 3.2)]
    poor = joined[joined.ent < 2.5]
    if good.empty or poor.empty:
        return result(f"sampling entropy {ent.min():.2f}-{ent.max():.2f} bits at {len(joined)} sampled steps with a loss", NA,
                      "need sampled checkpoints both in 2.8-3.2 bits and below 2.5 bits")
    ok = good.loss.mean() < poor.loss.mean()
    return result(f"{name} {good.loss.mean():.3f} (2.8-3.2 bits, n={len(good)}) vs {poor.loss.mean():.3f} "
                  f"(<2.5 bits, n={len(poor)})", HOLDS if ok else FAILS,
                  "the 2.8-3.2 band has the better loss" if ok else "the low-entropy checkpoints have the better loss")


def span_early_vs_late(ctx: ClaimContext) -> dict:
    """At the last tracked step the first layer's span is 5-15 tokens and the last layer's is 50+."""
    if not ctx.layers or "span_tokens" not in ctx.layers[min(ctx.layers)]:
        return result("", NA, "run has no per-layer span_tokens")
    first = ctx.layers[min(ctx.layers)].span_tokens.dropna()
    last = ctx.layers[max(ctx.layers)].span_tokens.dropna()
    measured = f"layer {min(ctx.layers)}: {first.iloc[-1]:.1f}, layer {max(ctx.layers)}: {last.iloc[-1]:.1f} tokens"
    if ctx.block_size is not None and ctx.block_size <= 100:
        return result(measured, NA, f"a 50+ token mean span needs a context far above 100 tokens; this "
                                    f"model's block_size is {ctx.block_size}")
    ok = 5 <= first.iloc[-1] <= 15 and last.iloc[-1] >= 50
    return result(measured, HOLDS if ok else FAILS, "early 5-15 and late 50+" if ok else "outside the bands")


BEST_VAL = {"shakespeare_char": 1.47, "enwik8": 1.01, "text8": 0.98}


def best_val_loss(ctx: ClaimContext) -> dict:
    """Best val loss reaches the paper's: 1.47 (shakespeare_char), 1.01 (enwik8), 0.98 (text8),
    i.e. the minimum val loss is at most 5 % above the claimed value."""
    if ctx.dataset not in BEST_VAL:
        return result("", NA, f"claim covers shakespeare_char, enwik8, text8; this run uses {ctx.dataset}")
    if ctx.val_loss.empty:
        return result("", NA, "run has no val loss")
    v, claim = float(ctx.val_loss.min()), BEST_VAL[ctx.dataset]
    steps = int(ctx.val_loss.index[-1])
    ok = v <= 1.05 * claim
    return result(f"best val loss {v:.3f} nats ({ctx.dataset}, {steps} steps)", HOLDS if ok else FAILS,
                  f"within 5 % of {claim}" if ok else f"{v / claim - 1:.0%} above {claim} (shorter/smaller run?)")


TRACKING_TIERS = {"full": "track_ms", "light": "light_ms"}  # tier -> its per-event wall time (ms)


def tracking_overhead(ctx: ClaimContext) -> dict:
    """Tracking costs <= 0.8 % (+0.2 points) of training time, every tier that ran counted: for each
    tier (full: `track_ms` at tracked steps; light: `light_ms` at every step it ran) the sum of its
    wall times over the sum of the training steps' times (tokens per step / `tokens_per_s`, tokens
    per step from the config); the claim reads the total over tiers."""
    m = ctx.metrics
    train = ctx.record.get("config", {}).get("train", {})
    tps = m[(m.metric == "tokens_per_s") & (m.split == "train")].value
    tiers = {tier: m[(m.metric == name) & (m.split == "train")].value for tier, name in TRACKING_TIERS.items()}
    tiers = {tier: v for tier, v in tiers.items() if len(v)}
    if not tiers or tps.empty or ctx.block_size is None or "batch_size" not in train:
        return result("", NA, "run has no track_ms / light_ms / tokens_per_s (not a tracked training run)")
    tokens = train["batch_size"] * ctx.block_size * train.get("gradient_accumulation_steps", 1)
    seconds = float((tokens / tps[tps > 0]).sum())
    spent = {tier: float(v.sum()) / 1000.0 for tier, v in tiers.items()}
    share = sum(spent.values()) / seconds
    parts = ", ".join(f"{tier} {t / seconds:.2%} ({t:.2f} s)" for tier, t in spent.items())
    ok = share <= 0.010
    return result(f"{share:.2%} in total: {parts} of {seconds:.1f} s training", HOLDS if ok else FAILS,
                  "at most 1.0 %" if ok else "above 1.0 %")


CLAIMS = [("lc_entropy_fall", "entropy falls from 4.2 to 2.8 bits in the first 1000 iterations", entropy_falls_first_1000),
          ("lc_span_rise", "effective span rises from 5 to 25 tokens in that phase", span_rises_first_1000),
          ("lc_early_jsd", "specialisation 1000-3000: early layers (paper's 1-3 = layers 0-2) cross-layer JSD < 0.1",
           early_layers_jsd),
          ("lc_middle_jsd", "specialisation 1000-3000: middle layers (paper's 4-6 = layers 3-5) cross-layer JSD < 0.15",
           middle_layers_jsd),
          ("lc_stable_entropy", "stabilisation entropy 2.8-3.2 bits", stabilisation_entropy),
          ("lc_final_jsd", "final layers (the last three) cross-layer JSD up to 0.3", final_layers_jsd),
          ("lc_generation_entropy", "good generations at entropy 2.8-3.2 bits vs poor < 2.5", generation_entropy_band),
          ("lc_span_layers", "early-layer span 5-15 tokens vs late-layer 50+", span_early_vs_late),
          ("lc_best_val", "best val loss 1.47 / 1.01 / 0.98 (shakespeare_char / enwik8 / text8)", best_val_loss),
          ("lc_overhead", "tracking overhead 0.8 % (every tier that ran)", tracking_overhead)]
