"""`track.sample_every`: generation quality of checkpoints sampled during training (split `sample`)."""
from __future__ import annotations

import torch

from attnlife.run import default_callbacks, run_training
from attnlife.store.run_dir import load_run
from attnlife.track.generation import SampleSpec, corpus_quality, sample_checkpoint
from tests.train.conftest import tiny_config


def test_sampling_during_training_logs_quality_at_multiples_and_keeps_losses(prepared_dir, tmp_path) -> None:
    torch.set_num_threads(1)
    plain_cfg = tiny_config(prepared_dir, tmp_path / "plain", 8, "track.light_every=0")
    plain = run_training(plain_cfg, default_callbacks(plain_cfg), quiet=True)
    cfg = tiny_config(prepared_dir, tmp_path / "sampled", 8, "track.light_every=0",
                      "track.sample_every=4", "track.sample_count=3")
    names = [type(c).__name__ for c in default_callbacks(cfg)]
    assert names == ["Tracker", "SampleQuality"]
    run = run_training(cfg, default_callbacks(cfg), quiet=True)
    m = load_run(run).metrics()
    sample = m[m.split == "sample"]
    assert sorted(sample.step.unique()) == [0, 4, 8]          # checkpoints 0,1,2,4,8: multiples of 4
    # the logged values are those of sampling the checkpoint again with the same spec (seeded)
    again = sample_checkpoint(load_run(run).paths.checkpoint(4), SampleSpec(n_samples=3, seed=cfg.train.seed))
    want = corpus_quality(again.sequences)
    at4 = sample[(sample.step == 4) & (sample.layer == -1)].set_index("metric")["value"]
    for name, value in want.items():
        assert at4[name] == value, name
    assert at4["mean_logprob_nats"] == again.mean_logprob_nats < 0
    assert at4["sample_tokens_per_s"] > 0
    heads = sample[(sample.step == 4) & (sample.metric == "entropy_bits") & (sample.head_index >= 0)]
    assert len(heads) == cfg.model.n_layer * cfg.model.n_head
    # sampling reads checkpoints with its own generator: the training losses are unchanged
    loss = lambda r: load_run(r).model_level("loss").set_index("step")["value"].tolist()  # noqa: E731
    assert loss(run) == loss(plain)
