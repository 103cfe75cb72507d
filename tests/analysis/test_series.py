"""Step-indexed series cut from the tidy metric table: which rows, which means, which aliases."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnlife.analysis.series import (attention_split, checkpoint_loss, head_table, layer_series, model_series,
                                      probe_loss, spectra_head_series, train_loss, val_loss)


def _row(step, metric, value, split="probe", layer=-1, head=-1, layer_b=-1) -> dict:
    return {"step": step, "split": split, "layer": layer, "head_index": head, "layer_b": layer_b, "metric": metric,
            "value": float(value), "stderr": np.nan}


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def _entropy_steps(split: str, n: int, metric: str = "entropy_bits") -> list[dict]:
    return [_row(10 * s, metric, 3.0, split=split, layer=0, head=0) for s in range(n)]


def test_attention_split_prefers_probe_then_train_then_sample_at_min_steps() -> None:
    assert attention_split(_frame(_entropy_steps("probe", 6) + _entropy_steps("train", 50))) == "probe"
    assert attention_split(_frame(_entropy_steps("probe", 5) + _entropy_steps("train", 6))) == "train"
    assert attention_split(_frame(_entropy_steps("probe", 5) + _entropy_steps("sample", 6))) == "sample"
    # nobody reaches min_steps: the most steps wins, the earlier split on a tie
    assert attention_split(_frame(_entropy_steps("probe", 2) + _entropy_steps("train", 4))) == "train"
    assert attention_split(_frame(_entropy_steps("sample", 3) + _entropy_steps("train", 3))) == "train"
    assert attention_split(_frame(_entropy_steps("probe", 5) + _entropy_steps("train", 4)), min_steps=5) == "probe"
    # only per-head entropy counts: model-level, layer-level and cross-layer rows do not
    other = [_row(s, "entropy_bits", 1, split="probe") for s in range(9)]
    other += [_row(s, "entropy_bits", 1, split="probe", layer=0) for s in range(9)]
    other += [_row(s, "entropy_bits", 1, split="probe", layer=0, head=0, layer_b=1) for s in range(9)]
    other += [_row(s, "span_tokens", 1, split="probe", layer=0, head=0) for s in range(9)]
    assert attention_split(_frame(other + _entropy_steps("train", 2))) == "train"
    assert attention_split(_frame(other)) is None
    assert attention_split(_frame(_entropy_steps("probe", 6, metric="entropy_distinct_bits"))) == "probe"


def test_head_table_selects_per_head_rows_of_the_split_and_applies_aliases() -> None:
    rows = [_row(0, "attn_entropy_bits", 2.0, layer=0, head=1), _row(0, "span_tokens", 4.0, layer=1, head=0),
            _row(0, "entropy_bits", 9.0, layer=0), _row(0, "entropy_bits", 9.0, split="train", layer=0, head=0),
            _row(0, "xlayer_jsd", 0.1, layer=0, head=0, layer_b=1)]
    table = head_table(_frame(rows), "probe")
    assert list(table.columns) == ["step", "layer", "head_index", "metric", "value"]
    assert table.to_dict("records") == [{"step": 0, "layer": 0, "head_index": 1, "metric": "entropy_bits", "value": 2.0},
                                        {"step": 0, "layer": 1, "head_index": 0, "metric": "span_tokens", "value": 4.0}]


def _two_layer_frame() -> pd.DataFrame:
    rows = []
    for step in (0, 100):
        for layer in (0, 1, 2):
            for head in (0, 1):
                rows.append(_row(step, "entropy_bits", 4.0 - layer - head - step / 100, layer=layer, head=head))
                rows.append(_row(step, "span_tokens", 10.0 * (layer + 1) + head, layer=layer, head=head))
            rows.append(_row(step, "head_jsd_mean", 0.1 * (layer + 1) + step / 1000, layer=layer))
            rows.append(_row(step, "head_jsd_mean", 99.0, split="train", layer=layer))
        rows.append(_row(step, "xlayer_jsd", 0.2, layer=0, layer_b=1))
        rows.append(_row(step, "xlayer_jsd", 0.4, layer=0, layer_b=2))
        rows.append(_row(step, "xlayer_jsd", 0.8, layer=1, layer_b=2))
        rows.append(_row(step, "loss", 5.0, split="train"))
    return _frame(rows)


def test_layer_series_means_heads_and_the_pairs_a_layer_is_in() -> None:
    frame = _two_layer_frame()
    one = layer_series(frame, "probe", 1)
    assert sorted(one.columns) == ["entropy_bits", "head_jsd_mean", "span_tokens", "xlayer_jsd"]
    assert one.index.tolist() == [0, 100]
    assert one.entropy_bits.tolist() == [2.5, 1.5]                     # mean of heads 0, 1 (3 - h - step / 100)
    assert one.span_tokens.tolist() == [20.5, 20.5]
    assert one.head_jsd_mean.tolist() == pytest.approx([0.2, 0.3])     # layer rows of the split only
    assert one.xlayer_jsd.tolist() == pytest.approx([0.5, 0.5])       # pairs (0, 1) and (1, 2)
    assert layer_series(frame, "probe", 0).xlayer_jsd.tolist() == pytest.approx([0.3, 0.3])
    # the outer layers: layer 1's values are the mean of layers 0 and 2, so only these tell the
    # named layer's rows from the other layers' rows
    for layer, entropy, span, jsd in ((0, [3.5, 2.5], [10.5, 10.5], [0.1, 0.2]), (2, [1.5, 0.5], [30.5, 30.5], [0.3, 0.4])):
        got = layer_series(frame, "probe", layer)
        assert got.entropy_bits.tolist() == entropy and got.span_tokens.tolist() == span, layer
        assert got.head_jsd_mean.tolist() == pytest.approx(jsd), layer
    assert "xlayer_jsd" not in layer_series(frame[frame.metric != "xlayer_jsd"], "probe", 0)


def test_model_series_means_layers_and_adds_model_level_entropy_only_when_missing() -> None:
    frame = _two_layer_frame()
    model = model_series(frame, "probe")
    assert model.entropy_bits.tolist() == pytest.approx([2.5, 1.5])    # layers 3.5, 2.5, 1.5 at step 0
    assert model.span_tokens.tolist() == pytest.approx([20.5, 20.5])
    assert model.xlayer_jsd.tolist() == pytest.approx([(0.3 + 0.5 + 0.6) / 3] * 2)
    assert model.head_jsd_mean.tolist() == pytest.approx([0.2, 0.3])
    theory = _frame([_row(s, "entropy_distinct_bits", 3.0 - s, split="train") for s in (0, 1, 2)]
                    + [_row(0, "loss", 1.0, split="train")])
    got = model_series(theory, "train")
    assert got.entropy_bits.tolist() == [3.0, 2.0, 1.0] and got.index.tolist() == [0, 1, 2]
    both = pd.concat([frame, _frame([_row(0, "entropy_bits", 77.0)])])  # a model row beside per-head rows
    assert model_series(both, "probe").entropy_bits.tolist() == pytest.approx([2.5, 1.5])
    assert model_series(_frame([_row(0, "loss", 1.0, split="train")]), "probe").empty


def test_losses_by_step() -> None:
    rows = [_row(0, "eval_loss", 4.0, split="val"), _row(0, "eval_loss", 3.0, split="val"),
            _row(10, "eval_loss", 2.0, split="val"), _row(5, "loss", 9.0, split="val"),
            _row(0, "eval_loss", 7.0, split="val", layer=0), _row(3, "loss", 2.5, split="train"),
            _row(1, "loss", 3.5, split="train"), _row(1, "loss", 9.0, split="train", layer=0, head=0)]
    assert val_loss(_frame(rows)).to_dict() == {0: 3.5, 10: 2.0}     # eval_loss wins over loss
    assert val_loss(_frame(rows[3:4])).to_dict() == {5: 9.0}
    assert val_loss(_frame(rows[5:])).empty
    assert train_loss(_frame(rows)).to_dict() == {1: 3.5, 3: 2.5}


def test_spectra_head_series_first_model_heads_only() -> None:
    rows = []
    for model in ("a", "b"):
        for step in (20, 10):
            for head in (-1, 0, 1):
                for matrix in ("qk", "ov"):
                    rows.append({"model": model, "step": step, "layer": 0, "head_index": head, "matrix": matrix,
                                 "stat": "stable_rank", "value": step + head + (model == "b") * 100
                                 + (matrix == "ov") * 1000})
    spectra = pd.DataFrame(rows + [{"model": "a", "step": 10, "layer": 0, "head_index": 0, "matrix": "qk",
                                    "stat": "sigma_max", "value": -5.0}])
    table = spectra_head_series(spectra, "stable_rank")
    assert table.index.tolist() == [10, 20] and table.columns.tolist() == [(0, 0), (0, 1)]
    assert table.to_numpy().tolist() == [[10.0, 11.0], [20.0, 21.0]]
    assert spectra_head_series(spectra, "stable_rank", matrix="ov").to_numpy()[0].tolist() == [1010.0, 1011.0]
    assert spectra_head_series(spectra, "condition_number").empty


def test_attention_split_fallback_is_the_most_steps_not_the_last_name() -> None:
    assert attention_split(_frame(_entropy_steps("probe", 4) + _entropy_steps("train", 2))) == "probe"
    assert attention_split(_frame(_entropy_steps("sample", 1))) == "sample"          # one step is some
    assert attention_split(_frame(_entropy_steps("train", 5) + _entropy_steps("sample", 3))) == "train"


def test_model_series_reads_its_own_split_and_model_rows_only() -> None:
    frame = _two_layer_frame()
    extra = [_row(0, "entropy_distinct_bits", 5.0, split="train"), _row(0, "entropy_bits", 7.0, layer=0)]
    got = model_series(pd.concat([frame[frame.metric != "entropy_bits"], _frame(extra)]), "probe")
    assert "entropy_bits" not in got.columns       # neither another split's model row nor a layer-level row
    assert val_loss(_frame([_row(0, "loss", 1.0, split="train")])).dtype == float


def test_spectra_head_series_keeps_the_model_of_the_first_row() -> None:
    rows = [{"model": m, "step": 10, "layer": 0, "head_index": 0, "matrix": "qk", "stat": "stable_rank", "value": v}
            for m, v in (("a", 1.0), ("b", 2.0), ("a", 5.0))]
    assert spectra_head_series(pd.DataFrame(rows), "stable_rank").to_numpy().tolist() == [[3.0]]   # mean of a's: 1, 5


def test_probe_loss_is_the_model_level_probe_rows_by_step() -> None:
    rows = [_row(20, "probe_loss_nats", 2.0), _row(10, "probe_loss_nats", 3.0), _row(10, "probe_loss_nats", 4.0),
            _row(10, "probe_loss_nats", 9.0, layer=0), _row(20, "probe_loss_nats", 8.0, layer=0, head=1),
            _row(30, "probe_loss_nats", 7.0, layer=1), _row(10, "probe_loss_nats", 6.0, split="train"),
            _row(10, "loss", 5.0), _row(0, "eval_loss", 4.5, split="val")]
    assert probe_loss(_frame(rows)).to_dict() == {10: 3.5, 20: 2.0}          # layer 0 and 1 rows are not the model's
    name, loss = checkpoint_loss(_frame(rows))
    assert name == "probe_loss_nats" and loss.to_dict() == {10: 3.5, 20: 2.0}
    name, loss = checkpoint_loss(_frame(rows[3:]))                           # no model-level probe row: val loss
    assert name == "val_loss" and loss.to_dict() == {0: 4.5}
