"""Snapshots: fp16 delta encoding is lossless, chains decode, compression is reported."""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlife.store.snapshots import SnapshotStore, decode_delta, encode_delta, fp16_bits
from tests.track.helpers import random_causal


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**16 - 1), min_size=1, max_size=64), st.integers(0, 2**31))
def test_delta_round_trip_any_fp16_bits(values, seed):
    bits = np.array(values, dtype=np.uint16)
    prev = np.random.default_rng(seed).integers(0, 2**16, size=bits.shape, dtype=np.uint16)
    assert np.array_equal(decode_delta(encode_delta(bits, prev), prev), bits)


def test_store_round_trip_special_values_and_chain(tmp_path):
    store = SnapshotStore(tmp_path, keyframe_every=3)
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 6e-8, 65504.0])
    series = []
    for k in range(7):
        t = random_causal(1, 2, 16, seed=k)[0].half()
        t.view(-1)[:7] = special.half()
        store.write(10 * k, "layer0", t)
        series.append(t)
    for k, t in enumerate(series):
        got = store.read("layer0", 10 * k)
        assert got.dtype == torch.float16
        assert np.array_equal(fp16_bits(got), fp16_bits(t))  # bit-exact, NaN and -0.0 included
    with np.load(tmp_path / "snapshots" / "layer0" / "step_0000010.npz") as z:
        assert int(z["base_step"]) == 0
    with np.load(tmp_path / "snapshots" / "layer0" / "step_0000030.npz") as z:
        assert int(z["base_step"]) == -1  # keyframe every 3


def test_delta_frames_compress_slowly_changing_patterns(tmp_path):
    store = SnapshotStore(tmp_path)
    base = random_causal(1, 4, 64, seed=0)[0]
    for k in range(6):
        store.write(k, "layer0", base + 1e-4 * k * base)
    c = store.compression("layer0")
    assert c["raw_bytes"] == 6 * 4 * 64 * 64 * 2 and c["ratio"] > 2.0
