"""attnlife.measures: entropy and stable rank against float64 closed forms."""
from __future__ import annotations

import math

import pytest
import torch

from attnlife.measures import entropy_bits, stable_rank, stable_rank_of_spectrum


def test_entropy_closed_forms() -> None:
    assert float(entropy_bits(torch.full((8,), 1 / 8, dtype=torch.float64))) == pytest.approx(3.0)
    assert float(entropy_bits(torch.tensor([1.0, 0.0, 0.0]))) == 0.0
    p = torch.tensor([[0.5, 0.25, 0.25, 0.0]], dtype=torch.float64)
    assert entropy_bits(p).tolist() == pytest.approx([1.5])
    assert entropy_bits(p.T, dim=0).tolist() == pytest.approx([1.5])


def test_entropy_matches_float64_reference() -> None:
    p = torch.softmax(torch.randn(5, 7, generator=torch.Generator().manual_seed(0)), -1)
    ref = [-sum(x * math.log2(x) for x in row) for row in p.double().tolist()]
    assert entropy_bits(p).tolist() == pytest.approx(ref, rel=1e-5)


def test_stable_rank_closed_forms() -> None:
    assert float(stable_rank(torch.eye(4))) == pytest.approx(4.0)
    w = torch.diag(torch.tensor([2.0, 1.0, 0.0]))
    assert float(stable_rank(w)) == pytest.approx((4 + 1) / 4)
    assert float(stable_rank(torch.outer(torch.arange(1.0, 4.0), torch.ones(5)))) == pytest.approx(1.0)
    assert stable_rank_of_spectrum(torch.tensor([[4.0, 1.0], [1.0, 1.0]])).tolist() == [1.25, 2.0]


def test_stable_rank_runs_in_float64_whatever_the_input_dtype() -> None:
    # a float32 SVD of this matrix is off by ~1e-7 relative; the promised float64 SVD of the same
    # (exactly converted) values agrees with the float64 reference to 1e-12
    w32 = torch.randn(24, 16, generator=torch.Generator().manual_seed(5)) @ torch.diag(torch.logspace(0, -3, 16))
    sigma = torch.linalg.svdvals(w32.double())
    ref = float((sigma**2).sum() / (sigma**2).max())
    assert float(stable_rank(w32)) == pytest.approx(ref, rel=1e-12)
    assert stable_rank(w32).dtype == torch.float64
    assert float(torch.linalg.svdvals(w32).square().sum() / torch.linalg.svdvals(w32).square().max()) != ref


def test_log_spaced_steps_closed_forms() -> None:
    from attnlife.measures import log_spaced_steps

    assert log_spaced_steps(0) == [0] and log_spaced_steps(1) == [0, 1]
    assert log_spaced_steps(8) == [0, 1, 2, 4, 8] and log_spaced_steps(15) == [0, 1, 2, 4, 8]
    assert log_spaced_steps(16) == [0, 1, 2, 4, 8, 16]
    # 10^(k log10(100) / 2) - 1 for k = 0, 1, 2 = 0, 9, 99
    assert log_spaced_steps(99, 3) == [0, 9, 99]
    assert log_spaced_steps(999, 4) == [0, 9, 99, 999]
    assert log_spaced_steps(1000, 4) == [0, 9, 99, 1000]          # 10^(k log10(1001) / 3) - 1 rounds to 9, 99
    assert log_spaced_steps(5, 20) == [0, 1, 2, 3, 4, 5]          # deduplicated
    assert log_spaced_steps(7, 2) == [0, 7]


def test_log_spaced_steps_against_a_float64_reference_at_large_n() -> None:
    from attnlife.measures import log_spaced_steps

    n, points = 10**7 + 3, 60
    want = sorted({int(round(10 ** (k * math.log10(n + 1) / (points - 1)) - 1)) for k in range(points)} | {0, n})
    assert log_spaced_steps(n, points) == want                    # a float32 grid rounds some of these off
    f32 = sorted({int(round(s)) for s in (torch.logspace(0, math.log10(n + 1), points) - 1).tolist()} | {0, n})
    assert f32 != want                                            # control: the float32 grid differs
