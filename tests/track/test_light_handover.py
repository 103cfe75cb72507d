"""The light tier's hand-overs, asserted on disk: queued steps reach the metric table at a checkpoint
(exact resume), at the end and on flush; cadence, rank and micro-batches decide what is read; rows
carry the per-sequence mean and standard error of the fused statistics."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import attnlife
from attnlife.config import TrackConfig
from attnlife.events import CheckpointDue, StepRecord, TrainStart
from attnlife.model.gpt import GPT, GPTConfig
from attnlife.store.metrics_table import MetricRow, MetricWriter
from attnlife.track.fused_stats import fused_sequence_means
from attnlife.track.light_tracker import LightEvents, LightTracker, LightTrackingError, light_rows

LIGHT = ("light_entropy_bits", "light_mean_distance_tokens", "light_sink_mass", "light_lse_max_nats")


class RecordingSink:
    """A sink (the interface TensorBoard and W&B sinks implement) that keeps what it is given."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, list[MetricRow]]] = []
        self.flushed = self.closed = 0

    def log_rows(self, step: int, rows) -> None:
        self.rows.append((step, list(rows)))

    def flush(self) -> None:
        self.flushed += 1

    def close(self) -> None:
        self.closed += 1


def _model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=8, vocab_size=13, n_layer=2, n_head=2, n_embd=8, dropout=0.0))


def _batch(step: int, B: int = 4, T: int = 8) -> torch.Tensor:
    return torch.randint(0, 13, (B, T), generator=torch.Generator().manual_seed(100 + step))


def _qk(model: GPT, x: torch.Tensor) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """q, k of every layer for input x, read with the model's own probe hook."""
    got = {}
    for module in model.attention_modules():
        module.qk_sink = lambda layer, q, k: got.setdefault(layer, (q.detach().clone(), k.detach().clone()))
    with torch.no_grad():
        model(x)
    for module in model.attention_modules():
        module.qk_sink = None
    return got


def _expected(model: GPT, x: torch.Tensor) -> dict[tuple[int, int, str], tuple[float, float]]:
    out = {}
    for layer, (q, k) in _qk(model, x).items():
        means = fused_sequence_means(q, k)
        for name, per_seq in means.items():
            v = per_seq.double()
            n = v.size(0)
            for h in range(v.size(1)):
                se = float(v[:, h].std() / math.sqrt(n)) if n > 1 else math.nan
                out[(layer, h, "light_" + name)] = (float(v[:, h].mean()), se)
    return out


def _rows_on_disk(run: Path):
    m = attnlife.load_run(run).metrics()
    return m[m.metric.isin(LIGHT)]


def test_light_rows_mean_stderr_and_names() -> None:
    per_seq = torch.tensor([[1.0, 4.0], [3.0, 8.0]])                    # [n = 2, H = 2]
    rows = light_rows({1: {"entropy_bits": per_seq, "sink_mass": per_seq * 0},
                       0: {"mean_distance_tokens": per_seq + 1}})
    assert [(r.layer, r.head_index, r.metric) for r in rows] == [
        (0, 0, "light_mean_distance_tokens"), (0, 1, "light_mean_distance_tokens"),
        (1, 0, "light_entropy_bits"), (1, 1, "light_entropy_bits"), (1, 0, "light_sink_mass"), (1, 1, "light_sink_mass")]
    assert [r.value for r in rows[2:4]] == [2.0, 6.0]
    assert [r.stderr for r in rows[2:4]] == pytest.approx([math.sqrt(2.0) / math.sqrt(2), math.sqrt(8.0) / math.sqrt(2)])
    one = light_rows({0: {"entropy_bits": torch.tensor([[2.5, 1.0]])}})
    assert [r.value for r in one] == [2.5, 1.0] and all(math.isnan(r.stderr) for r in one)
    assert light_rows({}) == [] and light_rows({0: {"unknown": per_seq}}) == []


def test_queued_steps_reach_disk_at_the_checkpoint_not_before(tmp_path: Path) -> None:
    model = _model()
    writer = MetricWriter(tmp_path)
    light = LightTracker(every=1, batch_fraction=0.5, batch_steps=8)
    light.on_train_start(TrainStart(run_dir=tmp_path, config={}, model=model, start_step=0, device="cpu",
                                    metric_writer=writer))
    expected = {}
    for step in range(3):
        x = _batch(step)
        model(x)[0].sum().backward()                                     # a training forward: read
        expected[step] = _expected(model, x[:2])                         # ceil(0.5 * 4) = 2 sequences
        light.on_step_end(StepRecord(step=step, loss=1.0, lr=0.1, tokens_per_s=1.0, model=model))
    writer.flush()
    assert _rows_on_disk(tmp_path).empty                                 # queued: 3 < 8 steps
    light.on_checkpoint_due(CheckpointDue(step=3, model=model))          # before checkpoint 3 is renamed
    writer.flush()                                                       # the trainer's flush, then the rename
    rows = _rows_on_disk(tmp_path)                                        # on disk without closing anything
    assert sorted(rows.step.unique()) == [0, 1, 2] and len(rows) == 3 * 2 * 2 * len(LIGHT)
    for r in rows.itertuples():
        want, se = expected[r.step][(r.layer, r.head_index, r.metric)]
        assert r.value == pytest.approx(want, abs=1e-6) and r.stderr == pytest.approx(se, abs=1e-6)
    ms = attnlife.load_run(tmp_path).metrics().query("metric == 'light_ms'")
    assert sorted(ms.step) == [0, 1, 2] and (ms.layer == -1).all()
    light.on_train_end(None)
    assert all(m.qk_sink is None for m in model.attention_modules())


