"""Run-directory store: atomic writes, part tables, checkpoints, run.json."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlife.errors import CheckpointError, RunDirError
from attnlife.model import GPT, GPTConfig
from attnlife.store.atomic import atomic_dir, atomic_path, clean_temp_files, write_json_atomic
from attnlife.store.checkpoints import (TRAINER_STATE_FILE, latest_checkpoint, load_meta,
                                        load_state_dict, load_trainer_state, save_checkpoint)
from attnlife.store.metrics_table import MetricWriter, read_metrics
from attnlife.store.part_table import METRICS_SCHEMA, PartWriter, read_table, write_part
from attnlife.store.layout import checkpoint_name, list_checkpoints
from attnlife.store.run_dir import load_run, write_run_json


def test_atomic_path_leaves_nothing_on_exception(tmp_path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path) -> None:
    final = tmp_path / "ck"
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(final) as tmp:
            (tmp / "b").write_text("2")
            raise ValueError
    assert sorted(p.name for p in final.iterdir()) == ["a"]
    with atomic_dir(final) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in final.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_clean_temp_files_removes_only_dead_writers_leftovers(tmp_path) -> None:
    import os
    import subprocess
    import sys
    import time

    from attnlife.store.atomic import host_name

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    host = host_name()
    (tmp_path / f".tmp-x~{host}~{dead_pid}~ab12cd34").write_text("")   # killed writer: file
    (tmp_path / f".tmp-d~{host}~{dead_pid}~ab12cd35").mkdir()          # killed writer: folder
    (tmp_path / f".tmp-live~{host}~{os.getpid()}~ab12cd36").write_text("")  # a live writer
    (tmp_path / f".tmp-far~other-host~{dead_pid}~ab12cd37").write_text("")  # another machine
    (tmp_path / ".tmp-old.abcd1234").write_text("")                     # no writer identity
    (tmp_path / ".tmp-users-own-file").write_text("mine")               # not an attnlife name
    long_ago = time.time() - 48 * 3600
    os.utime(tmp_path / ".tmp-old.abcd1234", (long_ago, long_ago))
    os.utime(tmp_path / ".tmp-users-own-file", (long_ago, long_ago))
    write_json_atomic(tmp_path / "keep.json", {"a": 1})
    assert clean_temp_files(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        f".tmp-live~{host}~{os.getpid()}~ab12cd36", f".tmp-far~other-host~{dead_pid}~ab12cd37",
        ".tmp-old.abcd1234", ".tmp-users-own-file", "keep.json"])
    assert json.loads((tmp_path / "keep.json").read_text()) == {"a": 1}


rows = st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["train", "val"]), st.integers(-1, 1),
                          st.sampled_from(["loss", "lr"]), st.floats(-1e6, 1e6)), max_size=30)


@settings(max_examples=25, deadline=None)
@given(batches=st.lists(rows, min_size=1, max_size=4))
def test_part_table_round_trip_newest_wins(tmp_path_factory, batches) -> None:
    d = tmp_path_factory.mktemp("table")
    expected: dict[tuple, float] = {}
    for batch in batches:
        frame = pd.DataFrame(batch, columns=["step", "split", "layer", "metric", "value"])
        frame["head_index"] = -1
        frame["layer_b"] = -1
        frame["stderr"] = float("nan")
        write_part(d, frame, METRICS_SCHEMA)
        for step, split, layer, metric, value in batch:
            expected[(step, split, layer, -1, metric)] = value  # later rows/parts win
    got = read_table(d, METRICS_SCHEMA)
    assert list(got.columns) == METRICS_SCHEMA.names
    assert {tuple(r[:5]): r[5] for r in got[["step", "split", "layer", "head_index", "metric", "value"]]
            .itertuples(index=False)} == expected
    assert len(got) == len(expected)


def test_metric_writer_flush_and_dedupe(tmp_path) -> None:
    with MetricWriter(tmp_path) as w:
        w.log(0, "loss", 3.0)
        w.log(1, "loss", 2.5)
        w.flush()
        w.log(1, "loss", 2.25)  # a resumed run re-logs step 1
        w.log(1, "eval_loss", 2.4, split="val")
    frame = read_metrics(tmp_path)
    assert len(list((tmp_path / "metrics").glob("part-*.parquet"))) == 2
    loss = frame[frame.metric == "loss"].set_index("step")["value"].to_dict()
    assert loss == {0: 3.0, 1: 2.25}
    val = frame[frame.split == "val"]
    assert val[["step", "layer", "head_index", "value"]].values.tolist() == [[1, -1, -1, 2.4]]


def test_part_writer_flushes_by_rows(tmp_path) -> None:
    w = PartWriter(tmp_path, METRICS_SCHEMA, flush_rows=3, flush_seconds=1e9)
    for s in range(7):
        w.add(step=s, split="train", layer=-1, head_index=-1, layer_b=-1, metric="m",
              value=float(s), stderr=float("nan"))
    assert len(list(tmp_path.glob("part-*"))) == 2 and len(w) == 1
    w.close()
    assert read_table(tmp_path, METRICS_SCHEMA)["value"].tolist() == [float(s) for s in range(7)]


def test_checkpoint_round_trip_with_tied_weights(tmp_path) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=13, n_layer=1, n_head=2, n_embd=8))
    path = save_checkpoint(tmp_path, 12, model.state_dict(), {"val_loss": 1.5},
                           trainer_state={"optimizer": {"x": torch.arange(3)}})
    assert path.name == checkpoint_name(12) == "step_0000012"
    from safetensors import safe_open
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in f.keys()  # stored once
    state = load_state_dict(path)
    assert set(state) == set(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v)
    fresh = GPT(model.config)
    fresh.load_state_dict(state)
    assert fresh.lm_head.weight.data_ptr() == fresh.transformer.wte.weight.data_ptr()
    assert load_meta(path) == {"val_loss": 1.5, "step": 12}
    assert torch.equal(load_trainer_state(path)["optimizer"]["x"], torch.arange(3))
    assert latest_checkpoint(tmp_path) == (12, path)


def test_list_checkpoints_ignores_incomplete(tmp_path) -> None:
    save_checkpoint(tmp_path, 2, {"w": torch.ones(2)}, {})
    save_checkpoint(tmp_path, 10, {"w": torch.ones(2)}, {})
    (tmp_path / "checkpoints" / "step_0000020").mkdir()  # no files: incomplete
    (tmp_path / "checkpoints" / "step_abc").mkdir()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 10]
    assert load_trainer_state(tmp_path / "checkpoints" / "step_0000002") is None
    assert not (tmp_path / "checkpoints" / "step_0000002" / TRAINER_STATE_FILE).exists()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_state_dict(tmp_path / "checkpoints" / "step_0000020")


def test_run_json_resume_keeps_start_time(tmp_path) -> None:
    write_run_json(tmp_path, {"seed": 1})
    first = json.loads((tmp_path / "run.json").read_text())
    first["environment"]["start_time"] = "2001-01-01T00:00:00+00:00"
    (tmp_path / "run.json").write_text(json.dumps(first))
    write_run_json(tmp_path, {"seed": 2})
    second = load_run(tmp_path).record
    assert second["seed"] == 2
    assert second["environment"]["start_time"] == "2001-01-01T00:00:00+00:00"
    assert len(second["resumed_at"]) == 1
    write_run_json(tmp_path, {"seed": 3})
    assert len(load_run(tmp_path).record["resumed_at"]) == 2


def test_load_run_missing_directory(tmp_path) -> None:
    with pytest.raises(RunDirError, match="does not exist"):
        load_run(tmp_path / "nope")
    run = load_run(tmp_path)
    assert run.record == {} and run.checkpoints() == [] and run.metrics().empty


def test_views_split_the_long_table_without_markers(tmp_path) -> None:
    with MetricWriter(tmp_path) as w:
        w.log(0, "entropy_bits", 3.0, layer=0, head_index=0, stderr=0.1)
        w.log(0, "entropy_bits", 2.0, layer=0, head_index=1, stderr=0.2)
        w.log(0, "head_jsd_mean", 0.4, layer=0)
        w.log(0, "loss", 4.0)
    run = load_run(tmp_path)
    assert run.per_head("entropy_bits")["value"].tolist() == [3.0, 2.0]
    assert run.per_head("entropy_bits")["stderr"].tolist() == [0.1, 0.2]
    assert run.per_layer()[["layer", "metric", "value"]].values.tolist() == [[0, "head_jsd_mean", 0.4]]
    assert run.model_level()["metric"].tolist() == ["loss"]
    assert run.cross_layer().empty
    assert "head_index" in run.metrics().columns and "head" not in run.metrics().columns


def test_views_default_to_one_split_and_refuse_a_silent_mix(tmp_path) -> None:
    """Per-head/per-layer/cross-layer views take the primary attention split (probe, else train);
    model_level refuses a metric that spans splits; split='all' keeps every split."""
    import pytest

    from attnlife.store.metrics_table import SplitError

    with MetricWriter(tmp_path) as w:
        for split, value in (("train", 3.0), ("probe", 2.5), ("sample", 1.0)):
            w.log(0, "entropy_bits", value, split=split, layer=0, head_index=0)
            w.log(0, "head_jsd_mean", value / 10, split=split, layer=0)
            w.log(0, "xlayer_jsd", value / 100, split=split, layer=0, layer_b=1)
        w.log(0, "light_entropy_bits", 2.9, split="train", layer=0, head_index=0)
        w.log(0, "eval_loss", 4.0, split="train")
        w.log(0, "eval_loss", 4.2, split="val")
        w.log(0, "loss", 4.1, split="train")
    run = load_run(tmp_path)
    heads = run.per_head("entropy_bits")
    assert heads["split"].tolist() == ["probe"] and heads["value"].tolist() == [2.5] and heads.attrs["split"] == "probe"
    # a metric only the tracker logs comes from train; the default never pivots into duplicates
    assert run.per_head("light_entropy_bits")["split"].tolist() == ["train"]
    assert set(run.per_head()["split"]) == {"probe"}
    with pytest.raises(SplitError, match="light_entropy_bits not on split probe .*per-head view"):
        run.per_head(["entropy_bits", "light_entropy_bits"])  # never a silent drop of a named metric
    run.per_head().pivot_table(index="step", columns=["layer", "head_index", "metric"], values="value",
                               aggfunc=lambda v: v.item())  # exactly one row per cell
    assert run.per_layer()["value"].tolist() == [0.25]
    assert run.cross_layer()["value"].tolist() == [0.025]
    assert sorted(run.per_head("entropy_bits", split="all")["split"]) == ["probe", "sample", "train"]
    assert run.per_head("entropy_bits", split="sample")["value"].tolist() == [1.0]
    assert run.model_level("loss")["value"].tolist() == [4.1]
    with pytest.raises(SplitError, match="'eval_loss' span splits train, val; pass split="):
        run.model_level("eval_loss")
    assert run.model_level("eval_loss", split="val")["value"].tolist() == [4.2]
    assert len(run.model_level(split="all")) == 3
