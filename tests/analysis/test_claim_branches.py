"""Every branch of every claim, reached with real-shaped contexts (a real phase table, per-layer series,
a spectra table, tracked metrics), and the exact row each branch writes: measured, verdict, reason."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnlife.analysis import claims_dynamics as cd
from attnlife.analysis import claims_lifecycle as cl
from attnlife.analysis import claims_literature as cliter
from attnlife.analysis.claim_context import FAILS, HOLDS, NA, ClaimContext, near, result, value_near_step
from attnlife.analysis.claims import COLUMNS, all_claims, check_claims
from attnlife.analysis.phases import detect_phases, phase_rows

STEPS = [0, 250, 500, 750, 1000, 1500, 2000, 3000]
METRIC_COLUMNS = ["step", "split", "layer", "head_index", "layer_b", "metric", "value", "stderr"]


def _row(step, metric, value, split="train", layer=-1, head=-1) -> dict:
    return {"step": step, "split": split, "layer": layer, "head_index": head, "layer_b": -1, "metric": metric,
            "value": float(value), "stderr": np.nan}


def ctx(model: dict | None = None, layers: dict | None = None, steps=STEPS, record: dict | None = None,
        metrics: list[dict] | None = None, spectra: pd.DataFrame | None = None, phases: pd.DataFrame | None = None,
        cycles: pd.DataFrame | None = None, val_loss: pd.Series | None = None, sweep_trend=None) -> ClaimContext:
    empty_rows = pd.DataFrame(columns=["scope", "label", "start_step", "end_step", "status"])
    return ClaimContext(
        metrics=pd.DataFrame(metrics or [], columns=METRIC_COLUMNS), split="probe",
        model=pd.DataFrame(model or {}, index=steps if model else None),
        layers={k: pd.DataFrame(v, index=steps) for k, v in (layers or {}).items()},
        val_loss=val_loss if val_loss is not None else pd.Series([4.0, 1.9, 1.5], index=[0, 1000, 3000]),
        spectra=spectra if spectra is not None else pd.DataFrame(
            columns=["model", "step", "layer", "head_index", "matrix", "stat", "value"]),
        record=record if record is not None else {"kind": "train", "config": {"model": {"n_layer": 6, "block_size": 256},
                                                                              "train": {"batch_size": 4}},
                                                  "dataset": {"name": "shakespeare_char"}},
        phases=phases if phases is not None else empty_rows, cycles=cycles if cycles is not None else empty_rows,
        sweep_trend=sweep_trend or [])


# --- the context and the helpers ---------------------------------------------------------------

def test_context_properties_read_the_record() -> None:
    c = ctx(layers={0: {"a": [1.0] * 8}, 1: {"a": [1.0] * 8}}, record={})
    assert (c.kind, c.n_layer, c.block_size, c.dataset) == ("train", 2, None, None)
    c = ctx(record={"kind": "theory-markov", "config": {"model": {"n_layer": 3, "block_size": 64},
                                                        "data": {"dataset": "enwik8"}}})
    assert (c.kind, c.n_layer, c.block_size, c.dataset) == ("theory-markov", 3, 64, "enwik8")
    c = ctx(record={"dataset": {"name": "text8"}, "config": {"data": {"dataset": "enwik8"}}})
    assert c.dataset == "text8"                                          # the run's dataset record wins
    c = ctx(model={"entropy_bits": [4.0, np.nan, 3.0, 2.0, 2.0, 2.0, 2.0, 2.0]})
    assert c.series("entropy_bits").index.tolist() == [0, 500, 750, 1000, 1500, 2000, 3000]
    assert c.series("span_tokens").empty and c.series("span_tokens").dtype == float


def test_near_and_value_near_step_limits() -> None:
    assert near(5.0, 4.0, tol=0.25) and near(3.0, 4.0, tol=0.25) and not near(5.0001, 4.0, tol=0.25)
    assert near(-4.5, -4.0, tol=0.125) and not near(-4.6, -4.0, tol=0.125)
    assert near(4.6, 4.0) is True and near(4.61, 4.0) is False           # REL_TOL 15 %
    s = pd.Series([1.0, 2.0, 3.0], index=[0, 750, 1300])
    assert value_near_step(s, 1000) == (750, 2.0)                        # |750 - 1000| = 0.25 * 1000: inside
    assert value_near_step(pd.Series([1.0, 3.0], index=[0, 1251]), 1000) is None
    assert value_near_step(pd.Series([1.0, 3.0], index=[0, 1250]), 1000) == (1250, 3.0)
    assert value_near_step(pd.Series([5.0], index=[1]), 0, window=1.0) == (1, 5.0)  # step 0: window of 1 step
    assert value_near_step(pd.Series([5.0], index=[2]), 0, window=1.0) is None
    assert value_near_step(pd.Series(dtype=float), 10) is None
    assert result("m", HOLDS, "r") == {"measured": "m", "verdict": "holds", "reason": "r"}
    assert (HOLDS, FAILS, NA) == ("holds", "does not hold", "not applicable")


# --- lifecycle claims -------------------------------------------------------------------------

def test_entropy_and_span_in_the_first_1000_steps() -> None:
    c = ctx(model={"entropy_bits": [4.2, 3.9, 3.5, 3.1, 2.8, 3.0, 3.0, 3.0],
                   "span_tokens": [5.0, 10, 15, 20, 25, 25, 25, 25]})
    assert cl.entropy_falls_first_1000(c) == result("4.20 bits at step 0 -> 2.80 bits at step 1000", HOLDS,
                                                    "both ends within 15 % of 4.2 and 2.8")
    assert cl.span_rises_first_1000(c) == result("5.0 tokens at step 0 -> 25.0 at step 1000", HOLDS,
                                                 "both ends within 15 % of 5 and 25")
    late_start = ctx(model={"entropy_bits": [9.0, 4.2, 3.5, 3.1, 2.8, 3.0, 3.0, 3.0]}, steps=[1] + STEPS[1:])
    assert cl.entropy_falls_first_1000(late_start)["measured"].startswith("9.00 bits at step 1 ")
    one_end = ctx(model={"entropy_bits": [4.2, 3.9, 3.5, 3.1, 2.0, 3.0, 3.0, 3.0],
                         "span_tokens": [5.0, 10, 15, 20, 40, 25, 25, 25]})
    assert cl.entropy_falls_first_1000(one_end) == result("4.20 bits at step 0 -> 2.00 bits at step 1000", FAILS,
                                                          "an end is more than 15 % from 4.2 / 2.8")
    assert cl.span_rises_first_1000(one_end) == result("5.0 tokens at step 0 -> 40.0 at step 1000", FAILS,
                                                       "an end is more than 15 % from 5 / 25 tokens")
    start_off = ctx(model={"entropy_bits": [5.0, 3.9, 3.5, 3.1, 2.8, 3.0, 3.0, 3.0],
                           "span_tokens": [1.0, 10, 15, 20, 25, 25, 25, 25]})
    assert cl.entropy_falls_first_1000(start_off)["verdict"] == FAILS
    assert cl.span_rises_first_1000(start_off)["verdict"] == FAILS
    falls = ctx(model={"span_tokens": [16.0, 15, 12, 9, 8, 7, 7, 7]})
    assert cl.span_rises_first_1000(falls) == result("16.0 tokens at step 0 -> 8.0 at step 1000", FAILS,
                                                     "span falls instead of rising")


def test_first_1000_needs_a_sample_near_1000_and_a_run_past_750() -> None:
    short = ctx(model={"entropy_bits": [4.2, 3.9, 3.5]}, steps=[0, 250, 500])
    assert cl.entropy_falls_first_1000(short) == result("", NA, "no entropy_bits sample near step 1000 "
                                                                "(run ends at 500)")
    at_750 = ctx(model={"entropy_bits": [4.2, 3.5, 2.8]}, steps=[0, 500, 750])
    assert cl.entropy_falls_first_1000(at_750)["verdict"] == HOLDS       # 750 is within 25 % of 1000
    gap = ctx(model={"span_tokens": [5.0, 6.0, 25.0]}, steps=[0, 500, 1300])
    assert cl.span_rises_first_1000(gap) == result("", NA, "no span_tokens sample near step 1000 (run ends at 1300)")
    assert cl.span_rises_first_1000(ctx()) == result("", NA, "run has no span_tokens series")
    assert cl.entropy_falls_first_1000(ctx()) == result("", NA, "run has no entropy_bits series")


def _xlayer(pairs: dict[tuple[int, int], list[float]], steps=STEPS, split: str = "probe") -> list[dict]:
    """xlayer_jsd rows (layer a, layer_b b) at `steps` for each pair."""
    return [{**_row(s, "xlayer_jsd", v, split=split, layer=a), "layer_b": b}
            for (a, b), values in pairs.items() for s, v in zip(steps, values)]


def _group(values: list[float], layers: tuple[int, ...]) -> dict[tuple[int, int], list[float]]:
    """Every pair (a, b), a < b, of `layers` holding `values` plus a pair-dependent offset that
    averages to zero over the group's pairs."""
    pairs = [(a, b) for a in layers for b in layers if a < b]
    offsets = np.linspace(-0.01, 0.01, len(pairs))
    return {pair: [v + d for v in values] for pair, d in zip(pairs, offsets)}