def test_cadence_rank_eval_and_micro_batches(tmp_path: Path) -> None:
    model = _model(1)
    light = LightTracker(every=3, batch_fraction=0.3, run_dir=tmp_path)
    assert not light.arm(model, 4) and light.arm(model, 6)
    x = _batch(6, B=7)
    with torch.no_grad():
        model(_batch(99, B=7))                                           # eval forward: not read
    model(x)                                                             # first micro-batch: read
    model(_batch(7, B=7))                                                # second micro-batch: ignored
    rows = light.collect()
    want = _expected(model, x[:3])                                       # ceil(0.3 * 7) = 3 sequences
    got = {(r.layer, r.head_index, r.metric): (r.value, r.stderr) for r in rows if r.metric in LIGHT}
    assert got.keys() == want.keys()
    for key, (v, se) in want.items():
        assert got[key][0] == pytest.approx(v, abs=1e-6) and got[key][1] == pytest.approx(se, abs=1e-6)
    assert rows[-1].metric == "light_ms" and rows[-1].value > 0 and light.events == 1 and light.last_ms == rows[-1].value
    assert light.collect() == []                                         # nothing armed: nothing queued
    light.rank = 1
    assert not light.arm(model, 9)                                       # only rank 0 reads
    eval_too = LightTracker(every=1, training_only=False)
    eval_too.arm(model, 0)
    with torch.no_grad():
        model(x)
    assert len(eval_too.collect()) == 2 * 2 * len(LIGHT) + 1
    tiny = LightTracker(every=1, batch_fraction=0.01)
    tiny.arm(model, 0)
    model(x)
    assert all(math.isnan(r.stderr) for r in tiny.collect() if r.metric in LIGHT)   # at least one sequence
    light.close()


def test_steps_of_different_lengths_are_computed_separately_and_sinks_get_every_row(tmp_path: Path) -> None:
    model = _model(2)
    sink = RecordingSink()
    light = LightTracker(every=1, batch_fraction=1.0, run_dir=tmp_path, sinks=[sink], batch_steps=3)
    inputs = {0: _batch(0, B=2, T=8), 1: _batch(1, B=2, T=5), 2: _batch(2, B=2, T=8)}
    for step, x in inputs.items():
        with light.step(model, step):
            model(x)
    assert [s for s, _ in sink.rows] == [0, 1, 2]
    for step, x in inputs.items():
        want = _expected(model, x)
        got = {(r.layer, r.head_index, r.metric): r.value for r in sink.rows[step][1] if r.metric in LIGHT}
        assert got == pytest.approx({k: v for k, (v, _) in want.items()}, abs=1e-6)
    light.close()
    assert sink.flushed == 1 and sink.closed == 1
    assert sorted(_rows_on_disk(tmp_path).step.unique()) == [0, 1, 2]


def test_flush_and_end_compute_what_is_queued(tmp_path: Path) -> None:
    model = _model(3)
    light = LightTracker(every=1, batch_fraction=0.5, run_dir=tmp_path, batch_steps=5)
    for step in range(2):
        with light.step(model, step):
            model(_batch(step))
    assert light.events == 0
    light.flush()
    assert light.events == 2 and sorted(_rows_on_disk(tmp_path).step.unique()) == [0, 1]
    with light.step(model, 2):
        model(_batch(2))
    light.on_train_end(None)                                             # its own writer: closed, rows written
    assert sorted(_rows_on_disk(tmp_path).step.unique()) == [0, 1, 2]


def test_settings_are_checked_and_read_from_the_config() -> None:
    with pytest.raises(LightTrackingError, match=r"^light tracking every=0 must be >= 1 \(use --no-track"):
        LightEvents(0, 0.5, None)
    for bad in (0.0, -0.1, 1.0001):
        with pytest.raises(LightTrackingError, match=rf"^light batch_fraction={bad} must be in \(0, 1\]$"):
            LightEvents(1, bad, None)
    assert LightEvents(1, 1.0, None).batch_fraction == 1.0
    with pytest.raises(LightTrackingError, match=r"^batch_steps=0 must be >= 1$"):
        LightTracker(batch_steps=0)
    light = LightTracker.from_config(TrackConfig(light_every=4, light_fraction=0.25))
    assert (light.every, light.batch_fraction, light.batch_steps, light.writer) == (4, 0.25, 8, None)
