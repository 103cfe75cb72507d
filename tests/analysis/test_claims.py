"""Claim checks on synthetic contexts: each verdict follows its documented definition."""
from __future__ import annotations

import numpy as np
import pandas as pd

from attnlife.analysis import claims_dynamics as cd
from attnlife.analysis import claims_lifecycle as cl
from attnlife.analysis.claim_context import FAILS, HOLDS, NA, ClaimContext
from attnlife.analysis.claims import all_claims, check_claims

STEPS = [0, 250, 500, 750, 1000, 1500, 2000, 3000]


def _ctx(entropy, span, n_layer=6, jsd=0.05, record=None, spectra=None) -> ClaimContext:
    model = pd.DataFrame({"entropy_bits": entropy, "span_tokens": span}, index=STEPS)
    layers = {layer: pd.DataFrame({"head_jsd_mean": np.full(len(STEPS), jsd + 0.01 * layer),
                                   "span_tokens": np.asarray(span, dtype=float) * (1 + layer)}, index=STEPS)
              for layer in range(n_layer)}
    rec = record or {"kind": "train", "config": {"model": {"n_layer": n_layer, "block_size": 256}},
                     "dataset": {"name": "shakespeare_char"}}
    empty = pd.DataFrame(columns=["scope", "label", "start_step", "end_step", "status"])
    return ClaimContext(metrics=pd.DataFrame(columns=["step", "split", "layer", "head_index", "metric", "value"]),
                        split="probe", model=model, layers=layers,
                        val_loss=pd.Series([4.0, 1.9, 1.5], index=[0, 1000, 3000]),
                        spectra=spectra if spectra is not None else pd.DataFrame(
                            columns=["model", "step", "layer", "head_index", "matrix", "stat", "value"]),
                        record=rec, phases=empty, cycles=empty)


def test_lifecycle_claims_hold_on_the_papers_numbers() -> None:
    ctx = _ctx(entropy=[4.2, 3.9, 3.5, 3.1, 2.8, 3.0, 3.0, 3.0], span=[5, 10, 15, 20, 25, 25, 25, 25])
    assert cl.entropy_falls_first_1000(ctx)["verdict"] == HOLDS
    assert cl.span_rises_first_1000(ctx)["verdict"] == HOLDS
    assert cl.early_layers_jsd(ctx)["verdict"] == HOLDS          # 0.05-0.07 < 0.1
    assert cl.middle_layers_jsd(ctx)["verdict"] == HOLDS         # 0.08-0.10 < 0.15
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
    assert len(ids) == len(set(ids)) == 17
    table = check_claims(_ctx(entropy=[4.2] * 8, span=[5] * 8))
    theory = table[table.source.isin([cd.SCAN_SNAP, cd.FOCUS_DILUTION])]
    assert (theory.verdict == NA).all() and theory.reason.str.contains("theory run").all()
    ss = check_claims(_ctx(entropy=[4.2] * 8, span=[5] * 8, record={"kind": "theory-scan-snap"}))
    assert (ss[ss.source == cl.SOURCE].verdict == NA).all()
