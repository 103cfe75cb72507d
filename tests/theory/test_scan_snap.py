"""Scan-and-snap: data model, reparameterised math against float64 references, and the dynamics."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlife.analysis.theory_trends import snap_row, sweep_final_table
from attnlife.errors import TheoryConfigError
from attnlife.measures import log_spaced_steps
from attnlife.store.run_dir import load_run
from attnlife.theory.scan_snap import ScanSnapAttention, SGDSpec, train_module, train_reparam
from attnlife.theory.scan_snap_data import (
    build_sequence_classes, distinct_entropy_bits, reparam_logits, sample_counts,
)
from attnlife.theory.scan_snap_runs import (
    ScanSnapConfig, SweepConfig, run_scan_snap, run_sweep, sequence_classes, sgd_spec,
)


def test_classes_are_distributions_with_disjoint_distinct_tokens() -> None:
    c = build_sequence_classes(3, 6, n_distinct=4, n_common=5, common_mass=0.3)
    assert c.vocab_size == 6 * 4 + 5
    torch.testing.assert_close(c.probs.sum(1), torch.ones(6, dtype=torch.float64))
    assert (c.distinct_mask.sum(0) <= 1).all()                       # each distinct token: one class
    torch.testing.assert_close((c.probs * c.common_mask).sum(1), torch.full((6,), 0.3, dtype=torch.float64))
    assert c.psi.tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError):
        build_sequence_classes(4, 3)


def test_sample_counts_match_probabilities() -> None:
    c = build_sequence_classes(1, 2, n_distinct=3, n_common=2)
    gen = torch.Generator().manual_seed(0)
    labels = torch.zeros(4000, dtype=torch.long)
    counts = sample_counts(c, labels, 65, gen)
    assert (counts.sum(-1) == 64).all()
    freq = counts.sum(0) / counts.sum()
    torch.testing.assert_close(freq.double(), c.probs[0], atol=0.01, rtol=0)


def test_reparam_logits_equal_positionwise_attention_float64() -> None:
    """Attention over positions with token-only logits equals the count-weighted softmax."""
    gen = torch.Generator().manual_seed(1)
    vocab, n_next, seq = 7, 3, 9
    ids = torch.randint(vocab, (seq,), generator=gen)
    z = torch.randn(vocab, generator=gen, dtype=torch.float64)
    y = torch.randn(vocab, n_next, generator=gen, dtype=torch.float64)
    b = torch.softmax(z[ids], 0)                                       # per position
    h = torch.zeros(vocab, dtype=torch.float64).index_add_(0, ids, b)
    expected = (h / h.norm()) @ y
    counts = torch.zeros(vocab, dtype=torch.float64).index_add_(0, ids, torch.ones(seq, dtype=torch.float64))
    torch.testing.assert_close(reparam_logits(counts[None], z[None], y)[0], expected)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(2, 6), st.floats(0.0, 2.0))
def test_distinct_entropy_at_zero_logits_is_zipf_entropy(m: int, nd: int, alpha: float) -> None:
    c = build_sequence_classes(m, 2 * m, n_distinct=nd, n_common=3, zipf_alpha=alpha)
    p = torch.arange(1, nd + 1, dtype=torch.float64) ** (-alpha)
    p = p / p.sum()
    h = float(-(p * p.log2()).sum())
    ent = distinct_entropy_bits(c, torch.zeros(m, c.vocab_size, dtype=torch.float64))
    torch.testing.assert_close(ent, torch.full((2 * m,), h, dtype=torch.float64))
    # a huge logit on one distinct token per class drives the entropy to 0
    z = torch.zeros(m, c.vocab_size, dtype=torch.float64)
    for n in range(2 * m):
        z[c.psi[n], n * nd] = 200.0
    assert distinct_entropy_bits(c, z).max() < 1e-6


def test_module_form_matches_reparam_when_wv_orthogonal() -> None:
    c = build_sequence_classes(2, 4, n_distinct=3, n_common=4)
    mod = ScanSnapAttention(c.vocab_size, 2, 4, seed=3)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in (mod.w_q, mod.w_k, mod.w_u):
            p.normal_(generator=gen)
        q, _ = torch.linalg.qr(torch.randn(mod.w_v.shape, generator=gen))
        mod.w_v.copy_(q)
    labels = torch.randint(4, (6,), generator=gen)
    ctx = torch.multinomial(c.probs.float()[labels], 31, replacement=True, generator=gen)
    counts = torch.zeros(6, c.vocab_size).scatter_add_(1, ctx, torch.ones(ctx.shape))
    state = mod.reparam()
    expected = reparam_logits(counts, state.logits_z[c.psi[labels]], state.decoder)
    torch.testing.assert_close(mod(ctx, c.psi[labels]), expected, atol=1e-5, rtol=1e-5)


def test_scan_dynamics_suppress_common_and_lower_entropy() -> None:
    c = build_sequence_classes(2, 4, n_distinct=6, n_common=8)
    seen = {}
    train_reparam(c, [1.0], [1.0], n_seeds=2, spec=SGDSpec(80, batch_size=16, seq_len=32), log_at=[0, 80],
                  logger=lambda step, s: seen.__setitem__(step, {k: v.clone() for k, v in s.items()}))
    start, end = seen[0], seen[80]
    assert (end["attn_common"] < start["attn_common"] - 0.05).all()   # common tokens suppressed
    assert (end["entropy_distinct_bits"] < start["entropy_distinct_bits"] - 0.1).all()
    assert (end["z_distinct_max"] > 0).all() and (end["z_common_mean"] < 0).all()
    assert end["loss"].max() < math.log(4)                            # better than chance


def test_module_form_also_scans() -> None:
    c = build_sequence_classes(1, 2, n_distinct=4, n_common=4)
    mod = ScanSnapAttention(c.vocab_size, 1, 2, seed=0)
    seen = {}
    train_module(c, mod, lr_attn=20.0, lr_out=1.0, spec=SGDSpec(60, seq_len=32), log_at=[0, 60],
                 logger=lambda step, s: seen.__setitem__(step, s))
    assert float(seen[60]["attn_common"].mean()) < float(seen[0]["attn_common"].mean()) - 0.02


def test_entropy_rises_with_rate_ratio_on_small_grid() -> None:
    c = build_sequence_classes(3, 6, n_distinct=6, n_common=8)
    ratios, eta_z = [0.3, 3.0, 30.0], 5.0
    state = train_reparam(c, [eta_z * r for r in ratios], [eta_z] * 3, n_seeds=2,
                          spec=SGDSpec(200, batch_size=16, seq_len=32))
    ent = distinct_entropy_bits(c, state.logits_z.double()).mean(-1).mean(-1)     # [G]
    assert ent[0] < ent[1] < ent[2]


def test_log_spaced_steps() -> None:
    steps = log_spaced_steps(1000, 20)
    assert steps[0] == 0 and steps[-1] == 1000 and steps == sorted(set(steps))
    assert len(steps) <= 20


def test_runs_write_readable_run_dirs(tmp_path) -> None:
    run = run_scan_snap(ScanSnapConfig(n_last=1, n_next=2, steps=20, seq_len=16, log_points=5), tmp_path / "a", quiet=True)
    r = load_run(run)
    assert r.record["kind"] == "theory-scan-snap"
    m = r.metrics()
    assert {"entropy_distinct_bits", "attn_common_class1", "loss"} <= set(m.metric)
    assert set(m[m.metric == "entropy_distinct_bits"].layer) == {0}
    sweep = run_sweep(SweepConfig(mk=[(1, 2)], ratios=[1.0, 2.0], eta_z=[1.0], n_seeds=2, steps=10,
                                  seq_len=16, log_points=3), tmp_path / "b", quiet=True)
    grid = load_run(sweep).sweep()
    final = sweep_final_table(grid)
    final = final[final.ratio == 2.0]["mean"].item()
    seeds = grid[(grid.name == "entropy_distinct_bits") & (grid.ratio == 2.0) & (grid.step == 10)].value
    assert len(seeds) == 2 and final == pytest.approx(seeds.mean())


def test_bad_settings_raise_one_error(tmp_path) -> None:
    with pytest.raises(TheoryConfigError, match="--seq-len"):
        run_scan_snap(ScanSnapConfig(seq_len=1), tmp_path / "x", quiet=True)
    assert not (tmp_path / "x").exists()


def test_logits_rank_distinct_tokens_by_cooccurrence() -> None:
    """The scan order: z grows fastest on the distinct token that co-occurs most (P ~ 1/j)."""
    c = build_sequence_classes(2, 4, n_distinct=5, n_common=6)
    state = train_reparam(c, [2.0], [2.0], n_seeds=1, spec=SGDSpec(120, batch_size=16, seq_len=32))
    z = state.logits_z[0, 0]
    for n in range(4):
        row = z[c.psi[n], n * 5:(n + 1) * 5]
        assert row[0] > row[1] > row[4]


def test_linear_profile_is_the_authors_construction() -> None:
    """Dataset2 of the authors' decoder_only.py: weight 1 per common token, linspace(0.1, 1) distinct."""
    c = build_sequence_classes(3, 6, n_distinct=10, n_common=10, common_mass=0.2, distinct_profile="linear")
    total = 10 + 5.5
    torch.testing.assert_close(c.probs[:, c.common_mask], torch.full((6, 10), 1 / total, dtype=torch.float64))
    lin = torch.linspace(0.1, 1.0, 10, dtype=torch.float64) / total
    for n in range(6):
        torch.testing.assert_close(c.probs[n, n * 10:(n + 1) * 10], lin)
    with pytest.raises(ValueError, match="distinct_profile"):
        build_sequence_classes(1, 2, distinct_profile="flat")


