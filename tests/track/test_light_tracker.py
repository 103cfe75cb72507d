"""The light tier reads q, k from the training forward: identical losses, explicit-path values, steps."""
from __future__ import annotations

import functools
import math
import time
from pathlib import Path

import pytest
import torch

import attnlife
from attnlife.config import build_config
from attnlife.events import StepRecord, TrainStart
from attnlife.model.gpt import GPT, GPTConfig
from attnlife.store.metrics_table import MetricWriter
from attnlife.track.accumulate import AttentionAccumulator
from attnlife.track.capture import capture_attention
from attnlife.track.fused_stats import fused_row_stats
from attnlife.track.light_tracker import LightTracker, LightTrackingError
from tests.track.loop import shakespeare_ids

LIGHT = ("light_entropy_bits", "light_mean_distance_tokens", "light_sink_mass", "light_lse_max_nats")
ids = functools.lru_cache(maxsize=None)(shakespeare_ids)


@functools.lru_cache(maxsize=None)
def batches(n: int, B: int = 8, T: int = 32, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    data = ids()
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ix = torch.randint(0, len(data) - T - 1, (B,), generator=g)
        out.append((torch.stack([data[i:i + T] for i in ix]), torch.stack([data[i + 1:i + T + 1] for i in ix])))
    return out


def train(steps: int, light: LightTracker | None, dropout: float = 0.1) -> list[float]:
    """A 2-layer GPT with dropout trained with AdamW; light tracking around each forward."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=65, n_layer=2, n_head=2, n_embd=32, dropout=dropout))
    opt = model.configure_optimizer(0.1, 3e-3, (0.9, 0.99))
    losses = []
    for step, (x, y) in enumerate(batches(steps)):
        if light is not None:
            with light.step(model, step):
                _, loss = model(x, y)
        else:
            _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_light_tracking_leaves_losses_bit_identical_and_logs_every_step(tmp_path):
    light = LightTracker(every=1, batch_fraction=0.25, run_dir=tmp_path)
    tracked = train(6, light)
    light.close()
    assert tracked == train(6, None)
    m = attnlife.load_run(tmp_path).metrics()
    rows = m[m.metric.isin(LIGHT)]
    assert sorted(rows.step.unique()) == list(range(6)) and light.events == 6
    assert len(rows) == 6 * 2 * 2 * 4                       # steps x layers x heads x metrics
    assert rows.stderr.notna().all()                       # n = 2 sequences
    ent = rows[rows.metric == "light_entropy_bits"].value
    assert ((ent > 0) & (ent < math.log2(32))).all()
    assert (m[m.metric == "light_ms"].value > 0).all()
    assert all(mod.qk_sink is None for mod in GPT(GPTConfig()).attention_modules())


def test_steps_batched_into_one_call_give_the_same_rows(tmp_path):
    tables = {}
    for batch_steps in (1, 3):
        light = LightTracker(every=1, batch_fraction=0.25, run_dir=tmp_path / str(batch_steps),
                             batch_steps=batch_steps)
        train(7, light, dropout=0.0)
        assert light.events == (7 if batch_steps == 1 else 6)  # 7th step still queued
        light.close()                                          # computes the queued step
        assert light.events == 7
        m = attnlife.load_run(tmp_path / str(batch_steps)).metrics()
        tables[batch_steps] = m[m.metric.isin(LIGHT)].reset_index(drop=True)
    assert len(tables[1]) == 7 * 2 * 2 * 4
    assert tables[1][["step", "layer", "head_index", "metric"]].equals(
        tables[3][["step", "layer", "head_index", "metric"]])
    assert (tables[1].value - tables[3].value).abs().max() < 1e-5
    assert (tables[1].stderr - tables[3].stderr).abs().max() < 1e-5


def test_light_values_equal_the_explicit_path_on_the_same_slice():
    torch.manual_seed(1)
    model = GPT(GPTConfig(block_size=32, vocab_size=65, n_layer=2, n_head=4, n_embd=32))
    x, y = batches(1, B=6)[0]
    light = LightTracker(every=1, batch_fraction=0.5)
    assert light.arm(model, 0)
    model(x, y)[1].backward()                              # a training forward (grad enabled)
    rows = light.collect()
    acc = AttentionAccumulator(("entropy_bits", "mean_distance_tokens", "sink_mass"))
    with torch.no_grad(), capture_attention(model, acc) as cap:
        cap.forward(x[:3])
    want = {(layer, name): (v, se) for (layer, name), (v, se) in acc.head_stats().items()}
    got = {(r.layer, r.head_index, r.metric): (r.value, r.stderr) for r in rows}
    for (layer, name), (v, se) in want.items():
        for h in range(4):
            value, err = got[(layer, h, "light_" + name)]
            assert value == pytest.approx(float(v[h]), abs=2e-5)
            assert err == pytest.approx(float(se[h]), abs=2e-5)


def test_callback_labels_the_step_whose_weights_the_forward_saw_and_skips_eval(tmp_path):
    torch.manual_seed(2)
    model = GPT(GPTConfig(block_size=16, vocab_size=65, n_layer=1, n_head=2, n_embd=16))
    writer = MetricWriter(tmp_path)
    light = LightTracker(every=2, batch_fraction=0.5)
    data = batches(5, B=4, T=16, seed=3)
    light.on_train_start(TrainStart(run_dir=tmp_path, config={}, model=model, start_step=0,
                                    device="cpu", metric_writer=writer))
    expected = {}
    for step, (x, y) in enumerate(data):
        with torch.no_grad():
            model(torch.randint(0, 65, (4, 16)))           # an eval pass: not read
        if step % 2 == 0:                                    # stats of the weights after `step` updates
            q, k = qk_of(model, x[:2])
            expected[step] = fused_row_stats(q, k).sequence_means()["entropy_bits"].mean(0)
        _, loss = model(x, y)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.05 * p.grad
                p.grad = None
        light.on_step_end(StepRecord(step=step, loss=loss.item(), lr=0.05, tokens_per_s=1.0, model=model))
    writer.flush()
    m = attnlife.load_run(tmp_path).metrics()
    ent = m[m.metric == "light_entropy_bits"]
    assert sorted(ent.step.unique()) == [0, 2, 4]
    for step, want in expected.items():
        got = ent[ent.step == step].sort_values("head_index").value.to_numpy()
        assert got == pytest.approx(want.double().numpy(), abs=1e-6)
    light.on_train_end(None)
    assert model.transformer.h[0].attn.qk_sink is None


def qk_of(model: GPT, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k [B, H, T, K] of layer 0 recomputed from the weights (1-layer model, no dropout)."""
    with torch.no_grad():
        h = model.transformer.drop(model.transformer.wte(x) + model.transformer.wpe(torch.arange(x.size(1))))
        attn = model.transformer.h[0].attn
        q, k, _ = attn.c_attn(model.transformer.h[0].ln_1(h)).split(attn.n_embd, dim=2)
        shape = (x.size(0), x.size(1), attn.n_head, attn.n_embd // attn.n_head)
        return q.view(shape).transpose(1, 2), k.view(shape).transpose(1, 2)


def test_config_cli_wiring_and_errors():
    from attnlife.run import default_callbacks

    config = build_config("cpu", overrides=["track.light_every=3", "track.light_fraction=0.5"])
    light = [c for c in default_callbacks(config) if isinstance(c, LightTracker)]
    assert len(light) == 1 and light[0].every == 3 and light[0].batch_fraction == 0.5
    assert build_config("cpu").track.light_every == 1
    off = build_config("cpu", overrides=["track.light_every=0"])
    assert [type(c).__name__ for c in default_callbacks(off)] == ["Tracker"]
    assert default_callbacks(build_config("cpu", overrides=["track.enabled=false"])) == []
    with pytest.raises(LightTrackingError, match="must be >= 1"):
        LightTracker(every=0)
    with pytest.raises(LightTrackingError, match=r"in \(0, 1\]"):
        LightTracker(batch_fraction=0.0)
    with pytest.raises(LightTrackingError, match="hf_light") as err:
        LightTracker().arm(torch.nn.Linear(2, 2), 0)
    assert "\n" not in str(err.value)


def test_train_cli_flag_sets_light_every(tmp_path: Path):
    from typer.testing import CliRunner

    from attnlife.cli import app

    res = CliRunner().invoke(app, ["train", "--track-light-every", "5", "--print-config"])
    assert res.exit_code == 0, res.output
    assert "light_every = 5" in res.output and "light_fraction = 0.1" in res.output


def test_attnlife_train_logs_light_rows_every_step_and_identical_losses(tmp_path, shakespeare_txt):
    from attnlife.data import prepare_dataset
    from attnlife.run import default_callbacks, run_training
    from tests.train.conftest import tiny_config

    prepare_dataset("shakespeare_char", tmp_path / "data", source=shakespeare_txt, quiet=True)
    runs = {}
    for light_every in (1, 0):
        config = tiny_config(tmp_path / "data", tmp_path / f"r{light_every}", 7, "track.every=100",
                             f"track.light_every={light_every}", "track.light_fraction=0.5")
        runs[light_every] = attnlife.load_run(run_training(config, default_callbacks(config), quiet=True)).metrics()
    on, off = runs[1], runs[0]
    assert on[on.metric == "loss"].value.tolist() == off[off.metric == "loss"].value.tolist()
    light = on[on.metric == "light_entropy_bits"]
    assert sorted(light.step.unique()) == list(range(7))      # step s = the weights after s updates
    assert set(zip(light.layer, light.head_index)) == {(0, 0), (0, 1)}
    assert not off.metric.str.startswith("light_").any()


def test_defaults_light_ms_bounded_by_the_wall_time_and_unread_steps_log_nothing(tmp_path):
    light = LightTracker(run_dir=tmp_path)                  # defaults: every step, train split, grad forwards only
    assert (light.every, light.batch_fraction, light.backend, light.training_only) == (1, 0.1, "auto", True)
    assert (light.events, light.last_ms) == (0, 0.0)
    t0 = time.perf_counter()
    train(3, light)
    light.close()
    wall_ms = (time.perf_counter() - t0) * 1e3
    m = attnlife.load_run(tmp_path).metrics()
    ms = m[m.metric == "light_ms"]
    assert ms.step.tolist() == [0, 1, 2] and (ms.layer == -1).all() and (ms.head_index == -1).all()
    assert set(m.split) == {"train"} and len(m[m.metric.isin(LIGHT)]) == 3 * 2 * 2 * 4
    # the tracker's own time: positive, and all of it inside the loop that ran it
    assert (ms.value > 0).all() and ms.value.sum() < wall_ms
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=65, n_layer=2, n_head=2, n_embd=32, dropout=0.0))
    other = LightTracker(run_dir=tmp_path / "other")
    assert other.arm(model, 5) and other.collect() == []    # armed, but no forward ran: nothing queued
    assert other.arm(model, 6)
    with torch.no_grad():
        model(batches(1)[0][0])                             # an eval forward is not read by default
    assert other.collect() == [] and other.compute_pending() == []
    other.close()
    assert other.events == 0 and not list((tmp_path / "other").rglob("*.parquet"))
    with pytest.raises(LightTrackingError, match="'nope'"):    # refused when built, before any step
        LightTracker(backend="nope")