def test_layer_jsd_claims_read_cross_layer_jsd_of_the_group_in_steps_1000_to_3000() -> None:
    # step 750 holds 9.0: outside 1000-3000, it must not count; the pair mean at step 2000 is 0.102
    early = [0.05] * 3 + [9.0, 0.05, 0.06, 0.102, 0.05]
    middle = [0.05] * 3 + [9.0, 0.1, 0.12, 0.154, 0.1]
    noise = {(0, 3): [5.0] * 8, (2, 5): [5.0] * 8}                      # across groups: never counted
    rows = _xlayer({**_group(early, (0, 1, 2)), **_group(middle, (3, 4, 5)), **noise})
    rows += _xlayer({(0, 1): [7.0] * 8}, split="train")                 # another split: not counted
    c = ctx(metrics=rows, layers=_layers6())
    assert cl.early_layers_jsd(c) == result(
        "max cross-layer JSD of layers 0-2 (3 pairs), pair mean, 0.102 bits in steps 1000-3000", FAILS, "not below 0.1")
    assert cl.middle_layers_jsd(c) == result(
        "max cross-layer JSD of layers 3-5 (3 pairs), pair mean, 0.154 bits in steps 1000-3000", FAILS,
        "not below 0.15")
    below = _xlayer({**_group([0.0995] * 8, (0, 1, 2)), **_group([0.1495] * 8, (3, 4, 5))})
    assert cl.early_layers_jsd(ctx(metrics=below, layers=_layers6()))["reason"] == "below 0.1"
    assert cl.middle_layers_jsd(ctx(metrics=below, layers=_layers6()))["reason"] == "below 0.15"
    at_bound = _xlayer(_group([0.1] * 8, (0, 1, 2)))                     # exactly 0.1 is not below 0.1
    assert cl.early_layers_jsd(ctx(metrics=at_bound, layers=_layers6()))["verdict"] == FAILS
    # a pair written both ways is one pair (its two rows averaged first)
    both = _xlayer({(0, 1): [0.02] * 8, (1, 0): [0.04] * 8, (0, 2): [0.03] * 8, (1, 2): [0.03] * 8})
    assert cl.early_layers_jsd(ctx(metrics=both, layers=_layers6()))["measured"].endswith("0.030 bits in steps 1000-3000")
    four = ctx(metrics=rows, layers=_layers6(4), record={"config": {"model": {"n_layer": 4}}})
    assert cl.middle_layers_jsd(four) == result("", NA, "claim is about layers 3-5 (0-based) of a 6-layer model; "
                                                        "this model has 4 layers")
    assert cl.early_layers_jsd(four)["verdict"] == FAILS
    assert cl.early_layers_jsd(ctx(layers=_layers6())) == result("", NA, "run has no cross-layer JSD (xlayer_jsd) rows")
    short = ctx(metrics=_xlayer(_group([0.05] * 8, (0, 1, 2)), steps=[0, 10, 20, 30, 40, 50, 60, 70]),
                layers=_layers6())
    assert cl.early_layers_jsd(short) == result("", NA, "no tracked step between 1000 and 3000")
    edge_steps = [0, 250, 500, 999, 1000, 3000, 3001, 4000]
    edge = ctx(metrics=_xlayer(_group([0.5] * 4 + [0.01, 0.02, 0.5, 0.5], (0, 1, 2)), steps=edge_steps),
               layers=_layers6())
    assert cl.early_layers_jsd(edge)["measured"] == \
        "max cross-layer JSD of layers 0-2 (3 pairs), pair mean, 0.020 bits in steps 1000-3000"


def _layers6(n: int = 6) -> dict:
    return {layer: {"span_tokens": [5.0 * (layer + 1)] * 8} for layer in range(n)}