def test_momentum_decoder_and_start_match_torch_sgd_float64() -> None:
    """train_reparam with momentum, a full-vocabulary decoder and a uniform start is torch.optim.SGD."""
    torch.set_default_dtype(torch.float64)
    try:
        c = build_sequence_classes(1, 2, n_distinct=3, n_common=2, distinct_profile="linear")
        n_out, a, mu = c.vocab_size + 3, 0.3, 0.9
        spec = SGDSpec(6, batch_size=4, seq_len=9, seed=5, momentum=mu, n_out=n_out, init_scale=a)
        got = train_reparam(c, [2.0], [0.5], n_seeds=1, spec=spec)
        gen = torch.Generator().manual_seed(5)
        y = ((torch.rand(1, c.vocab_size, n_out, generator=gen) * 2 - 1) * a)[0].requires_grad_(True)
        z = ((torch.rand(1, 1, c.vocab_size, generator=gen) * 2 - 1) * a)[0].requires_grad_(True)
        opt = torch.optim.SGD([{"params": [y], "lr": 2.0}, {"params": [z], "lr": 0.5}], momentum=mu)
        for _ in range(6):
            labels = torch.randint(2, (1, 4), generator=gen)
            counts = sample_counts(c, labels, 9, gen)[0]
            loss = torch.nn.functional.cross_entropy(reparam_logits(counts, z[c.psi[labels[0]]], y), labels[0])
            opt.zero_grad()
            loss.backward()
            opt.step()
        torch.testing.assert_close(got.decoder[0, 0], y.detach())
        torch.testing.assert_close(got.logits_z[0, 0], z.detach())
    finally:
        torch.set_default_dtype(torch.float32)


