"""The protocol as data: grid, configs per run and scale, results arithmetic (fast, no training)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from attnlife.errors import ConfigError
from attnlife.reproduce.compare import config_differences, data_difference
from attnlife.reproduce.protocol import SCALES, Cell, cell_config, grid, parse_runs
from attnlife.reproduce.results import mean_stderr, overhead_table, run_results


def test_protocol_grid_is_twenty_cells():
    cells = grid((0, 1, 2, 3), ("shakespeare_char", "enwik8", "text8"))
    assert len(cells) == 20
    assert sum(c.dataset == "shakespeare_char" for c in cells) == 12
    assert {c.seed for c in cells if c.dataset != "shakespeare_char"} == {0}
    assert Cell(2, "enwik8", 0).rel_dir.as_posix() == "runs/run2/enwik8/seed0"
    assert len(grid((0, 3), ("text8",), seeds=4)) == 8


def test_parse_runs_rejects_unknown():
    assert parse_runs("3,0, 1") == (0, 1, 3)
    for bad in ("4", "", "a,b"):
        with pytest.raises(ConfigError):
            parse_runs(bad)


def test_paper_scale_is_the_published_configuration(tmp_path):
    sh = cell_config(Cell(0, "shakespeare_char", 0), SCALES["paper"], tmp_path, tmp_path)
    m, t, k = sh.model, sh.train, sh.track
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout) == (6, 6, 384, 256, 0.2)
    assert (t.max_iters, t.lr_decay_iters, t.batch_size, t.learning_rate) == (5000, 5000, 64, 1e-3)
    assert (k.every, k.batch_fraction, k.enabled) == (500, 0.1, False)
    for name in ("enwik8", "text8"):
        big = cell_config(Cell(1, name, 0), SCALES["paper"], tmp_path, tmp_path)
        assert (big.train.batch_size, big.train.learning_rate, big.train.max_iters) == (32, 5e-4, 5000)
        assert big.model.n_embd == 384 and big.track.enabled
    assert config_differences("shakespeare_char", sh.to_dict()) == []


def test_runs_differ_only_in_tracking_switch(tmp_path):
    scale = SCALES["cpu"]
    dicts = [cell_config(Cell(r, "shakespeare_char", 1), scale, tmp_path, tmp_path).to_dict()
             for r in range(4)]
    for d in dicts:
        d.pop("out_dir")
    assert dicts[0]["track"]["enabled"] is False
    assert all(d["track"]["enabled"] for d in dicts[1:])
    assert dicts[1] == dicts[2] == dicts[3]
    dicts[0]["track"]["enabled"] = True
    assert dicts[0] == dicts[1]
    cfg = dicts[1]
    assert cfg["train"]["max_iters"] == scale.max_iters and cfg["train"]["seed"] == 1338
    assert cfg["track"]["every"] == scale.max_iters // 10 and cfg["track"]["batch_fraction"] == 0.1


def test_compare_names_differences():
    cpu = cell_config(Cell(0, "enwik8", 0), SCALES["cpu"], "o", "d").to_dict()
    diffs = config_differences("enwik8", cpu)
    assert "n_layer 4 vs 6" in diffs and "batch_size 12 vs 32" in diffs
    assert "max_iters 600 vs 5000" in diffs
    assert data_difference("enwik8", {"prefix": True, "train_tokens": 1000}) == \
        "prefix: 1,000 train tokens vs 90,000,000"
    assert data_difference("shakespeare_char", {"prefix": False}) == ""


def test_mean_stderr_closed_form():
    mean, se = mean_stderr([1.0, 2.0, 3.0])
    assert mean == 2.0 and se == pytest.approx(1.0 / math.sqrt(3.0), rel=1e-12)
    mean, se = mean_stderr([5.0])
    assert mean == 5.0 and math.isnan(se)


def _table():
    rows = []
    for seed, (t0, t1, loss) in enumerate([(10.0, 11.0, 1.5), (20.0, 21.0, 1.7)]):
        for run, t in ((0, t0), (1, t1)):
            rows.append(dict(run=run, dataset="shakespeare_char", seed=seed, final_train_loss=loss,
                             best_val_loss=loss + 0.1, best_val_step=100, total_train_time=t,
                             avg_inference_tokens_per_second=400.0 + seed))
    return pd.DataFrame(rows)


def test_run_results_layout_and_overhead():
    table = _table()
    res = run_results(table, 1, {"shakespeare_char": {"prefix": False}}, {})
    entry = res["shakespeare_char"]
    assert entry["n_seeds"] == 2
    assert entry["means"]["best_val_loss_mean"] == pytest.approx(1.7)
    assert entry["stderrs"]["best_val_loss_stderr"] == pytest.approx(0.1)  # |a-b|/2
    assert entry["final_info_dict"]["total_train_time"] == [11.0, 21.0]
    assert set(entry["means"]) == {"final_train_loss_mean", "best_val_loss_mean",
                                   "total_train_time_mean", "avg_inference_tokens_per_second_mean"}
    over = overhead_table(table)
    assert len(over) == 1 and over.run.iloc[0] == 1
    assert over.overhead_pct.iloc[0] == pytest.approx(100 * (16.0 / 15.0 - 1))
    assert over.overhead_pct_paired.iloc[0] == pytest.approx(np.mean([10.0, 5.0]))
    assert over.overhead_pct_paired_stderr.iloc[0] == pytest.approx(2.5)


def test_rank_shares_partition_the_grid():
    from attnlife.series.workers import rank_share

    cells = grid((0, 1, 2, 3), ("shakespeare_char", "enwik8", "text8"))
    shares = [rank_share(cells, r, 3) for r in range(3)]
    assert sorted(c for s in shares for c in s) == sorted(cells)
    assert [len(s) for s in shares] == [7, 7, 6]
    assert {c.run for c in shares[0]} == {0, 1, 2, 3}            # runs mix within a share
    with pytest.raises(ConfigError):
        rank_share(cells, 3, 3)