def _phase_table(steps: np.ndarray, entropy: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(phase_rows("model", -1, detect_phases(steps, {"entropy_bits": entropy})))


def test_stabilisation_entropy_reads_the_last_detected_stabilisation_phase() -> None:
    steps = np.arange(0, 3000, 100)
    entropy = np.where(steps < 1500, 4.2 - 1.2 * steps / 1500, 3.0) + 0.001 * np.sin(steps)
    phases = _phase_table(steps, entropy)
    assert phases.label.tolist() == ["focusing", "stabilisation"]
    start = int(phases.start_step.iloc[-1])
    c = ctx(model={"entropy_bits": entropy}, steps=steps, phases=phases)
    mean = float(entropy[steps >= start].mean())
    assert cl.stabilisation_entropy(c) == result(f"{mean:.2f} bits over stabilisation phase {start}-2900", HOLDS,
                                                 "inside 2.8-3.2")
    # a layer's stabilisation or a later phase of another label is not the model's last stabilisation
    extra = pd.concat([phases, pd.DataFrame([{"scope": "L0", "layer": 0, "segment": 9, "start_step": 0,
                                              "end_step": 500, "label": "stabilisation", "slopes": "{}",
                                              "evidence": ""}])], ignore_index=True)
    assert cl.stabilisation_entropy(ctx(model={"entropy_bits": entropy}, steps=steps, phases=extra)) == \
        cl.stabilisation_entropy(c)
    none = ctx(model={"entropy_bits": entropy}, steps=steps)
    a = int(np.quantile(steps, 0.8))
    assert cl.stabilisation_entropy(none) == result(
        f"{float(entropy[steps >= a].mean()):.2f} bits over last 20 % of steps ({a}-2900); no stabilisation phase "
        "detected", HOLDS, "inside 2.8-3.2")
    assert cl.stabilisation_entropy(ctx()) == result("", NA, "run has no entropy_bits series")


@pytest.mark.parametrize("value, verdict", [(2.8, HOLDS), (3.2, HOLDS), (2.79, FAILS), (3.21, FAILS)])
def test_stabilisation_band_is_inclusive(value: float, verdict: str) -> None:
    steps = [0, 100, 200, 300, 400]
    phases = pd.DataFrame([{"scope": "model", "layer": -1, "segment": 0, "start_step": 300, "end_step": 400,
                            "label": "stabilisation", "slopes": "{}", "evidence": ""}])
    c = ctx(model={"entropy_bits": [9.0, 9.0, 9.0, value, value]}, steps=steps, phases=phases)
    got = cl.stabilisation_entropy(c)
    assert got["verdict"] == verdict and got["reason"] == ("inside 2.8-3.2" if verdict == HOLDS else "outside 2.8-3.2")
    window = pd.DataFrame([{**phases.iloc[0], "start_step": 200, "end_step": 300}])   # both ends included
    assert cl.stabilisation_entropy(ctx(model={"entropy_bits": [1.0, 1.0, 9.0, 3.0, 1.0]}, steps=steps,
                                        phases=window))["measured"].startswith("6.00 bits over stabilisation phase")


def test_final_layer_jsd_reaches_0_3() -> None:
    # 6 layers: the last three are 3-5; the pair mean peaks at 0.34 at step 500 (0.345 + 0.34 + 0.335) / 3
    rows = _xlayer({**_group([0.1, 0.2, 0.34, 0.3, 0.2, 0.1, 0.1, np.nan], (3, 4, 5)), (0, 1): [0.9] * 8})
    assert cl.final_layers_jsd(ctx(metrics=rows)) == result(
        "max cross-layer JSD of layers 3-5 (3 pairs), pair mean, 0.340 bits at step 500", HOLDS, "within 15 % of 0.3")
    high = _xlayer(_group([0.1, 0.2, 0.35, 0.3, 0.2, 0.1, 0.1, 0.1], (3, 4, 5)))
    assert cl.final_layers_jsd(ctx(metrics=high)) == result(
        "max cross-layer JSD of layers 3-5 (3 pairs), pair mean, 0.350 bits at step 500", FAILS,
        "not within 15 % of 0.3")
    two = ctx(metrics=_xlayer({(0, 1): [0.3] * 8}), record={"config": {"model": {"n_layer": 2}}})
    assert cl.final_layers_jsd(two)["measured"] == "max cross-layer JSD of layers 0-1 (1 pairs), pair mean, " \
                                                  "0.300 bits at step 0"
    one = ctx(metrics=_xlayer({(0, 1): [0.3] * 8}), record={"config": {"model": {"n_layer": 1}}})
    assert cl.final_layers_jsd(one) == result("", NA, "cross-layer JSD needs at least 2 layers")
    assert cl.final_layers_jsd(ctx()) == result("", NA, "run has no cross-layer JSD (xlayer_jsd) rows")

def _sampled(entropies: dict[int, float]) -> list[dict]:
    rows = []
    for step, e in entropies.items():
        rows += [_row(step, "entropy_bits", e + d, split="sample", layer=0, head=h) for h, d in ((0, -0.1), (1, 0.1))]
        rows.append(_row(step, "entropy_bits", 99.0, split="sample"))          # model-level row: not a head
        rows.append(_row(step, "entropy_bits", 99.0, split="probe", layer=0, head=0))
    return rows


def test_generation_entropy_band() -> None:
    loss = pd.Series([2.0, 1.6, 1.5, 1.8, 1.9], index=[0, 1000, 2000, 3000, 4000])
    rows = _sampled({1000: 2.8, 2000: 3.2, 3000: 2.49, 4000: 2.0, 5000: 3.0})    # 5000 has no val loss
    got = cl.generation_entropy_band(ctx(metrics=rows, val_loss=loss))
    assert got == result("val loss 1.550 (2.8-3.2 bits, n=2) vs 1.850 (<2.5 bits, n=2)", HOLDS,
                         "the 2.8-3.2 band has the better loss")
    worse = cl.generation_entropy_band(ctx(metrics=rows, val_loss=pd.Series([2.0, 2.6, 2.5, 1.8, 1.9],
                                                                            index=[0, 1000, 2000, 3000, 4000])))
    assert worse == result("val loss 2.550 (2.8-3.2 bits, n=2) vs 1.850 (<2.5 bits, n=2)", FAILS,
                           "the low-entropy checkpoints have the better loss")
    one_side = cl.generation_entropy_band(ctx(metrics=_sampled({1000: 2.8, 2000: 2.6}), val_loss=loss))
    assert one_side == result("sampling entropy 2.60-2.80 bits at 2 sampled steps with a loss", NA,
                              "need sampled checkpoints both in 2.8-3.2 bits and below 2.5 bits")
    assert cl.generation_entropy_band(ctx(metrics=_sampled({1000: 2.5, 2000: 3.25}), val_loss=loss))["verdict"] == NA
    assert cl.generation_entropy_band(ctx(val_loss=loss)) == result("", NA, "no generation-quality samples "
                                                                            "(split sample)")


def test_span_of_the_first_and_last_layer() -> None:
    layers = {0: {"span_tokens": [3.0] * 7 + [15.0]}, 2: {"span_tokens": [3.0] * 7 + [np.nan]},
              1: {"span_tokens": [3.0] * 6 + [50.0, np.nan]}}
    c = ctx(layers=layers, record={"config": {"model": {"block_size": 512}}})
    assert cl.span_early_vs_late(c) == result("layer 0: 15.0, layer 2: 3.0 tokens", FAILS, "outside the bands")
    layers[2]["span_tokens"] = [3.0] * 6 + [50.0, np.nan]
    assert cl.span_early_vs_late(ctx(layers=layers, record={"config": {"model": {"block_size": 512}}})) == \
        result("layer 0: 15.0, layer 2: 50.0 tokens", HOLDS, "early 5-15 and late 50+")
    for first, last in ((4.9, 60.0), (15.1, 60.0), (5.0, 49.9)):
        lay = {0: {"span_tokens": [first] * 8}, 1: {"span_tokens": [last] * 8}}
        assert cl.span_early_vs_late(ctx(layers=lay, record={}))["verdict"] == FAILS, (first, last)
    lay = {0: {"span_tokens": [5.0] * 8}, 1: {"span_tokens": [50.0] * 8}}
    assert cl.span_early_vs_late(ctx(layers=lay, record={}))["verdict"] == HOLDS   # no block size: applies
    assert cl.span_early_vs_late(ctx(layers=lay, record={"config": {"model": {"block_size": 100}}})) == result(
        "layer 0: 5.0, layer 1: 50.0 tokens", NA,
        "a 50+ token mean span needs a context far above 100 tokens; this model's block_size is 100")
    assert cl.span_early_vs_late(ctx(layers=lay, record={"config": {"model": {"block_size": 101}}}))["verdict"] == HOLDS
    assert cl.span_early_vs_late(ctx()) == result("", NA, "run has no per-layer span_tokens")
    assert cl.span_early_vs_late(ctx(layers={0: {"head_jsd_mean": [1.0] * 8}}))["verdict"] == NA


@pytest.mark.parametrize("dataset, best, verdict, reason", [
    ("shakespeare_char", 1.5435, HOLDS, "within 5 % of 1.47"),
    ("shakespeare_char", 1.55, FAILS, "5% above 1.47 (shorter/smaller run?)"),
    ("enwik8", 1.0605, HOLDS, "within 5 % of 1.01"),
    ("text8", 1.2, FAILS, "22% above 0.98 (shorter/smaller run?)")])
def test_best_val_loss_per_dataset(dataset: str, best: float, verdict: str, reason: str) -> None:
    loss = pd.Series([4.0, best, best + 0.1], index=[0, 1000, 2500])
    got = cl.best_val_loss(ctx(val_loss=loss, record={"dataset": {"name": dataset}}))
    assert got == result(f"best val loss {best:.3f} nats ({dataset}, 2500 steps)", verdict, reason)


def test_best_val_loss_not_applicable() -> None:
    assert cl.best_val_loss(ctx(record={"dataset": {"name": "tiny"}})) == result(
        "", NA, "claim covers shakespeare_char, enwik8, text8; this run uses tiny")
    assert cl.best_val_loss(ctx(val_loss=pd.Series(dtype=float))) == result("", NA, "run has no val loss")


def _overhead_rows(track_ms: list[float], tps: list[float]) -> list[dict]:
    return ([_row(s, "track_ms", v) for s, v in enumerate(track_ms)] + [_row(s, "tokens_per_s", v) for s, v in
                                                                        enumerate(tps)]
            + [_row(0, "track_ms", 1e6, split="val")])


def test_tracking_overhead_counts_every_step_of_training() -> None:
    record = {"config": {"model": {"block_size": 100}, "train": {"batch_size": 5, "gradient_accumulation_steps": 2}}}
    # 1000 tokens a step at 10000 tokens/s = 0.1 s a step; zero-rate samples are skipped
    rows = _overhead_rows([0.5, 0.5], [10000.0, 10000.0, 0.0, 10000.0])
    assert cl.tracking_overhead(ctx(metrics=rows, record=record)) == result(
        "0.33% in total: full 0.33% (0.00 s) of 0.3 s training", HOLDS, "at most 1.0 %")
    # the light tier counts too: 0.4 ms at each of 3 steps adds 0.4 % (the total is the claim)
    light = rows + [_row(s, "light_ms", 0.4) for s in range(3)] + [_row(0, "light_ms", 1e6, split="val")]
    assert cl.tracking_overhead(ctx(metrics=light, record=record)) == result(
        "0.73% in total: full 0.33% (0.00 s), light 0.40% (0.00 s) of 0.3 s training", HOLDS, "at most 1.0 %")
    only_light = [_row(s, "light_ms", 1.2) for s in range(3)] + [_row(s, "tokens_per_s", 1e4) for s in range(3)]
    assert cl.tracking_overhead(ctx(metrics=only_light, record=record)) == result(
        "1.20% in total: light 1.20% (0.00 s) of 0.3 s training", FAILS, "above 1.0 %")
    heavy = _overhead_rows([3.0], [10000.0])
    assert cl.tracking_overhead(ctx(metrics=heavy, record=record)) == result(
        "3.00% in total: full 3.00% (0.00 s) of 0.1 s training", FAILS, "above 1.0 %")
    limit = _overhead_rows([1.0], [10000.0])
    assert cl.tracking_overhead(ctx(metrics=limit, record=record))["verdict"] == HOLDS     # exactly 1.0 %
    no_accum = {"config": {"model": {"block_size": 100}, "train": {"batch_size": 10}}}
    assert cl.tracking_overhead(ctx(metrics=limit, record=no_accum))["measured"].startswith("1.00%")
    why = "run has no track_ms / light_ms / tokens_per_s (not a tracked training run)"
    assert cl.tracking_overhead(ctx(metrics=limit, record={"config": {"train": {"batch_size": 4}}})) == result("", NA, why)
    assert cl.tracking_overhead(ctx(metrics=limit, record={"config": {"model": {"block_size": 8}}})) == result("", NA, why)
    assert cl.tracking_overhead(ctx(metrics=_overhead_rows([], [1.0]), record=record)) == result("", NA, why)
    assert cl.tracking_overhead(ctx(metrics=_overhead_rows([1.0], []), record=record)) == result("", NA, why)


# --- weight-dynamics claims --------------------------------------------------------------------

def _spectra(stats: dict[str, list[float]], steps: list[int], heads: int = 2, spread: float = 0.0,
             layers: int = 1) -> pd.DataFrame:
    rows = []
    for stat, values in stats.items():
        for s, v in zip(steps, values):
            for layer in range(layers):
                for h in range(heads):
                    rows.append({"model": "m", "step": s, "layer": layer, "head_index": h, "matrix": "qk",
                                 "stat": stat, "value": v + spread * (h - (heads - 1) / 2) * s / steps[-1]})
                rows.append({"model": "m", "step": s, "layer": layer, "head_index": -1, "matrix": "qk",
                             "stat": stat, "value": 1e6})                # a layer-level row: not a head
                rows.append({"model": "m", "step": s, "layer": layer, "head_index": 0, "matrix": "ov",
                             "stat": stat, "value": -1e6})              # W_OV: not W_QK
    return pd.DataFrame(rows)


def test_sigma_and_kl_change_most_early() -> None:
    steps = [0, 100, 200, 400, 800, 1600]
    # first quarter (0-400): |changes| 1 + 1 + 1 = 3 over 400 steps; last half (800-1600): 0.1 over 800
    fast = [0.0, 1.0, 2.0, 3.0, 3.1, 3.2]
    got = cd.sigma_kl_early(ctx(spectra=_spectra({"elem_std": fast, "elem_kl_gauss_nats": fast}, steps)))
    assert got == result("elem_std: early/late rate 60.0x; elem_kl_gauss_nats: early/late rate 60.0x", HOLDS,
                         "both >= 3x")
    three = [0.0, 0.3, 0.6, 0.9, 1.1, 1.3]                               # 0.9 / 400 vs 0.2 / 800: exactly 9x ...
    slow = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7]                                # ... and 0.3 / 400 vs 0.2 / 800: 3x
    assert cd.sigma_kl_early(ctx(spectra=_spectra({"elem_std": three, "elem_kl_gauss_nats": slow}, steps))) == \
        result("elem_std: early/late rate 9.0x; elem_kl_gauss_nats: early/late rate 3.0x", HOLDS, "both >= 3x")
    slower = [0.0, 0.1, 0.2, 0.29, 0.49, 0.69]
    got = cd.sigma_kl_early(ctx(spectra=_spectra({"elem_std": three, "elem_kl_gauss_nats": slower}, steps)))
    assert got["verdict"] == FAILS and got["reason"] == "not both >= 3x"
    flat_late = [0.0, 1.0, 2.0, 3.0, 3.0, 3.0]
    got = cd.sigma_kl_early(ctx(spectra=_spectra({"elem_std": flat_late, "elem_kl_gauss_nats": fast}, steps)))
    assert got == result("elem_std: early/late rate infx; elem_kl_gauss_nats: early/late rate 60.0x", HOLDS,
                         "both >= 3x")
    short = _spectra({"elem_std": fast[:3], "elem_kl_gauss_nats": fast[:3]}, steps[:3])
    assert cd.sigma_kl_early(ctx(spectra=short)) == result(
        "", NA, "spectra table has no elem_std series (run `attnlife spectra` first)")
    only_std = _spectra({"elem_std": fast}, steps)
    assert cd.sigma_kl_early(ctx(spectra=only_std))["reason"] == \
        "spectra table has no elem_kl_gauss_nats series (run `attnlife spectra` first)"