def test_reproduces_two_cells_of_the_papers_figure_6() -> None:
    """Tian et al. 2023 Fig. 6, M/K = 1/2, 100 steps, 10 seeds (the authors' figure_6_data.pkl):
    mean distinct-token entropy 2.092 +- 0.016 nats at eta_Z 0.5, eta_Y/eta_Z 10 and 1.551 +- 0.155 at
    eta_Z 3, ratio 1 (+- is their seed std). Ours must land within one of their seed stds."""
    cfg = SweepConfig(mk=[(1, 2)])
    c = sequence_classes(cfg, 1, 2)
    state = train_reparam(c, [5.0, 3.0], [0.5, 3.0], n_seeds=10, spec=sgd_spec(cfg, c))
    nats = distinct_entropy_bits(c, state.logits_z.double()).mean(-1).mean(-1) * math.log(2)   # [G]
    assert abs(float(nats[0]) - 2.092) < 0.016 and abs(float(nats[1]) - 1.551) < 0.155


def test_default_single_run_snaps(tmp_path) -> None:
    """The verb's default setting (shortened to 400 steps): the distinct-token entropy falls, then
    changes by < 0.01 bits per decade of steps: snapped, before step 100."""
    r = load_run(run_scan_snap(ScanSnapConfig(steps=400, log_points=40), tmp_path / "s", quiet=True))
    h = r.metrics()
    h = h[h.metric == "entropy_distinct_bits"].sort_values("step")
    snap = snap_row(h.step.to_numpy(), h.value.to_numpy())
    assert snap["status"] == "snapped" and snap["snap_step"] < 100
