"""Series integrity: duplicated checkpoints and non-finite weights are flagged and excluded."""
from __future__ import annotations

import numpy as np
import pandas as pd

from attnlife.analysis.integrity import attention_digest, integrity_table, spectra_digests


def test_duplicate_and_nonfinite_flagged() -> None:
    a = {"h.0.attn.w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    b = {"h.0.attn.w": np.arange(6, dtype=np.float32).reshape(2, 3) + 1}
    bad = {"h.0.attn.w": np.array([[0.0, np.nan]], dtype=np.float32)}
    digests = [(0, *attention_digest(a)), (100, *attention_digest(b)), (200, *attention_digest(a)),
               (300, *attention_digest(bad))]
    table = integrity_table(digests).set_index("step")
    assert table.duplicate_of.tolist() == [-1, -1, 0, -1]
    assert table.nonfinite.tolist() == [False, False, False, True]
    assert table.excluded.tolist() == [False, False, True, True]


def test_digest_sees_shape_and_names() -> None:
    x = np.zeros(6, dtype=np.float32)
    assert attention_digest({"w": x})[0] != attention_digest({"w": x.reshape(2, 3)})[0]
    assert attention_digest({"w": x})[0] != attention_digest({"v": x})[0]


def test_spectra_only_duplicates() -> None:
    rows = []
    for step, scale in ((0, 1.0), (1000, 2.0), (2000, 2.0)):
        for h in range(2):
            rows.append({"model": "m", "step": step, "layer": 0, "head_index": h, "matrix": "qk",
                         "stat": "stable_rank", "value": scale + h})
    table = integrity_table(spectra_digests(pd.DataFrame(rows)))
    assert table.duplicate_of.tolist() == [-1, -1, 1000]


def test_digest_sees_dtype_and_flags_are_booleans() -> None:
    zeros32 = {"w": np.zeros(4, dtype=np.float32)}
    assert attention_digest(zeros32)[0] != attention_digest({"w": np.zeros(4, dtype=np.int32)})[0]  # same bytes
    assert attention_digest(zeros32) == attention_digest({"w": np.zeros(4, dtype=np.float32)})
    assert attention_digest(zeros32)[1] is False
    assert attention_digest({"w": np.array([np.inf], dtype=np.float64)})[1] is True
    assert attention_digest({"i": np.array([2**31 - 1], dtype=np.int32)})[1] is False  # ints are finite
    # names are hashed in sorted order: the mapping's order does not matter
    a, b = np.ones(2, dtype=np.float32), np.zeros(2, dtype=np.float32)
    assert attention_digest({"x": a, "y": b}) == attention_digest({"y": b, "x": a})


def test_table_sorts_by_step_so_the_earliest_step_is_the_original() -> None:
    table = integrity_table([(300, "d1", False), (100, "d1", False), (200, "d2", True)])
    assert table.step.tolist() == [100, 200, 300]
    assert table.duplicate_of.tolist() == [-1, -1, 100]
    assert table.excluded.tolist() == [False, True, True]
    assert table.nonfinite.tolist() == [False, True, False]


def test_spectra_digest_rounds_to_12_digits_ignores_row_order_and_flags_nan() -> None:
    def rows(step: int, values: list[float]) -> list[dict]:
        return [{"model": "m", "step": step, "layer": 0, "head_index": h, "matrix": "qk", "stat": "stable_rank",
                 "value": v} for h, v in enumerate(values)]

    frame = pd.DataFrame(rows(0, [1.0, 2.0]) + rows(10, [1.0 + 1e-14, 2.0]) + rows(20, [1.0 + 1e-9, 2.0])
                         + rows(30, [np.nan, 2.0]))
    digests = spectra_digests(frame.iloc[::-1])      # row order must not matter
    by_step = {s: (d, bad) for s, d, bad in digests}
    assert sorted(by_step) == [0, 10, 20, 30]
    assert by_step[10][0] == by_step[0][0]           # equal to 12 significant digits
    assert by_step[20][0] != by_step[0][0]
    assert [by_step[s][1] for s in (0, 10, 20, 30)] == [False, False, False, True]
    other_head = pd.DataFrame(rows(0, [2.0, 1.0]))   # same values on swapped heads: different weights
    assert spectra_digests(other_head)[0][1] != by_step[0][0]


def test_table_keeps_the_digests_and_its_columns_when_empty() -> None:
    table = integrity_table([(0, "aa", False), (10, "bb", False)])
    assert table.digest.tolist() == ["aa", "bb"]
    assert list(integrity_table([]).columns) == ["step", "digest", "duplicate_of", "nonfinite", "excluded"]


def test_spectra_digest_text_is_pinned() -> None:
    import hashlib

    rows = [{"model": "m", "step": 5, "layer": 0, "head_index": h, "matrix": "qk", "stat": "stable_rank",
             "value": 1.0 + h / 3} for h in (1, 0)]
    text = "0,0,qk,stable_rank,1|0,1,qk,stable_rank,1.33333333333"
    assert spectra_digests(pd.DataFrame(rows)) == [(5, hashlib.sha256(text.encode()).hexdigest(), False)]