def test_stable_rank_dip_and_recovery() -> None:
    steps = [0, 100, 200, 400, 800, 1600, 3200]
    assert cd.stable_rank_dip(ctx(spectra=_spectra({"stable_rank": [10.0, 4.0, 2.0, 2.5, 3.0, 3.2, 3.3]}, steps))) == \
        result("10.00 -> min 2.00 at step 200 -> 3.30", HOLDS, "sharp early drop and partial recovery")
    # limits: min exactly 80 % of the start, at exactly half the run; recovery exactly 10 % of the drop
    edge = [10.0, 9.0, 9.0, 9.0, 9.0, 8.0, 8.2]
    steps_edge = [0, 100, 200, 400, 800, 1600, 3200]
    assert cd.stable_rank_dip(ctx(spectra=_spectra({"stable_rank": edge}, steps_edge)))["verdict"] == HOLDS
    assert cd.stable_rank_dip(ctx(spectra=_spectra({"stable_rank": [10.0, 9.0, 8.01, 9.0, 9.0, 9.0, 9.0]},
                                                   steps)))["reason"] == "no sharp early drop"
    late_min = [10.0, 9.0, 9.0, 9.0, 9.0, 9.0, 2.0]
    assert cd.stable_rank_dip(ctx(spectra=_spectra({"stable_rank": late_min}, steps)))["reason"] == "no sharp early drop"
    no_rec = [10.0, 4.0, 2.0, 2.5, 2.7, 2.79, 2.79]                       # regains 0.79 < 0.8 of the drop of 8
    assert cd.stable_rank_dip(ctx(spectra=_spectra({"stable_rank": no_rec}, steps))) == \
        result("10.00 -> min 2.00 at step 200 -> 2.79", FAILS, "no partial recovery")
    full = [10.0, 4.0, 2.0, 2.5, 5.0, 8.0, 10.0]                          # back to the start: not partial
    assert cd.stable_rank_dip(ctx(spectra=_spectra({"stable_rank": full}, steps)))["reason"] == "no partial recovery"
    assert cd.stable_rank_dip(ctx(spectra=_spectra({"stable_rank": [2.0, 1.0]}, steps[:2]))) == result(
        "", NA, "spectra table has no stable_rank series (run `attnlife spectra` first)")


