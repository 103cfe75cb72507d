"""Markov data (exact stationarity), the one-layer model's metrics, and the run directory."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlife.errors import DataSourceError
from attnlife.store.run_dir import load_run
from attnlife.theory.markov import MarkovConfig, OneLayerTransformer, focus_signals, run_markov, stable_rank
from attnlife.theory.markov_data import load_text, reversible_chain, sample_chain, zipf_distribution
from attnlife.errors import TheoryConfigError


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 40), st.floats(0.0, 2.0), st.integers(2, 8), st.integers(0, 100))
def test_chain_has_the_requested_stationary_distribution(vocab: int, s: float, degree: int, seed: int) -> None:
    pi = zipf_distribution(vocab, s)
    trans = reversible_chain(pi, degree, seed)
    assert (trans >= 0).all()
    torch.testing.assert_close(trans.sum(1), torch.ones(vocab, dtype=torch.float64))
    torch.testing.assert_close(pi @ trans, pi, atol=1e-12, rtol=0)
    offdiag = (trans > 0).sum(1) - (trans.diagonal() > 0).long()
    assert int(offdiag.max()) <= max(degree, 2)


def test_sampled_chain_frequencies_match_pi() -> None:
    pi = zipf_distribution(6, 1.0)
    trans = reversible_chain(pi, 4, 0)
    seqs = sample_chain(trans, pi, 400, 50, torch.Generator().manual_seed(0))
    freq = torch.bincount(seqs.reshape(-1), minlength=6).double() / seqs.numel()
    torch.testing.assert_close(freq, pi, atol=0.02, rtol=0)


def test_stable_rank_closed_forms() -> None:
    assert stable_rank(torch.eye(5)) == pytest.approx(5.0)
    assert stable_rank(torch.outer(torch.arange(1.0, 4), torch.ones(4))) == pytest.approx(1.0)
    assert stable_rank(torch.diag(torch.tensor([2.0, 1.0]))) == pytest.approx(1.25)


def test_focus_signals_reference() -> None:
    t = 4
    attn = torch.ones(t, t).tril()
    attn = (attn / attn.sum(-1, keepdim=True))[None]
    keys = torch.tensor([[0, 1, 0, 2]])
    top = torch.tensor([True, False, False])
    got = focus_signals(attn, keys, top)
    expected = (1 + 1 / 2 + 2 / 3 + 2 / 4) / 4
    assert got["attn_focus_mass"] == pytest.approx(expected)
    assert got["attn_focus_excess"] == pytest.approx(0.0, abs=1e-7)
    assert got["attn_entropy_bits"] == pytest.approx(sum(math.log2(i) for i in range(1, 5)) / 4)
    assert got["attn_token_excess_max"] == pytest.approx(0.0, abs=1e-7)


def test_token_excess_of_attention_on_the_first_key() -> None:
    """Every query attends only to position 0 (token 0): token 0 gains 1 - mean uniform share of token 0
    = 1 - (1 + 1/2 + 2/3 + 2/4) / 4 = 1/3, the others lose their uniform share."""
    attn = torch.zeros(1, 4, 4, dtype=torch.float64)
    attn[0, :, 0] = 1.0
    got = focus_signals(attn, torch.tensor([[0, 1, 0, 2]]), torch.tensor([False, True, False]))
    assert got["attn_token_excess_max"] == pytest.approx(1 / 3, abs=1e-12)
    assert got["attn_token_excess_argmax"] == 0.0
    assert got["attn_focus_excess"] == pytest.approx(-(1 / 2 + 1 / 3 + 1 / 4) / 4, abs=1e-12)  # top = token 1


def test_model_is_causal() -> None:
    model = OneLayerTransformer(5, 8, 6, init_std=0.5, seed=0)
    x = torch.randint(5, (2, 8))
    logits, attn = model(x)
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % 5
    logits2, _ = model(y)
    torch.testing.assert_close(logits[:, :-1], logits2[:, :-1])
    assert torch.triu(attn[0], 1).abs().max() == 0


def test_residual_path_adds_the_embedding_readout() -> None:
    """Same weights with and without the residual: logits differ by exactly (E[x] + P[t]) W_O^T."""
    x = torch.randint(5, (2, 8))
    with_res = OneLayerTransformer(5, 8, 6, init_std=0.5, seed=3, attn_init_std=0.3)
    without = OneLayerTransformer(5, 8, 6, init_std=0.5, seed=3, attn_init_std=0.3, residual=False)
    (a, attn_a), (b, attn_b) = with_res(x), without(x)
    h = with_res.wte[x] + with_res.wpe[:8]
    torch.testing.assert_close(a - b, h @ with_res.w_o.T)
    torch.testing.assert_close(attn_a, attn_b)


def test_run_condenses_embedding_and_writes_run_dir(tmp_path) -> None:
    cfg = MarkovConfig(vocab_size=8, steps=60, seq_len=16, n_embd=16, n_train_seqs=128, log_every=20)
    r = load_run(run_markov(cfg, tmp_path / "m", quiet=True))
    m = r.metrics()
    assert r.record["kind"] == "theory-markov" and r.record["top_token_ids"] == [0, 1]
    sr = m[m.metric == "stable_rank_embedding"].sort_values("step").value.to_numpy()
    assert sr[-1] < 0.6 * sr[0]                                      # condensation toward rank ~1
    val = m[(m.metric == "loss") & (m.split == "val")].sort_values("step").value.to_numpy()
    assert val[-1] < val[0] - 0.2
    assert {"attn_focus_excess", "attn_param_norm", "stable_rank_out_proj"} <= set(m.metric)


def test_text_case_and_errors(tmp_path, shakespeare_txt) -> None:
    corpus = load_text(shakespeare_txt, max_chars=20_000)
    assert corpus.chars[0] == " " and corpus.freqs[0] == corpus.freqs.max()
    cfg = MarkovConfig(text=str(shakespeare_txt), steps=5, seq_len=8, n_embd=8, n_train_seqs=32, log_every=5)
    r = load_run(run_markov(cfg, tmp_path / "s", quiet=True))
    assert r.record["dataset"]["source"] == str(shakespeare_txt)
    with pytest.raises(DataSourceError, match="--text"):
        load_text(tmp_path / "missing.txt")
    with pytest.raises(TheoryConfigError):
        run_markov(MarkovConfig(lr=-1), tmp_path / "bad", quiet=True)
    assert not (tmp_path / "bad").exists()


def test_planted_focus_cycles_reach_the_cycles_table(tmp_path) -> None:
    """A Markov run whose focus excess has two full focus-dilution-recovery cycles and a final
    dilution: analysis table `cycles` (load_run().analysis()) holds 2 closed rows and 1 open row."""
    from attnlife.explain import analyze_run
    from attnlife.store.metrics_table import MetricWriter
    from attnlife.store.run_dir import write_run_json

    out = tmp_path / "planted"
    write_run_json(out, {"kind": "theory-markov", "config": {"lr": 0.5}, "seed": 0,
                         "dataset": {"source": "markov"}, "top_token_ids": [0, 1]})
    steps = range(0, 3600, 10)
    with MetricWriter(out) as w:
        for s in steps:
            w.log(s, "attn_focus_excess", 0.1 * math.cos(2 * math.pi * s / 1000), layer=0, head_index=0)
            w.log(s, "attn_token_excess_max", 0.1, layer=0, head_index=0)               # flat: no cycle
            w.log(s, "stable_rank_embedding", 1.0 + 5.0 * math.exp(-s / 20) + s / 1000)  # condensed by 60, +1 at 1000
            w.log(s, "attn_qk_rel_change", s / 1e4, layer=0, head_index=0)
            w.log(s, "loss", 1.0, split="val")
    analyze_run(out, quiet=True, sample=False)
    cycles = load_run(out).analysis()["cycles"]
    focus = cycles[cycles.signal == "attn_focus_excess"]
    closed = focus[focus.status == "closed"]
    assert closed.start_step.tolist() == [1000.0, 2000.0] and closed.period_steps.tolist() == [1000.0, 1000.0]
    assert closed.prominence.to_numpy() == pytest.approx([0.2, 0.2], abs=0.01)
    assert focus[focus.status == "open"].start_step.tolist() == [3000.0]
    assert set(cycles.signal) == {"attn_focus_excess"}                      # the flat any-token signal has none
    stages = load_run(out).analysis()["focus_stages"].set_index("stage")
    steps = stages.step.to_dict()   # rank minimum 1.13 at step 110 (d/ds = 0): 90 % of the fall by 50, +1 by 1140
    assert steps["condensation"] == 50.0 and steps["new_direction"] == 1140.0
    assert steps["focus"] in (1000.0, 2000.0, 3000.0) and 230.0 <= steps["dilution"] - steps["focus"] <= 280.0  # half-way: cos = 0
    assert stages.attn_qk_rel_change["condensation"] == pytest.approx(0.005)


def test_cli_defaults_are_the_searched_setting() -> None:
    """`attnlife theory markov` with no options runs MarkovConfig's defaults, the setting of the
    search that closed a cycle (V 50, Zipf 1.5, 20 000 steps; docs/theory.md)."""
    import inspect

    from attnlife.cli.theory_cmd import markov

    cli = {name: p.default.default for name, p in inspect.signature(markov).parameters.items()}
    cfg = MarkovConfig()
    assert (cfg.vocab_size, cfg.zipf_exponent, cfg.steps, cfg.log_every) == (50, 1.5, 20000, 200)
    assert (cli["vocab_size"], cli["zipf"], cli["log_every"], cli["max_iters"]) == (50, 1.5, 200, None)
    for name, field in (("degree", "degree"), ("seq_len", "seq_len"), ("n_embd", "n_embd"), ("init_std", "init_std"),
                        ("attn_init_std", "attn_init_std"), ("lr", "lr"), ("batch_size", "batch_size"),
                        ("n_train_seqs", "n_train_seqs"), ("top_tokens", "top_tokens"), ("log_points", "log_points"),
                        ("residual", "residual"), ("seed", "seed")):
        assert cli[name] == getattr(cfg, field), name


@pytest.mark.slow
def test_default_run_closes_a_focus_dilution_cycle_on_the_most_frequent_token(tmp_path) -> None:
    """The default setting (about 2 minutes): attention focuses on token 0 (the most frequent),
    dilutes and refocuses on it: one closed cycle on the any-token signal (measured: peak 354,
    trough 1503, refocus 3503, amplitude 0.084), with W_Q, W_K frozen while the embedding condenses."""
    from attnlife.explain import analyze_run

    out = run_markov(MarkovConfig(), tmp_path / "default", quiet=True)
    analyze_run(out, quiet=True, sample=False)
    run = load_run(out)
    cycles = run.analysis()["cycles"]
    closed = cycles[(cycles.signal == "attn_token_excess_max") & (cycles.status == "closed")]
    assert len(closed) >= 1 and closed.prominence.max() > 0.05
    m = run.metrics()
    focused = m[m.metric == "attn_token_excess_argmax"].set_index("step").value
    peak = closed.iloc[0]
    assert focused[peak.start_step] == 0 and focused[peak.end_step] == 0       # the same, most frequent token
    stages = run.analysis()["focus_stages"].set_index("stage")
    assert stages.loc["condensation", "attn_qk_rel_change"] < 1e-3 and stages.loc["condensation", "value"] < 2.0


def test_per_step_noise_makes_no_markov_cycles_but_a_planted_cycle_survives_it() -> None:
    """Logged every step, a flat focus signal plus noise has no cycle (the light tier's noise
    floor); the same noise on one focus-dilution-refocus wave still gives that one closed cycle."""
    import numpy as np
    import pandas as pd

    from attnlife.analysis.builders import cycles_table

    rng = np.random.default_rng(0)
    steps = np.arange(3000)

    def frame(values):
        return pd.DataFrame({"step": steps, "split": "train", "layer": -1, "head_index": -1, "layer_b": -1,
                             "metric": "attn_focus_excess", "value": values})

    flat, _ = cycles_table(frame(0.05 + 0.01 * rng.normal(size=3000)), None)
    assert flat.empty
    wave = 0.05 * (1 - np.cos(2 * np.pi * steps / 1500)) / 2     # focus 750, dilution 1500, refocus 2250
    planted, _ = cycles_table(frame(wave + 0.01 * rng.normal(size=3000)), None)
    closed = planted[planted.status == "closed"]
    assert len(closed) == 1 and abs(closed.start_step.iloc[0] - 750) < 100 and abs(closed.period_steps.iloc[0] - 1500) < 150
