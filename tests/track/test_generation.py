"""distinct-n and repetition closed forms and properties."""
from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from attnlife.track.generation import corpus_quality, distinct_n, ngrams, repetition_n


def test_closed_forms() -> None:
    assert distinct_n([1, 2, 3, 4], 1) == 1.0
    assert distinct_n([7] * 10, 1) == 0.1 and distinct_n([7] * 10, 4) == 1 / 7
    # abab...: 2 unique bigrams out of L - 1
    assert distinct_n([1, 2] * 5, 2) == 2 / 9
    assert repetition_n([1, 2] * 5, 4) == 1 - 2 / 7
    assert math.isnan(distinct_n([1, 2], 3))
    assert ngrams([1, 2, 3], 2) == [(1, 2), (2, 3)]


def test_corpus_means_per_sequence() -> None:
    q = corpus_quality([[1, 2, 3, 4], [5] * 4])
    assert q["distinct_1"] == (1.0 + 0.25) / 2
    assert q["distinct_4"] == 1.0 and q["repetition_4"] == 0.0


@given(st.lists(st.integers(0, 5), min_size=4, max_size=40), st.integers(1, 4))
def test_bounds_and_complement(tokens: list[int], n: int) -> None:
    d = distinct_n(tokens, n)
    assert 1 / (len(tokens) - n + 1) <= d <= 1.0
    assert repetition_n(tokens, n) == 1.0 - d


def test_corpus_quality_names_exactly_its_statistics_and_skips_short_sequences() -> None:
    q = corpus_quality([[1, 2, 3, 4], [1]])          # the 1-token sequence has no 2-, 3- or 4-grams
    assert set(q) == {"distinct_1", "distinct_2", "distinct_3", "distinct_4", "repetition_4"}
    assert q["distinct_1"] == 1.0 and q["distinct_4"] == 1.0 and q["repetition_4"] == 0.0
    q2 = corpus_quality([[3, 3, 3]], max_n=2)
    assert q2 == {"distinct_1": 1 / 3, "distinct_2": 0.5, "repetition_2": 0.5}
    assert ngrams([5], 1) == [(5,)] and ngrams([5], 2) == []


def _checkpoints(root, steps):
    import torch

    from attnlife.model.gpt import GPT, GPTConfig
    from attnlife.store.checkpoints import save_checkpoint

    torch.manual_seed(0)
    cfg = GPTConfig(block_size=12, vocab_size=11, n_layer=1, n_head=2, n_embd=8, dropout=0.0)
    model = GPT(cfg)
    return {s: save_checkpoint(root, s, model.state_dict(), {"model_config": cfg.to_dict()}) for s in steps}


def test_quality_rows_are_the_sample_metrics_then_its_attention_rows() -> None:
    from attnlife.store.metrics_table import MetricRow
    from attnlife.track.generation import CheckpointSample, quality_rows

    head = MetricRow(0, 1, "entropy_bits", 2.5, stderr=0.1)
    rows = quality_rows(CheckpointSample(sequences=[[1, 2, 3, 4], [5, 5, 5, 5]], mean_logprob_nats=-2.25,
                                         tokens_per_s=40.0, attention=[head]))
    assert rows == [MetricRow(-1, -1, "distinct_1", 0.625), MetricRow(-1, -1, "distinct_2", (1 + 1 / 3) / 2),
                    MetricRow(-1, -1, "distinct_3", (1 + 0.5) / 2), MetricRow(-1, -1, "distinct_4", 1.0),
                    MetricRow(-1, -1, "repetition_4", 0.0), MetricRow(-1, -1, "mean_logprob_nats", -2.25),
                    MetricRow(-1, -1, "sample_tokens_per_s", 40.0), head]


def test_sample_quality_callback_samples_due_checkpoints_of_rank_zero_only(tmp_path) -> None:
    import torch

    import attnlife
    from attnlife.events import CheckpointDue, TrainStart
    from attnlife.series.models import load_model
    from attnlife.store.metrics_table import MetricWriter
    from attnlife.track.generation import SampleQuality, SampleSpec, quality_rows, sample_checkpoint

    paths = _checkpoints(tmp_path, [0, 2, 3, 4, 5])
    models = {s: load_model(p).train() for s, p in paths.items()}        # what training holds in memory
    writer = MetricWriter(tmp_path)
    cb = SampleQuality(every=2, max_iters=5, n_samples=2, seed=7)
    cb.on_checkpoint_due(CheckpointDue(step=0, model=models[0]))         # before on_train_start: no writer
    cb.on_train_start(TrainStart(run_dir=tmp_path, config={}, model=None, start_step=0, device="cpu",
                                 metric_writer=writer))
    assert (cb.writer, cb.run_dir, cb.rank) == (writer, tmp_path, 0)
    state = torch.random.get_rng_state()
    for step in (0, 2, 3, 4, 5):                                          # before each is renamed into place
        cb.on_checkpoint_due(CheckpointDue(step=step, model=models[step]))
    cb.on_checkpoint_due(CheckpointDue(step=4, model=models[4], rank=1))  # another rank: nothing
    cb.on_checkpoint_due(CheckpointDue(step=2, model=models[2], resume_only=True))  # a signal's: nothing
    assert torch.equal(torch.random.get_rng_state(), state)               # the training RNG is untouched
    assert all(m.training for m in models.values())                       # sampled a copy, not the model
    writer.close()
    m = attnlife.load_run(tmp_path).metrics()
    assert (m.split == "sample").all() and sorted(m.step.unique()) == [0, 2, 4, 5]   # multiples of 2 and the last
    want = quality_rows(sample_checkpoint(paths[4], SampleSpec(n_samples=2, seed=7)))
    at4 = m[m.step == 4]
    assert len(at4) == len(want)
    for r in want:
        got = at4[(at4.metric == r.metric) & (at4.layer == r.layer) & (at4.head_index == r.head_index)]
        assert len(got) == 1 and (r.metric == "sample_tokens_per_s" or got.value.iloc[0] == r.value), r.metric
    other = SampleQuality(every=2, max_iters=5, n_samples=2, seed=7)
    other.on_train_start(TrainStart(run_dir=tmp_path, config={}, model=None, start_step=0, device="cpu",
                                    metric_writer=MetricWriter(tmp_path / "r1"), rank=1))
    assert other.rank == 1