def test_heads_diversify() -> None:
    steps = [0, 1000, 2000, 4000]
    grows = _spectra({"stable_rank": [5.0, 5.0, 5.0, 5.0]}, steps, heads=3, spread=1.0, layers=2)
    got = cd.heads_diversify(ctx(spectra=grows))
    std_end = float(np.std([-1.0, 0.0, 1.0]))
    assert got == result(f"within-layer std of stable rank 0.000 -> {std_end:.3f} (max {std_end:.3f})", HOLDS,
                         "grows and persists")
    rows = _spectra({"stable_rank": [5.0, 5.0, 5.0, 5.0]}, steps, heads=2)
    spread = {0: 1.0, 1000: 1.19, 2000: 4.0, 4000: 1.19}
    rows.loc[rows.head_index == 1, "value"] += rows.loc[rows.head_index == 1, "step"].map(spread) * 2
    assert cd.heads_diversify(ctx(spectra=rows)) == result(
        "within-layer std of stable rank 1.000 -> 1.190 (max 4.000)", FAILS, "does not grow")
    spread = {0: 1.0, 1000: 1.2, 2000: 4.0, 4000: 2.0}
    rows2 = _spectra({"stable_rank": [5.0] * 4}, steps, heads=2)
    rows2.loc[rows2.head_index == 1, "value"] += rows2.loc[rows2.head_index == 1, "step"].map(spread) * 2
    assert cd.heads_diversify(ctx(spectra=rows2))["verdict"] == HOLDS    # 2.0 = 2 x 1.0 and = 0.5 x 4.0
    spread[4000] = 1.99
    rows3 = _spectra({"stable_rank": [5.0] * 4}, steps, heads=2)
    rows3.loc[rows3.head_index == 1, "value"] += rows3.loc[rows3.head_index == 1, "step"].map(spread) * 2
    assert cd.heads_diversify(ctx(spectra=rows3))["reason"] == "collapses from its maximum"
    assert cd.heads_diversify(ctx()) == result("", NA, "spectra table has no stable_rank (run `attnlife spectra` first)")


# --- theory claims ----------------------------------------------------------------------------

def test_scan_and_snap_claims() -> None:
    rec = {"kind": "theory-scan-snap"}
    common = [_row(s, "attn_common", v) for s, v in ((0, 0.8), (10, 0.6), (20, 0.7))]
    assert cd.common_attention_shrinks(ctx(metrics=common, record=rec)) == result("0.800 -> 0.700", HOLDS,
                                                                                   "shrinks by >= 0.1")
    short = [_row(0, "attn_common", 0.8), _row(20, "attn_common", 0.71), _row(20, "attn_common", 0.1, split="val")]
    assert cd.common_attention_shrinks(ctx(metrics=short, record=rec)) == result("0.800 -> 0.710", FAILS,
                                                                                  "shrinks by < 0.1")
    steps = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    snapping = [3.0 - 0.5 * (1 - np.exp(-s / 3)) for s in steps]            # falls 0.5 bits, flat from ~20 on
    ent = [_row(s, "entropy_distinct_bits", v) for s, v in zip(steps, snapping)]
    assert cd.distinct_entropy_freezes(ctx(metrics=ent, record=rec)) == result(
        "falls 0.500 bits; snaps at step 20 (< 0.01 bits per decade after); last decade -0.0000 bits", HOLDS,
        "falls then freezes")
    creeping = [_row(s, "entropy_distinct_bits", 3.0 - 0.05 * np.log10(1 + s)) for s in steps]
    row = cd.distinct_entropy_freezes(ctx(metrics=creeping, record=rec))
    assert row["verdict"] == FAILS and "never snaps" in row["measured"] and "last decade -0.0498" in row["measured"]
    frozen = [_row(s, "entropy_distinct_bits", 3.0 - 0.05 * (s > 0)) for s in steps]   # moved 0.05 < 10 x 0.01
    assert cd.distinct_entropy_freezes(ctx(metrics=frozen, record=rec))["verdict"] == FAILS
    na = result("", NA, "claim is about a scan-and-snap theory run; this run is `train`")
    assert cd.common_attention_shrinks(ctx()) == na and cd.distinct_entropy_freezes(ctx()) == na


def test_sparser_attention_with_larger_eta_z() -> None:
    sweep = {"kind": "theory-scan-snap-sweep"}
    c = ctx(record=sweep)
    c.sweep_eta_z_trend = [{"spearman_entropy_vs_eta_z": -1.0}, {"spearman_entropy_vs_eta_z": -0.5}]
    assert cd.entropy_falls_with_eta_z(c) == result("rho per group -1.00, -0.50", HOLDS, "negative in every group")
    c.sweep_eta_z_trend = [{"spearman_entropy_vs_eta_z": -1.0}, {"spearman_entropy_vs_eta_z": 0.0}]
    assert cd.entropy_falls_with_eta_z(c)["verdict"] == FAILS
    c.sweep_eta_z_trend = [{"spearman_entropy_vs_eta_z": np.nan}]
    assert cd.entropy_falls_with_eta_z(c) == result("", NA, "sweep has fewer than 3 values of eta_Z per group")


