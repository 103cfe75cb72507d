"""Claims of the attention-lifecycle paper, each a small function of a ClaimContext.

Layers in the paper are numbered from 1; "early" layers are 1-3, "middle" 4-6 (of a 6-layer
model). Each function's docstring gives its definition; a number holds within REL_TOL (15 %).
"""
from __future__ import annotations

import numpy as np

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


def _layer_jsd_1000_3000(ctx: ClaimContext, layers: list[int], bound: float, label: str) -> dict:
    """Mean within-layer head JSD (`head_jsd_mean`) over steps 1000-3000 below `bound` in `layers`."""
    have = [layer for layer in layers if layer - 1 in ctx.layers]
    if len(have) < len(layers):
        return result("", NA, f"claim is about layers {layers[0]}-{layers[-1]} of a 6-layer model; "
                              f"this model has {ctx.n_layer} layers")
    vals = []
    for layer in have:
        s = ctx.layers[layer - 1].get("head_jsd_mean")
        if s is None:
            return result("", NA, "run has no head_jsd_mean (heads per layer < 2?)")
        s = s.dropna()
        vals.append(s[(s.index >= 1000) & (s.index <= 3000)])
    if any(v.empty for v in vals):
        return result("", NA, "no tracked step between 1000 and 3000")
    worst = max(float(v.max()) for v in vals)
    return result(f"max {label} head JSD {worst:.3f} bits in steps 1000-3000", HOLDS if worst < bound else FAILS,
                  f"{'below' if worst < bound else 'not below'} {bound}")


def early_layers_jsd(ctx: ClaimContext) -> dict:
    """Specialisation (1000-3000 iterations): early layers (1-3) within-layer head JSD < 0.1 throughout."""
    return _layer_jsd_1000_3000(ctx, [1, 2, 3], 0.1, "layers 1-3")


def middle_layers_jsd(ctx: ClaimContext) -> dict:
    """Specialisation (1000-3000 iterations): middle layers (4-6) within-layer head JSD < 0.15 throughout."""
    return _layer_jsd_1000_3000(ctx, [4, 5, 6], 0.15, "layers 4-6")


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
    """Final layer's within-layer head JSD reaches up to 0.3: its maximum over steps is 0.3 within 15 %."""
    if not ctx.layers:
        return result("", NA, "run has no per-layer attention series")
    s = ctx.layers[max(ctx.layers)].get("head_jsd_mean")
    if s is None or s.dropna().empty:
        return result("", NA, "run has no head_jsd_mean")
    v = float(s.max())
    return result(f"max head JSD of the last layer {v:.3f} bits", HOLDS if near(v, 0.3) else FAILS,
                  "within 15 % of 0.3" if near(v, 0.3) else "not within 15 % of 0.3")


def generation_entropy_band(ctx: ClaimContext) -> dict:
    """Good generations go with entropy 2.8-3.2 bits, poor with < 2.5: among checkpoints sampled for
    generation quality (split `sample`), those whose entropy while sampling is in 2.8-3.2 have a
    lower mean val loss (the quality proxy) than those below 2.5."""
    m = ctx.metrics
    ent = m[(m.split == "sample") & (m.metric == "entropy_bits") & (m.head_index >= 0)].groupby("step").value.mean()
    if ent.empty:
        return result("", NA, "no generation-quality samples (split sample)")
    joined = ent.to_frame("ent").join(ctx.val_loss.rename("loss"), how="inner").dropna()
    good = joined[(joined.ent >= 2.8) & (joined.ent <= 3.2)]
    poor = joined[joined.ent < 2.5]
    if good.empty or poor.empty:
        return result(f"sampling entropy {ent.min():.2f}-{ent.max():.2f} bits at {len(joined)} eval steps", NA,
                      "need sampled checkpoints both in 2.8-3.2 bits and below 2.5 bits")
    ok = good.loss.mean() < poor.loss.mean()
    return result(f"val loss {good.loss.mean():.3f} (2.8-3.2 bits, n={len(good)}) vs {poor.loss.mean():.3f} "
                  f"(<2.5 bits, n={len(poor)})", HOLDS if ok else FAILS,
                  "the 2.8-3.2 band has the better loss" if ok else "the low-entropy checkpoints have the better loss")


def span_early_vs_late(ctx: ClaimContext) -> dict:
    """At the last tracked step the first layer's span is 5-15 tokens and the last layer's is 50+."""
    if not ctx.layers or "span_tokens" not in ctx.layers[min(ctx.layers)]:
        return result("", NA, "run has no per-layer span_tokens")
    first = ctx.layers[min(ctx.layers)].span_tokens.dropna()
    last = ctx.layers[max(ctx.layers)].span_tokens.dropna()
    measured = f"layer 1: {first.iloc[-1]:.1f}, layer {max(ctx.layers) + 1}: {last.iloc[-1]:.1f} tokens"
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


def tracking_overhead(ctx: ClaimContext) -> dict:
    """Tracking costs <= 0.8 % (+0.2 points) of training time: sum of `track_ms` over the sum of
    step times, a step's time being tokens per step / `tokens_per_s` (tokens per step from config)."""
    m = ctx.metrics
    track = m[(m.metric == "track_ms") & (m.split == "train")].value
    tps = m[(m.metric == "tokens_per_s") & (m.split == "train")].value
    train = ctx.record.get("config", {}).get("train", {})
    block = ctx.block_size
    if track.empty or tps.empty or block is None or "batch_size" not in train:
        return result("", NA, "run has no track_ms / tokens_per_s (not a tracked training run)")
    tokens = train["batch_size"] * block * train.get("gradient_accumulation_steps", 1)
    seconds = float((tokens / tps[tps > 0]).sum())
    share = float(track.sum()) / 1000.0 / seconds
    ok = share <= 0.010
    return result(f"{share:.2%} ({track.sum() / 1000:.2f} s tracking / {seconds:.1f} s training)",
                  HOLDS if ok else FAILS, "at most 1.0 %" if ok else "above 1.0 %")


CLAIMS = [("lc_entropy_fall", "entropy falls from 4.2 to 2.8 bits in the first 1000 iterations", entropy_falls_first_1000),
          ("lc_span_rise", "effective span rises from 5 to 25 tokens in that phase", span_rises_first_1000),
          ("lc_early_jsd", "specialisation 1000-3000: early layers (1-3) JSD < 0.1", early_layers_jsd),
          ("lc_middle_jsd", "specialisation 1000-3000: middle layers (4-6) JSD < 0.15", middle_layers_jsd),
          ("lc_stable_entropy", "stabilisation entropy 2.8-3.2 bits", stabilisation_entropy),
          ("lc_final_jsd", "final layers JSD up to 0.3", final_layers_jsd),
          ("lc_generation_entropy", "good generations at entropy 2.8-3.2 bits vs poor < 2.5", generation_entropy_band),
          ("lc_span_layers", "early-layer span 5-15 tokens vs late-layer 50+", span_early_vs_late),
          ("lc_best_val", "best val loss 1.47 / 1.01 / 0.98 (shakespeare_char / enwik8 / text8)", best_val_loss),
          ("lc_overhead", "tracking overhead 0.8 %", tracking_overhead)]
