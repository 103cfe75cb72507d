"""Safe attachment to an own loop: context manager, GC warning, any scalar, run.json, refusals."""
from __future__ import annotations

import gc
import json
import warnings

import pytest
import torch
from typer.testing import CliRunner

import attnlife
from attnlife.errors import RunDirError
from attnlife.model.gpt import GPT, GPTConfig
from attnlife.store.checkpoints import save_checkpoint
from attnlife.track.tracker import Tracker

CFG = dict(block_size=8, vocab_size=10, n_layer=2, n_head=2, n_embd=8)


def _gpt(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(**dict(CFG, **kw)))


def test_with_block_flushes_and_log_takes_any_scalar(tmp_path):
    model, x = _gpt(), torch.randint(0, 10, (4, 8), generator=torch.Generator().manual_seed(0))
    with Tracker(every=2, run_dir=tmp_path) as tracker:
        for step in range(3):
            tracker.maybe_track(step, model, x)
            tracker.log(step, "loss", 2.5 - step)
            tracker.log(step, "grad_norm", 0.5, split="train")
    m = attnlife.load_run(tmp_path).metrics()
    loss = attnlife.load_run(tmp_path).model_level(metric="loss")
    assert list(loss["step"]) == [0, 1, 2] and list(loss["value"]) == [2.5, 1.5, 0.5]
    assert set(m[m.metric == "entropy_bits"]["step"]) == {0, 1, 2}
    assert (m[m.metric == "grad_norm"]["value"] == 0.5).all()


def test_garbage_collected_tracker_with_unwritten_rows_warns(tmp_path):
    tracker = Tracker(every=1, run_dir=tmp_path)
    tracker.track(0, _gpt(), torch.zeros(2, 8, dtype=torch.long))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del tracker
        gc.collect()
    msgs = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert len(msgs) == 1 and "unwritten metric rows" in msgs[0] and "tracker.close()" in msgs[0]
    quiet = Tracker(every=1, run_dir=tmp_path / "q")
    quiet.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del quiet
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_own_loop_run_json_makes_the_directory_a_run_for_spectra(tmp_path):
    model = _gpt()
    with Tracker(every=1, run_dir=tmp_path) as tracker:
        tracker.track(0, model, torch.zeros(2, 8, dtype=torch.long))
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["config"]["model"] == model.config.to_dict() and record["tracker_run"]["every"] == 1
    save_checkpoint(tmp_path, 0, model.state_dict(), {"step": 0})
    from attnlife.cli import app

    r = CliRunner().invoke(app, ["spectra", str(tmp_path), "--quiet", "--no-elements"])
    assert r.exit_code == 0, r.output
    assert set(attnlife.load_run(tmp_path).spectra()["step"]) == {0}


def test_hf_model_config_is_recorded(tmp_path):
    import transformers as tf

    model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=10, n_positions=8, n_embd=8, n_layer=2, n_head=2))
    with Tracker(every=1, run_dir=tmp_path) as tracker:
        tracker.track(0, model, torch.zeros(2, 8, dtype=torch.long))
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["config"]["model"] == {"n_layer": 2, "n_head": 2, "n_embd": 8, "vocab_size": 10, "block_size": 8}
    assert record["hf_config"]["model_type"] == "gpt2"


def test_second_different_run_into_the_directory_is_refused(tmp_path):
    x = torch.zeros(2, 8, dtype=torch.long)
    with Tracker(every=1, run_dir=tmp_path) as tracker:
        tracker.track(0, _gpt(), x)
    with Tracker(every=1, run_dir=tmp_path) as again:  # same model config: a resume, accepted
        again.track(1, _gpt(), x)
    other = Tracker(every=1, run_dir=tmp_path)
    with pytest.raises(RunDirError, match="already holds a tracker run of another model") as err:
        other.track(2, _gpt(n_embd=16), torch.zeros(2, 8, dtype=torch.long))
    assert "\n" not in str(err.value)
    other.close()
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "run.json").write_text(json.dumps({"config": {"model": CFG}}))
    with pytest.raises(RunDirError, match="not written by a Tracker"):
        Tracker(every=1, run_dir=trained).log(0, "loss", 1.0)
    loose = tmp_path / "loose"
    from attnlife.store.metrics_table import MetricWriter

    w = MetricWriter(loose)
    w.log(0, "loss", 1.0)
    w.close()
    with pytest.raises(RunDirError, match="metric rows but no run.json"):
        Tracker(every=1, run_dir=loose).log(0, "loss", 1.0)