def test_sweep_and_markov_claims() -> None:
    sweep = {"kind": "theory-scan-snap-sweep"}
    trend = [{"spearman_entropy_vs_ratio": 0.8}, {"spearman_entropy_vs_ratio": np.nan},
             {"spearman_entropy_vs_ratio": 1.0}]
    assert cd.entropy_rises_with_ratio(ctx(record=sweep, sweep_trend=trend)) == result(
        "rho per group 0.80, 1.00", HOLDS, "positive in every group")
    trend[0]["spearman_entropy_vs_ratio"] = 0.0
    assert cd.entropy_rises_with_ratio(ctx(record=sweep, sweep_trend=trend)) == result(
        "rho per group 0.00, 1.00", FAILS, "not positive in every group")
    assert cd.entropy_rises_with_ratio(ctx(record=sweep, sweep_trend=[{"spearman_entropy_vs_ratio": np.nan}])) == \
        result("", NA, "sweep has fewer than 3 ratios per group")
    assert cd.entropy_rises_with_ratio(ctx(record={"kind": "theory-scan-snap"}))["reason"] == \
        "claim is about a scan-and-snap sweep theory run; this run is `theory-scan-snap`"
    markov = {"kind": "theory-markov"}
    sr = [_row(s, "stable_rank_embedding", v) for s, v in ((0, 6.0), (50, 1.99), (100, 4.0))]   # re-grows: fine
    cycles = pd.DataFrame({"signal": ["attn_focus_excess"] * 2 + ["attn_token_excess_max"],
                           "status": ["open", "closed", "closed"]})
    assert cd.condensation_then_cycles(ctx(metrics=sr, record=markov, cycles=cycles)) == result(
        "embedding stable rank 6.00 -> 1.99 (step 50); 1 closed, 1 open focus cycle(s)", HOLDS, "condenses and cycles")
    sr2 = sr[:1] + [_row(50, "stable_rank_embedding", 2.0)]
    assert cd.condensation_then_cycles(ctx(metrics=sr2, record=markov, cycles=cycles))["verdict"] == FAILS
    open_only = cycles[cycles.status == "open"]
    assert cd.condensation_then_cycles(ctx(metrics=sr, record=markov, cycles=open_only)) == result(
        "embedding stable rank 6.00 -> 1.99 (step 50); 0 closed, 1 open focus cycle(s)", FAILS,
        "no condensation or no closed cycle")
    other_signal = cycles[cycles.signal == "attn_token_excess_max"]          # a closed cycle on another signal
    assert cd.condensation_then_cycles(ctx(metrics=sr, record=markov, cycles=other_signal))["verdict"] == FAILS
    # a closed any-token cycle counts when its focus and refocus are both on a top (most frequent) token
    token = pd.DataFrame({"signal": ["attn_token_excess_max"], "status": ["closed"], "start_step": [50.0],
                          "end_step": [100.0]})
    argmax = [_row(s, "attn_token_excess_argmax", v) for s, v in ((0, 3.0), (50, 0.0), (100, 0.0))]
    top = {**markov, "top_token_ids": [0, 1]}
    assert cd.condensation_then_cycles(ctx(metrics=sr + argmax, record=top, cycles=token)) == result(
        "embedding stable rank 6.00 -> 1.99 (step 50); 0 closed, 0 open focus cycle(s); 1 closed on one top token",
        HOLDS, "condenses and cycles")
    elsewhere = sr + [_row(s, "attn_token_excess_argmax", v) for s, v in ((0, 0.0), (50, 0.0), (100, 7.0))]
    assert cd.condensation_then_cycles(ctx(metrics=elsewhere, record=top, cycles=token))["verdict"] == FAILS
    assert cd.condensation_then_cycles(ctx(metrics=sr + argmax, record=markov, cycles=token))["verdict"] == FAILS
    assert cd.condensation_then_cycles(ctx(record=markov))["reason"] == "run has no stable_rank_embedding"
    assert cd.condensation_then_cycles(ctx())["reason"] == \
        "claim is about a focus-dilution (Markov) theory run; this run is `train`"


def _stage_rows(rank: dict, focus: dict, qk: dict) -> list[dict]:
    return ([_row(s, "stable_rank_embedding", v) for s, v in rank.items()]
            + [_row(s, "attn_focus_excess", v, layer=0, head=0) for s, v in focus.items()]
            + [_row(s, "attn_qk_rel_change", v, layer=0, head=0) for s, v in qk.items()])


def test_stage_order_claim() -> None:
    markov = {"kind": "theory-markov"}
    t = np.concatenate([[0.0], np.unique(np.round(np.logspace(0, 4, 80)))])
    lt = np.log10(np.maximum(t, 1))
    focus = 0.2 * np.exp(-(lt - 2) ** 2 / 0.08) - 0.05 * np.clip(lt - np.log10(200), 0, 1)  # peak 100, low from 2000

    def rows(grow_from: float, qk_scale: float = 1.0) -> list[dict]:
        rank = 1 + 5 * np.exp(-t / 4) + 2 * np.maximum(0, lt - np.log10(grow_from))     # condensed by ~12 steps
        return _stage_rows(dict(zip(t, rank)), dict(zip(t, focus)), dict(zip(t, qk_scale * t / 1000)))

    row = cd.stages_in_order(ctx(metrics=rows(2000.0), record=markov))
    steps = dict(part.rsplit(" ", 1) for part in row["measured"].split(" (")[0].split("; "))
    assert row["verdict"] == HOLDS and list(steps) == ["condensation", "focus", "dilution", "new_direction"]
    assert 8 <= float(steps["condensation"]) <= 12 and 90 <= float(steps["focus"]) <= 110
    assert 150 <= float(steps["dilution"]) <= 260   # half-way from 0.2 down to -0.05
    assert 6325 <= float(steps["new_direction"]) <= 7100
    assert cd.stages_in_order(ctx(metrics=rows(50.0), record=markov))["verdict"] == FAILS   # new direction first
    assert cd.stages_in_order(ctx(metrics=rows(2000.0, qk_scale=10.0), record=markov))["verdict"] == FAILS  # not frozen
    assert cd.stages_in_order(ctx(record=markov))["verdict"] == NA


# --- the table --------------------------------------------------------------------------------

def test_claims_table_rows_order_and_failures() -> None:
    ids = [cid for cid, *_ in all_claims()]
    assert ids == ["lc_entropy_fall", "lc_span_rise", "lc_early_jsd", "lc_middle_jsd", "lc_stable_entropy",
                   "lc_final_jsd", "lc_generation_entropy", "lc_span_layers", "lc_best_val", "lc_overhead",
                   "wd_sigma_kl_early", "wd_stable_rank_dip", "wd_heads_diversify", "ss_common_shrinks",
                   "ss_entropy_freezes", "ss_entropy_vs_ratio", "ss_entropy_vs_eta_z",
                   "fd_condense_cycles", "fd_stage_order", "ol_induction_bump",
                   "dm_layers_stable_20", "xu_sink_share_grows", "xu_no_sinks_l0_l1"]
    assert {src for _, src, *_ in all_claims()} == {cl.SOURCE, cd.WEIGHTS, cd.SCAN_SNAP, cd.FOCUS_DILUTION,
                                                    *cliter.SOURCES}
    c = ctx(model={"entropy_bits": [4.2, 3.9, 3.5, 3.1, 2.8, 3.0, 3.0, 3.0]})
    table = check_claims(c)
    assert list(table.columns) == COLUMNS and table.claim_id.tolist() == ids
    first = table.iloc[0].to_dict()
    assert first == {"claim_id": "lc_entropy_fall", "source": "lifecycle paper",
                     "claim": "entropy falls from 4.2 to 2.8 bits in the first 1000 iterations",
                     **cl.entropy_falls_first_1000(c)}
    # a claim that raises is reported, not fatal: a scan-and-snap run without its metric raises IndexError
    row = check_claims(ctx(record={"kind": "theory-scan-snap"})).set_index("claim_id").loc["ss_common_shrinks"]
    assert row.verdict == NA and row.reason.startswith("could not measure: IndexError: ")
    assert row.measured == ""
    markov = check_claims(ctx(record={"kind": "theory-markov"}))
    lm = markov[markov.source.isin([cl.SOURCE, cd.WEIGHTS])]
    assert (lm.verdict == NA).all() and (lm.measured == "").all()
    assert set(lm.reason) == {"claim is about a transformer trained on text; this run is `theory-markov`"}
    assert check_claims(c).set_index("claim_id").loc["lc_entropy_fall", "verdict"] == HOLDS   # train runs: checked


