"""Claim checks on synthetic contexts: each verdict follows its documented definition."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnlife.analysis import claims_dynamics as cd
from attnlife.analysis import claims_lifecycle as cl
from attnlife.analysis import claims_literature as lit
from attnlife.analysis.claim_context import FAILS, HOLDS, NA, ClaimContext
from attnlife.analysis.claims import all_claims, check_claims

STEPS = [0, 250, 500, 750, 1000, 1500, 2000, 3000]


METRIC_COLUMNS = ["step", "split", "layer", "head_index", "layer_b", "metric", "value"]


def _xlayer_rows(n_layer: int, jsd: float) -> pd.DataFrame:
    """xlayer_jsd rows for every pair a < b at every step: jsd + 0.01 (a + b), split probe."""
    rows = [{"step": s, "split": "probe", "layer": a, "head_index": -1, "layer_b": b, "metric": "xlayer_jsd",
             "value": jsd + 0.01 * (a + b)} for s in STEPS for a in range(n_layer) for b in range(a + 1, n_layer)]
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def _ctx(entropy, span, n_layer=6, jsd=0.05, record=None, spectra=None) -> ClaimContext:
    model = pd.DataFrame({"entropy_bits": entropy, "span_tokens": span}, index=STEPS)
    layers = {layer: pd.DataFrame({"head_jsd_mean": np.full(len(STEPS), jsd + 0.01 * layer),
                                   "span_tokens": np.asarray(span, dtype=float) * (1 + layer)}, index=STEPS)
              for layer in range(n_layer)}
    rec = record or {"kind": "train", "config": {"model": {"n_layer": n_layer, "block_size": 256}},
                     "dataset": {"name": "shakespeare_char"}}
    empty = pd.DataFrame(columns=["scope", "label", "start_step", "end_step", "status"])
    return ClaimContext(metrics=_xlayer_rows(n_layer, jsd),
                        split="probe", model=model, layers=layers,
                        val_loss=pd.Series([4.0, 1.9, 1.5], index=[0, 1000, 3000]),
                        spectra=spectra if spectra is not None else pd.DataFrame(
                            columns=["model", "step", "layer", "head_index", "matrix", "stat", "value"]),
                        record=rec, phases=empty, cycles=empty)


def test_lifecycle_claims_hold_on_the_papers_numbers() -> None:
    ctx = _ctx(entropy=[4.2, 3.9, 3.5, 3.1, 2.8, 3.0, 3.0, 3.0], span=[5, 10, 15, 20, 25, 25, 25, 25])
    assert cl.entropy_falls_first_1000(ctx)["verdict"] == HOLDS
    assert cl.span_rises_first_1000(ctx)["verdict"] == HOLDS
    assert cl.early_layers_jsd(ctx)["verdict"] == HOLDS          # pairs 0-1, 0-2, 1-2: mean 0.05 + 0.02 < 0.1
    assert cl.middle_layers_jsd(ctx)["verdict"] == HOLDS         # pairs 3-4, 3-5, 4-5: mean 0.05 + 0.08 < 0.15
    assert cl.stabilisation_entropy(ctx)["verdict"] == HOLDS     # last 20 %: 3.0
    assert cl.best_val_loss(ctx)["verdict"] == HOLDS             # 1.5 <= 1.05 * 1.47


def test_lifecycle_claims_fail_or_do_not_apply_with_reasons() -> None:
    ctx = _ctx(entropy=[4.6, 4.0, 3.4, 3.0, 2.8, 2.6, 2.5, 2.5], span=[16, 15, 12, 9, 8, 7, 7, 7], n_layer=4, jsd=0.2)
    assert cl.entropy_falls_first_1000(ctx)["verdict"] == HOLDS  # 4.6 within 15 % of 4.2
    span = cl.span_rises_first_1000(ctx)
    assert span["verdict"] == FAILS and span["reason"] == "span falls instead of rising"
    mid = cl.middle_layers_jsd(ctx)
    assert mid["verdict"] == NA and "this model has 4 layers" in mid["reason"]
    assert cl.early_layers_jsd(ctx)["verdict"] == FAILS
    assert cl.stabilisation_entropy(ctx)["verdict"] == FAILS
    short = _ctx(entropy=[4.2] * 8, span=[5] * 8)
    short.model = short.model.iloc[:3]
    assert cl.entropy_falls_first_1000(short)["verdict"] == NA


def test_weight_claims_on_planted_spectra() -> None:
    steps = np.array([0, 100, 200, 400, 800, 1600, 3200])
    rank = np.array([10.0, 4.0, 2.0, 2.5, 3.0, 3.2, 3.3])
    rows = []
    for h in range(2):
        for s, r in zip(steps, rank):
            rows.append({"model": "m", "step": s, "layer": 0, "head_index": h, "matrix": "qk",
                         "stat": "stable_rank", "value": r * (1 + 0.2 * h * s / 3200)})
    ctx = _ctx(entropy=[4.2] * 8, span=[5] * 8, spectra=pd.DataFrame(rows))
    assert cd.stable_rank_dip(ctx)["verdict"] == HOLDS
    assert cd.heads_diversify(ctx)["verdict"] == HOLDS
    assert cd.sigma_kl_early(ctx)["verdict"] == NA  # no element statistics


def test_every_issue_claim_is_checked_and_theory_claims_need_theory_runs() -> None:
    ids = [c[0] for c in all_claims()]
    assert len(ids) == len(set(ids)) == 23
    table = check_claims(_ctx(entropy=[4.2] * 8, span=[5] * 8))
    theory = table[table.source.isin([cd.SCAN_SNAP, cd.FOCUS_DILUTION])]
    assert (theory.verdict == NA).all() and theory.reason.str.contains("theory run").all()
    ss = check_claims(_ctx(entropy=[4.2] * 8, span=[5] * 8, record={"kind": "theory-scan-snap"}))
    assert (ss[ss.source.isin([cl.SOURCE, *lit.SOURCES])].verdict == NA).all()


def test_layer_jsd_claims_read_the_named_pairs_of_cross_layer_jsd() -> None:
    ctx = _ctx(entropy=[4.2] * 8, span=[5] * 8, n_layer=4, jsd=0.25)
    early = cl.early_layers_jsd(ctx)   # pairs (0,1) 0.26, (0,2) 0.27, (1,2) 0.28 -> mean 0.27
    assert early["verdict"] == FAILS and "0.270 bits" in early["measured"] and "layers 0-2 (3 pairs)" in early["measured"]
    final = cl.final_layers_jsd(ctx)   # last three layers 1-3: (1,2) .28, (1,3) .29, (2,3) .30 -> 0.29
    assert final["verdict"] == HOLDS and "0.290 bits" in final["measured"] and "layers 1-3" in final["measured"]
    assert cl.group_xlayer_jsd(ctx, [0, 1]).tolist() == pytest.approx([0.26] * len(STEPS))
    # rows stored either way round (layer_b < layer) count once per pair
    flipped = ctx.metrics.rename(columns={"layer": "layer_b", "layer_b": "layer"})
    ctx.metrics = pd.concat([ctx.metrics, flipped])
    assert cl.group_xlayer_jsd(ctx, [0, 1, 2]).tolist() == pytest.approx([0.27] * len(STEPS))


def _train_rows(name: str, values, split: str = "train") -> pd.DataFrame:
    return pd.DataFrame({"step": np.arange(len(values)), "split": split, "layer": -1, "head_index": -1,
                         "layer_b": -1, "metric": name, "value": values}, columns=METRIC_COLUMNS)


def test_overhead_counts_every_tier_that_ran() -> None:
    ctx = _ctx(entropy=[4.2] * 8, span=[5] * 8)
    ctx.record["config"]["train"] = {"batch_size": 4}                  # 4 x 256 tokens per step
    tokens = 4 * 256
    ctx.metrics = pd.concat([_train_rows("tokens_per_s", [tokens / 0.1] * 100),   # 100 steps of 0.1 s
                             _train_rows("track_ms", [20.0] * 5),                 # 0.1 s full tier
                             _train_rows("light_ms", [1.0] * 100)])               # 0.1 s light tier
    got = cl.tracking_overhead(ctx)
    assert got["verdict"] == FAILS  # 0.2 s / 10 s = 2 %
    assert got["measured"].startswith("2.00% in total") and "full 1.00%" in got["measured"] and "light 1.00%" in got["measured"]
    ctx.metrics = pd.concat([_train_rows("tokens_per_s", [tokens / 0.1] * 100), _train_rows("track_ms", [10.0] * 5)])
    full_only = cl.tracking_overhead(ctx)   # 0.05 s / 10 s
    assert full_only["verdict"] == HOLDS and full_only["measured"].startswith("0.50% in total")
    assert "light" not in full_only["measured"]


def test_induction_bump_needs_steeper_improvement_inside_the_phase_change() -> None:
    rng = np.random.default_rng(0)
    steps = np.arange(600)
    loss = 3.0 - 0.001 * steps - 0.004 * np.clip(steps - 300, 0, 100) + 0.003 * rng.normal(size=600)
    ctx = _ctx(entropy=[4.2] * 8, span=[5] * 8)
    ctx.train_loss = pd.Series(loss, index=steps)
    ctx.induction_phase = pd.DataFrame([{"step_before": 300, "step": 400}])
    assert lit.induction_loss_bump(ctx)["verdict"] == HOLDS
    ctx.train_loss = pd.Series(3.0 - 0.001 * steps + 0.003 * rng.normal(size=600), index=steps)  # no bump
    assert lit.induction_loss_bump(ctx)["verdict"] == FAILS
    ctx.induction_phase = pd.DataFrame()
    assert lit.induction_loss_bump(ctx)["verdict"] == NA


def _head_rows(metric: str, values: dict) -> pd.DataFrame:
    """values: (layer, head) -> list over STEPS."""
    rows = [{"step": s, "split": "probe", "layer": layer, "head_index": head, "layer_b": -1, "metric": metric, "value": v}
            for (layer, head), vals in values.items() for s, v in zip(STEPS, vals)]
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def test_layers_stabilise_early_on_planted_entropy_trajectories() -> None:
    ctx = _ctx(entropy=[4.2] * 8, span=[5] * 8)
    fast = [4.0, 3.0, 2.9, 2.9, 2.9, 2.9, 2.9, 2.9]       # settled by step 250 (3000 * 0.2 = 600)
    slow = [4.0, 3.8, 3.6, 3.4, 3.2, 3.0, 2.8, 2.6]
    ctx.metrics = _head_rows("entropy_bits", {(0, 0): fast, (0, 1): fast, (1, 0): fast, (1, 1): fast})
    got = lit.layers_stabilise_early(ctx)
    assert got["verdict"] == HOLDS and "L0 @ 250" in got["measured"]
    ctx.metrics = _head_rows("entropy_bits", {(0, 0): fast, (1, 0): slow})
    got = lit.layers_stabilise_early(ctx)
    assert got["verdict"] == FAILS and "L1 @ 3000" in got["measured"]


def test_sink_claims_on_planted_scores() -> None:
    ctx = _ctx(entropy=[4.2] * 8, span=[5] * 8, n_layer=3)
    ramp = {(2, h): [0.0] * (1 + h) + [0.5] * (7 - h) for h in range(4)}   # sink heads appear one by one
    quiet = {(layer, h): [0.05] * 8 for layer in (0, 1) for h in range(4)}
    ctx.metrics = _head_rows("sink_mass", {**ramp, **quiet})
    grows = lit.sink_share_grows(ctx)
    assert grows["verdict"] == HOLDS and "0% at step 0 -> 33% at step 3000" in grows["measured"]
    assert lit.no_sinks_in_first_two_layers(ctx)["verdict"] == HOLDS
    ctx.metrics = _head_rows("sink_mass", {**quiet, (0, 0): [0.0] + [0.4] * 7})
    assert lit.no_sinks_in_first_two_layers(ctx)["verdict"] == FAILS
    none = lit.sink_share_grows(ctx)
    assert none["verdict"] == FAILS
    ctx.metrics = _head_rows("sink_mass", quiet)
    assert lit.sink_share_grows(ctx)["reason"] == "no sink head forms"


def _theory_ctx(kind: str, metrics: pd.DataFrame | None = None, **extra) -> ClaimContext:
    ctx = _ctx(entropy=[4.2] * 8, span=[5] * 8, record={"kind": kind, "config": {}})
    if metrics is not None:
        ctx.metrics = metrics
    for k, v in extra.items():
        setattr(ctx, k, v)
    return ctx


def test_scan_snap_freeze_claim_on_planted_entropy_curves() -> None:
    steps = np.concatenate([[0.0], np.unique(np.round(np.logspace(0, 3.5, 60)))])

    def frame(values):
        return pd.DataFrame({"step": steps, "split": "train", "layer": 0, "head_index": 0,
                             "metric": "entropy_distinct_bits", "value": values})

    snaps = cd.distinct_entropy_freezes(_theory_ctx("theory-scan-snap", frame(3.1 - 0.3 * (1 - np.exp(-steps / 15)))))
    assert snaps["verdict"] == HOLDS and "snaps at step" in snaps["measured"]
    creeps = cd.distinct_entropy_freezes(_theory_ctx("theory-scan-snap", frame(3.1 - 0.1 * np.log10(1 + steps))))
    assert creeps["verdict"] == FAILS and "never snaps" in creeps["measured"]


def test_scan_snap_eta_z_claim_per_group() -> None:
    rows = [{"m": 1, "k": 2, "ratio": r, "spearman_entropy_vs_eta_z": rho, "falls": rho < 0}
            for r, rho in ((1.0, -1.0), (5.0, -0.8))]
    ctx = _theory_ctx("theory-scan-snap-sweep", sweep_eta_z_trend=rows)
    assert cd.entropy_falls_with_eta_z(ctx)["verdict"] == HOLDS
    rows[1]["spearman_entropy_vs_eta_z"] = 0.4
    assert cd.entropy_falls_with_eta_z(ctx)["verdict"] == FAILS
    assert cd.entropy_falls_with_eta_z(_theory_ctx("theory-markov"))["verdict"] == NA
