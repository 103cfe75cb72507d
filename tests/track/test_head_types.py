"""Head-type scores: hand-built previous-token and induction circuits, closed forms."""
from __future__ import annotations

import math

import pytest
import torch

from attnlife.track import head_types as HT
from attnlife.track.metrics import sink_mass


def prev_token_pattern(T: int) -> torch.Tensor:
    """Every row i >= 1 puts all mass on i - 1 (row 0 on itself): [T, T]."""
    a = torch.zeros(T, T, dtype=torch.float64)
    a[0, 0] = 1.0
    a[torch.arange(1, T), torch.arange(T - 1)] = 1.0
    return a


def causal_softmax(scores: torch.Tensor) -> torch.Tensor:
    T = scores.size(-1)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)


def induction_circuit(tokens: torch.Tensor, vocab: int, beta: float = 20.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer 0: a previous-token head; layer 1: an induction head by K-composition.

    With one-hot embeddings E [T, V], layer 0 writes h_j = sum_k A0[j, k] E_k = E_{j-1} into key
    position j; layer 1's query at i is E_i, so score(i, j) = beta <E_i, h_j> = beta [tok_{j-1} == tok_i]
    and A1 = causal softmax: attention to the token after an earlier occurrence of tok_i.
    """
    E = torch.nn.functional.one_hot(tokens, vocab).double()            # [T, V]
    a0 = prev_token_pattern(len(tokens))
    h = a0 @ E                                                          # [T, V]: E_{j-1}
    h[0] = 0.0                                                          # key 0 has no previous token
    a1 = causal_softmax(beta * (E @ h.T))                               # [T, T]
    return a0, a1


def test_previous_token_head_scores_one_on_prev_and_zero_on_induction():
    a = prev_token_pattern(32)[None, None]                              # [1, 1, 32, 32]
    assert float(torch.nanmean(HT.prev_token_score(a))) == pytest.approx(1.0)
    assert float(torch.nanmean(HT.induction_score(a))) == pytest.approx(0.0)
    assert float(torch.nanmean(HT.self_score(a))) == pytest.approx(0.0)
    assert float(torch.nanmean(sink_mass(a))) == pytest.approx(1 / 31)  # only row 1 -> key 0
    assert float(torch.nanmean(HT.local_score(a))) == pytest.approx(1.0)


def test_two_layer_induction_circuit_scores_high_on_induction():
    vocab, half = 1000, 24
    tokens = HT.repeated_random_tokens(1, half, vocab, seed=0)[0]
    assert len(set(tokens[:half].tolist())) == half  # no repeat inside a half: a clean circuit
    a0, a1 = induction_circuit(tokens, vocab)
    ind1 = float(torch.nanmean(HT.induction_score(a1[None, None])))
    ind0 = float(torch.nanmean(HT.induction_score(a0[None, None])))
    assert ind1 > 0.99 and ind0 == pytest.approx(0.0)
    assert float(torch.nanmean(HT.prev_token_score(a1[None, None]))) < 0.1


def test_uniform_attention_closed_forms():
    T = 16
    a = causal_softmax(torch.zeros(T, T, dtype=torch.float64))[None, None]
    rows = torch.arange(1, T, dtype=torch.float64)
    want = float((1 / (rows + 1)).mean())
    assert float(torch.nanmean(HT.prev_token_score(a))) == pytest.approx(want)
    assert float(torch.nanmean(sink_mass(a))) == pytest.approx(want)
    assert float(torch.nanmean(HT.self_score(a))) == pytest.approx(want)
    loc = [min(4, i + 1) / (i + 1) for i in range(3, T)]
    assert float(torch.nanmean(HT.local_score(a))) == pytest.approx(sum(loc) / len(loc))
    ind = [1 / (i + 1) for i in range(T // 2, T)]
    assert float(torch.nanmean(HT.induction_score(a))) == pytest.approx(sum(ind) / len(ind))


def test_chunked_rows_equal_whole_pattern():
    from tests.track.helpers import random_causal

    p = random_causal(2, 3, 20, seed=4, dtype=torch.float64)
    for fn in (HT.prev_token_score, HT.local_score, sink_mass, HT.self_score, HT.induction_score):
        whole = fn(p)
        parts = torch.cat([fn(p[:, :, s:s + 7], s) for s in range(0, 20, 7)], dim=-1)
        torch.testing.assert_close(parts, whole, equal_nan=True)


def test_sink_share_and_loss_drop():
    assert HT.sink_head_share(torch.tensor([[0.1, 0.5], [0.31, float("nan")]])) == pytest.approx(2 / 3)
    loss = torch.tensor([[3.0, 3.0, 9.0, 1.0, 1.0]])  # 2n - 1 = 5 positions, n = 3
    assert HT.repeated_halves_loss_drop(loss) == (3.0, 1.0, 2.0)
    assert math.isnan(HT.sink_head_share(torch.tensor([float("nan")])))