# --- limits at, below and above each bound; the exact row each branch writes ---------------------

def test_lifecycle_layer_groups_limits() -> None:
    # 5 layers: layer 5 is missing, so the middle group 3-5 does not apply; 6 layers: it does
    five = ctx(metrics=_xlayer(_group([0.05] * 8, (3, 4))), record={"config": {"model": {"n_layer": 5}}})
    assert cl.middle_layers_jsd(five) == result("", NA, "claim is about layers 3-5 (0-based) of a 6-layer model; "
                                                        "this model has 5 layers")
    # every pair of the middle group at exactly 0.15: the pair mean is exactly 0.15, not below it
    at = ctx(metrics=_xlayer({(3, 4): [0.15] * 8, (3, 5): [0.15] * 8, (4, 5): [0.15] * 8}), layers=_layers6())
    assert cl.middle_layers_jsd(at) == result(
        "max cross-layer JSD of layers 3-5 (3 pairs), pair mean, 0.150 bits in steps 1000-3000", FAILS,
        "not below 0.15")
    # each group is all three of its layers: the pair with the middle layer counts
    early = ctx(metrics=_xlayer({(0, 1): [0.27] * 8, (0, 2): [0.0] * 8, (1, 2): [0.0] * 8}), layers=_layers6())
    assert cl.early_layers_jsd(early)["measured"] == \
        "max cross-layer JSD of layers 0-2 (3 pairs), pair mean, 0.090 bits in steps 1000-3000"
    middle = ctx(metrics=_xlayer({(3, 4): [0.36] * 8, (3, 5): [0.0] * 8, (4, 5): [0.0] * 8}), layers=_layers6())
    assert cl.middle_layers_jsd(middle)["measured"] == \
        "max cross-layer JSD of layers 3-5 (3 pairs), pair mean, 0.120 bits in steps 1000-3000"


def test_span_rise_limits() -> None:
    # 22 tokens is within 15 % of 25 (21.25-28.75)
    c = ctx(model={"span_tokens": [5.0, 10, 15, 20, 22, 25, 25, 25]})
    assert cl.span_rises_first_1000(c)["verdict"] == HOLDS
    # a flat span is not a fall: the reason names the missed numbers
    flat = ctx(model={"span_tokens": [5.0] * 8})
    assert cl.span_rises_first_1000(flat) == result("5.0 tokens at step 0 -> 5.0 at step 1000", FAILS,
                                                    "an end is more than 15 % from 5 / 25 tokens")


def test_generation_band_limits_and_probe_loss() -> None:
    # the probe loss, when the run has one, is the quality proxy (the val loss is ignored)
    rows = _sampled({1000: 3.0, 2000: 2.0})
    probe = pd.Series([1.2, 1.7], index=[1000, 2000])
    c = ctx(metrics=rows, val_loss=pd.Series([9.0, 1.0], index=[1000, 2000]))
    c.probe_loss = probe
    assert cl.generation_entropy_band(c) == result("probe loss 1.200 (2.8-3.2 bits, n=1) vs 1.700 (<2.5 bits, n=1)",
                                                   HOLDS, "the 2.8-3.2 band has the better loss")
    # 3.5 bits is above the good band, exactly 2.5 is not poor: no comparison
    loss = pd.Series([1.0, 1.0, 1.0], index=[1000, 2000, 3000])
    assert cl.generation_entropy_band(ctx(metrics=_sampled({1000: 3.5, 2000: 2.4}), val_loss=loss))["verdict"] == NA
    assert cl.generation_entropy_band(ctx(metrics=_sampled({1000: 3.0, 2000: 2.5}), val_loss=loss))["verdict"] == NA
    # equal losses: the band is not better
    assert cl.generation_entropy_band(ctx(metrics=_sampled({1000: 3.0, 2000: 2.0}), val_loss=loss)) == result(
        "val loss 1.000 (2.8-3.2 bits, n=1) vs 1.000 (<2.5 bits, n=1)", FAILS,
        "the low-entropy checkpoints have the better loss")


def test_stabilisation_entropy_without_a_phases_table() -> None:
    """A context whose phases frame has no columns at all (no phase table) reads the last 20 %."""
    steps = [0, 100, 200, 300, 400]
    c = ctx(model={"entropy_bits": [4.0, 3.5, 3.2, 3.0, 3.0]}, steps=steps, phases=pd.DataFrame())
    assert cl.stabilisation_entropy(c) == result(
        "3.00 bits over last 20 % of steps (320-400); no stabilisation phase detected", HOLDS, "inside 2.8-3.2")


def test_tracking_overhead_limits() -> None:
    record = {"config": {"model": {"block_size": 100}, "train": {"batch_size": 10}}}
    # 1000 tokens a step: 0.5 tokens/s is a 2000 s step (any positive rate counts); 10 s of full tier
    rows = _overhead_rows([10000.0], [0.5])
    assert cl.tracking_overhead(ctx(metrics=rows, record=record)) == result(
        "0.50% in total: full 0.50% (10.00 s) of 2000.0 s training", HOLDS, "at most 1.0 %")
    why = "run has no track_ms / light_ms / tokens_per_s (not a tracked training run)"
    assert cl.tracking_overhead(ctx(metrics=rows, record={})) == result("", NA, why)
    assert cl.tracking_overhead(ctx(metrics=rows, record={"kind": "train"})) == result("", NA, why)


def test_weight_claims_read_every_head() -> None:
    """The head mean includes head 0: heads 0 and 1 differ, and only their mean is flat late."""
    steps = [0, 4, 8, 16]
    spectra = _spectra({"elem_std": [0.0, 3.0, 3.0, 5.0], "elem_kl_gauss_nats": [0.0, 3.0, 3.0, 5.0]}, steps,
                       spread=8.0)
    # four steps are enough; early rate 3 / 4 = 0.75, late 2 / 8 = 0.25: exactly 3x, which holds
    assert cd.sigma_kl_early(ctx(spectra=spectra)) == result(
        "elem_std: early/late rate 3.0x; elem_kl_gauss_nats: early/late rate 3.0x", HOLDS, "both >= 3x")
    assert cd._head_mean(ctx(spectra=spectra), "elem_std").tolist() == [0.0, 3.0, 3.0, 5.0]


def test_sigma_kl_windows() -> None:
    # the late window starts at half the run (8), not at a third (5.33, which would take step 6)
    steps = [0, 4, 6, 8, 16]
    vals = [0.0, 3.0, 3.0, 3.0, 5.0]
    got = cd.sigma_kl_early(ctx(spectra=_spectra({"elem_std": vals, "elem_kl_gauss_nats": vals}, steps)))
    assert got["measured"] == "elem_std: early/late rate 3.0x; elem_kl_gauss_nats: early/late rate 3.0x"
    # a late window of two steps one apart: the rate is its change per step (0.5 / 1)
    steps = [0, 2, 4, 15, 16]
    vals = [0.0, 1.0, 2.0, 2.0, 2.5]
    got = cd.sigma_kl_early(ctx(spectra=_spectra({"elem_std": vals, "elem_kl_gauss_nats": vals}, steps)))
    assert got == result("elem_std: early/late rate 1.0x; elem_kl_gauss_nats: early/late rate 1.0x", FAILS,
                         "not both >= 3x")
    # a first quarter with one step has no early rate: not measured, so it does not hold
    steps = [0, 30, 35, 40]
    vals = [0.0, 1.0, 2.0, 3.0]
    got = cd.sigma_kl_early(ctx(spectra=_spectra({"elem_std": vals, "elem_kl_gauss_nats": vals}, steps)))
    assert got == result("elem_std: early/late rate nanx; elem_kl_gauss_nats: early/late rate nanx", FAILS,
                         "not both >= 3x")
    assert np.isnan(cd._rate(pd.Series([1.0, 2.0], index=[0, 10]), 5, 10))


