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
