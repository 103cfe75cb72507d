"""BatchSampler: exact windows, y = x shifted, determinism per seed, exact resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnlife.data import BatchSampler, SplitTooShortError, load_prepared


@pytest.fixture(scope="module")
def train_ids(prepared_real) -> np.memmap:
    return load_prepared(prepared_real, "shakespeare_char").train


def test_windows_are_contiguous_and_shifted(train_ids):
    """x[b] = ids[o_b : o_b + T], y[b] = ids[o_b + 1 : o_b + T + 1], o ~ randint(N - T) of the seed."""
    sampler = BatchSampler(train_ids, block_size=32, batch_size=8, seed=0)
    reference = torch.Generator().manual_seed(0)
    ids = torch.from_numpy(np.asarray(train_ids, dtype=np.int64))
    for _ in range(5):
        x, y = sampler.next()
        assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])
        offsets = torch.randint(len(ids) - 32, (8,), generator=reference)
        for b, o in enumerate(offsets.tolist()):
            assert torch.equal(x[b], ids[o:o + 32]) and torch.equal(y[b], ids[o + 1:o + 33])


def test_offsets_cover_both_ends():
    ids = np.arange(10, dtype=np.uint16)  # N = 10, T = 4 -> offsets 0..5
    sampler = BatchSampler(ids, block_size=4, batch_size=64, seed=1)
    firsts = set()
    for _ in range(10):
        x, y = sampler.next()
        assert torch.equal(y, x + 1)
        firsts.update(x[:, 0].tolist())
    assert firsts == set(range(6))


def test_deterministic_per_seed(train_ids):
    a = [BatchSampler(train_ids, 16, 4, seed=7).next() for _ in range(2)]
    assert torch.equal(a[0][0], a[1][0])
    s1, s2, s3 = (BatchSampler(train_ids, 16, 4, seed=s) for s in (7, 7, 8))
    seq1 = [s1.next()[0] for _ in range(3)]
    seq2 = [s2.next()[0] for _ in range(3)]
    assert all(torch.equal(p, q) for p, q in zip(seq1, seq2))
    assert not torch.equal(seq1[0], s3.next()[0])


def test_state_dict_resume_continues_sequence(train_ids, tmp_path):
    ref = BatchSampler(train_ids, 16, 4, seed=3)
    for _ in range(5):
        ref.next()
    state = ref.state_dict()
    torch.save(state, tmp_path / "s.pt")
    expected = [ref.next() for _ in range(4)]
    resumed = BatchSampler(train_ids, 16, 4, seed=999)  # seed is overridden by the state
    resumed.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert resumed.batches_drawn == 5
    got = [resumed.next() for _ in range(4)]
    for (ex, ey), (gx, gy) in zip(expected, got):
        assert torch.equal(ex, gx) and torch.equal(ey, gy)


def test_split_too_short():
    with pytest.raises(SplitTooShortError, match="split has 16 tokens, fewer than block_size \\+ 1 = 17"):
        BatchSampler(np.zeros(16, dtype=np.uint8), block_size=16, batch_size=2, seed=0)
    BatchSampler(np.zeros(17, dtype=np.uint8), block_size=16, batch_size=2, seed=0).next()