def test_stable_rank_dip_on_three_steps() -> None:
    got = cd.stable_rank_dip(ctx(spectra=_spectra({"stable_rank": [10.0, 2.0, 3.0]}, [0, 100, 200])))
    assert got == result("10.00 -> min 2.00 at step 100 -> 3.00", HOLDS, "sharp early drop and partial recovery")


def _spread_rows(spread: dict[int, float]) -> pd.DataFrame:
    """Two heads per layer whose stable ranks differ by 2 x spread[step]: within-layer std = spread."""
    rows = _spectra({"stable_rank": [5.0] * len(spread)}, list(spread), heads=2)
    rows.loc[rows.head_index == 1, "value"] += rows.loc[rows.head_index == 1, "step"].map(spread) * 2
    return rows


def test_heads_diversify_limits() -> None:
    # ends exactly 1.2x its start (2.5 -> 3.0) and at half its maximum (6.0): holds
    assert cd.heads_diversify(ctx(spectra=_spread_rows({0: 2.5, 1000: 6.0, 2000: 4.0, 4000: 3.0}))) == result(
        "within-layer std of stable rank 2.500 -> 3.000 (max 6.000)", HOLDS, "grows and persists")
    # grown 1.2x but fallen below half its maximum: the reason is the collapse
    assert cd.heads_diversify(ctx(spectra=_spread_rows({0: 2.5, 1000: 7.0, 2000: 4.0, 4000: 3.0}))) == result(
        "within-layer std of stable rank 2.500 -> 3.000 (max 7.000)", FAILS, "collapses from its maximum")
    assert cd.heads_diversify(ctx(spectra=_spread_rows({0: 2.5, 1000: 2.0, 2000: 2.0, 4000: 2.0}))) == result(
        "within-layer std of stable rank 2.500 -> 2.000 (max 2.500)", FAILS, "does not grow")


def test_scan_snap_rows_exact() -> None:
    rec = {"kind": "theory-scan-snap"}
    # ends exactly 0.1 below its start: holds; the middle step does not decide
    common = [_row(0, "attn_common", 0.8), _row(10, "attn_common", 0.9), _row(20, "attn_common", 0.8 - 0.1),
              _row(10, "entropy_distinct_bits", 0.0), _row(20, "entropy_distinct_bits", 5.0)]  # another metric
    assert cd.common_attention_shrinks(ctx(metrics=common, record=rec)) == result("0.800 -> 0.700", HOLDS,
                                                                                   "shrinks by >= 0.1")
    steps = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    creeping = [_row(s, "entropy_distinct_bits", 3.0 - 0.05 * np.log10(1 + s)) for s in steps]
    assert cd.distinct_entropy_freezes(ctx(metrics=creeping, record=rec)) == result(
        "falls 0.150 bits; never snaps (< 0.01 bits per decade after); last decade -0.0498 bits", FAILS,
        "does not both fall and freeze")
    sweep = ctx(record={"kind": "theory-scan-snap-sweep"})
    sweep.sweep_eta_z_trend = [{"spearman_entropy_vs_eta_z": -1.0}, {"spearman_entropy_vs_eta_z": 0.0}]
    assert cd.entropy_falls_with_eta_z(sweep) == result("rho per group -1.00, 0.00", FAILS,
                                                        "not negative in every group")
    assert cd.entropy_falls_with_eta_z(ctx()) == result(
        "", NA, "claim is about a scan-and-snap sweep theory run; this run is `train`")


def test_markov_rows_exact() -> None:
    markov = {"kind": "theory-markov"}
    assert cd.condensation_then_cycles(ctx(record=markov)) == result("", NA, "run has no stable_rank_embedding")
    assert cd.stages_in_order(ctx(record=markov)) == result("", NA,
                                                           "run has no stable_rank_embedding or attn_focus_excess")
    assert cd.stages_in_order(ctx()) == result(
        "", NA, "claim is about a focus-dilution (Markov) theory run; this run is `train`")
    # a run without any cycles table (a frame without columns): no cycle, no crash
    sr = [_row(s, "stable_rank_embedding", v) for s, v in ((0, 6.0), (50, 1.5), (100, 4.0))]
    assert cd.condensation_then_cycles(ctx(metrics=sr, record=markov, cycles=pd.DataFrame())) == result(
        "embedding stable rank 6.00 -> 1.50 (step 50); 0 closed, 0 open focus cycle(s)", FAILS,
        "no condensation or no closed cycle")
    # an OPEN any-token cycle on a top token is not a cycle; a closed focus cycle is not an any-token one
    token = pd.DataFrame({"signal": ["attn_token_excess_max", "attn_focus_excess"], "status": ["open", "open"],
                          "start_step": [50.0, 0.0], "end_step": [100.0, 50.0]})
    argmax = [_row(s, "attn_token_excess_argmax", 0.0) for s in (0, 50, 100)]
    top = {**markov, "top_token_ids": [0]}
    assert cd.condensation_then_cycles(ctx(metrics=sr + argmax, record=top, cycles=token))["verdict"] == FAILS
    closed_focus = token.assign(status=["open", "closed"])
    assert cd.condensation_then_cycles(ctx(metrics=sr + argmax, record=top, cycles=closed_focus))["measured"] == \
        "embedding stable rank 6.00 -> 1.50 (step 50); 1 closed, 0 open focus cycle(s)"


def test_stage_order_row_exact() -> None:
    from attnlife.analysis.theory_trends import focus_stages

    markov = {"kind": "theory-markov"}
    t = np.concatenate([[0.0], np.unique(np.round(np.logspace(0, 4, 80)))])
    lt = np.log10(np.maximum(t, 1))
    focus = 0.2 * np.exp(-(lt - 2) ** 2 / 0.08) - 0.05 * np.clip(lt - np.log10(200), 0, 1)
    rank = 1 + 5 * np.exp(-t / 4) + 2 * np.maximum(0, lt - np.log10(2000.0))
    for qk_scale, verdict, reason in ((1.0, HOLDS, "in the paper's order"),
                                      (10.0, FAILS, "not in the paper's order (or a stage missing, or attention "
                                                    "not frozen)")):
        rows = _stage_rows(dict(zip(t, rank)), dict(zip(t, focus)), dict(zip(t, qk_scale * t / 1000)))
        stages = focus_stages(pd.DataFrame(rows, columns=METRIC_COLUMNS)).sort_values("step")
        cond = float(stages[stages.stage == "condensation"].attn_qk_rel_change.iloc[0])
        assert cond == pytest.approx(qk_scale * float(stages.step.iloc[0]) / 1000, rel=1e-12)
        want = "; ".join(f"{r.stage} {r.step:.0f}" for r in stages.itertuples()) + \
            f" (W_QK change at condensation {cond:.3f})"
        assert cd.stages_in_order(ctx(metrics=rows, record=markov)) == result(want, verdict, reason)
