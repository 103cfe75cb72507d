"""The light tier's step batching, asserted on what reaches the fused call: how many calls, with how
many rows, on which backend and dtype, how buffers are reused and capped at BUFFER_ELEMENTS, when
`collect` hands rows back, what listeners receive, and the time each step is charged (a fake clock)."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

import attnlife
from attnlife.config import TrackConfig
from attnlife.events import CheckpointDue, TrainStart
from attnlife.model.gpt import GPT, GPTConfig
from attnlife.store.metrics_table import MetricWriter
from attnlife.track import light_tracker as LT
from attnlife.track.fused_stats import fused_sequence_means
from attnlife.track.light_tracker import LightEvents, LightTracker, LightTrackingError, find_gpt, light_rows

LIGHT = ("light_entropy_bits", "light_mean_distance_tokens", "light_sink_mass", "light_lse_max_nats")


def _model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=8, vocab_size=13, n_layer=2, n_head=2, n_embd=8, dropout=0.0))


def _batch(step: int, B: int = 4, T: int = 8) -> torch.Tensor:
    return torch.randint(0, 13, (B, T), generator=torch.Generator().manual_seed(100 + step))


class Calls:
    """Wraps the module's fused call and buffer class: what each call got, how many buffers were built."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[int, int, str, torch.dtype]] = []    # (rows, width, backend, dtype)
        self.buffers = 0
        real_means, real_buffers = LT.padded_sequence_means, LT._StepBuffers
        calls = self

        def means(qp, kv, K, scale=None, backend="cpu_flash"):
            calls.calls.append((qp.shape[0], qp.shape[-1], backend, qp.dtype))
            return real_means(qp, kv, K, scale, backend)

        class Buffers(real_buffers):
            def __init__(self, *a, **kw) -> None:
                calls.buffers += 1
                super().__init__(*a, **kw)

        monkeypatch.setattr(LT, "padded_sequence_means", means)
        monkeypatch.setattr(LT, "_StepBuffers", Buffers)


def test_steps_share_one_fused_call_and_one_buffer_of_their_shape(monkeypatch) -> None:
    calls = Calls(monkeypatch)
    model = _model()
    seen = []
    light = LightTracker(every=1, batch_fraction=0.5, batch_steps=3)
    light.listeners.append(lambda step, rows, T: seen.append((step, T, len(rows))))
    returned = []
    for step in range(7):
        light.arm(model, step)
        model(_batch(step))
        returned.append(len(light.collect()))
    rows_per_step = 2 * 2 * len(LIGHT) + 1
    assert returned == [0, 0, 3 * rows_per_step, 0, 0, 3 * rows_per_step, 0]   # every 3rd step: 3 steps
    assert calls.calls == [(3 * 2, 4 + 1, "cpu_flash", torch.float32)] * 2    # 3 slots x 2 sequences, W = K + 1
    assert calls.buffers == 1                                                # reused across the batches
    light.flush()
    assert calls.calls[-1] == (2, 5, "cpu_flash", torch.float32)             # the last step alone: its slot only
    assert [s for s, _, _ in seen] == list(range(7)) and {T for _, T, _ in seen} == {8}   # T, not K
    assert {n for _, _, n in seen} == {2 * 2 * len(LIGHT)}                  # listeners: per-head rows only


def test_a_buffer_cap_below_batch_steps_computes_when_the_slots_are_full(monkeypatch) -> None:
    calls = Calls(monkeypatch)
    n, heads, T, K = 2, 4, 8, 4                                              # 2 layers x 2 heads
    monkeypatch.setattr(LT, "BUFFER_ELEMENTS", 2 * n * heads * T * (K + 8) + 7)   # room for 2 steps
    model = _model(1)
    light = LightTracker(every=1, batch_fraction=0.5, batch_steps=8)
    returned = []
    for step in range(5):
        with torch.enable_grad():
            light.arm(model, step)
            model(_batch(step))
            returned.append(len(light.collect()))
    assert [r > 0 for r in returned] == [False, True, False, True, False]    # full after 2, not after 8
    assert [c[0] for c in calls.calls] == [4, 4] and calls.buffers == 1
    light.flush()
    assert [c[0] for c in calls.calls] == [4, 4, 2]
    monkeypatch.setattr(LT, "BUFFER_ELEMENTS", n * heads * T * (K + 8) - 1)  # not even one step fits: 1 slot
    one = LT._StepBuffers((n, ((0, (0, 2)), (1, (2, 2))), T, K, torch.device("cpu"), torch.float32), 8, "cpu_flash")
    assert one.slots == 1 and tuple(one.qp.shape) == (n, heads, T, K + 1)
    monkeypatch.setattr(LT, "BUFFER_ELEMENTS", 3 * n * heads * T * (K + 8))  # exactly 3 steps
    assert LT._StepBuffers(one.shape, 8, "cpu_flash").slots == 3
    assert LT._StepBuffers(one.shape, 2, "cpu_flash").slots == 2             # batch_steps caps it too


def test_a_new_shape_gets_its_own_buffer_and_the_old_one_is_not_reused(monkeypatch) -> None:
    calls = Calls(monkeypatch)
    model = _model(2)
    light = LightTracker(every=1, batch_fraction=1.0, batch_steps=1)
    got = {}
    for step, T in enumerate((8, 5, 5, 8)):
        x = _batch(step, B=2, T=T)
        light.arm(model, step)
        model(x)
        got[step] = ({(r.layer, r.head_index, r.metric): r.value for r in light.collect() if r.metric in LIGHT}, x)
    assert calls.buffers == 3                                                # 8, then 5 (reused once), then 8
    assert [len(rows) for rows, _ in got.values()] == [2 * 2 * len(LIGHT)] * 4
    assert got[1][0] != got[2][0]                                            # each step its own values


def test_backend_and_dtype_reach_the_fused_call(monkeypatch) -> None:
    calls = Calls(monkeypatch)
    for backend, want in (("auto", "cpu_flash"), ("chunked", "chunked"), ("cpu_flash", "cpu_flash")):
        light = LightTracker(every=1, batch_fraction=0.5, backend=backend)
        model = _model(3)
        light.arm(model, 0)
        model(_batch(0))
        light.collect()
        assert calls.calls[-1] == (2, 5, want, torch.float32), backend
    model = _model(4).double()                                               # a float64 model: float64 buffers
    light = LightTracker(every=1, batch_fraction=0.5)
    light.arm(model, 0)
    x = _batch(0)
    model(x)
    rows = {(r.layer, r.head_index, r.metric): r.value for r in light.collect() if r.metric in LIGHT}
    assert calls.calls[-1] == (2, 5, "cpu_flash", torch.float64)
    got = {}
    for module in model.attention_modules():
        module.qk_sink = lambda layer, q, k: got.setdefault(layer, (q.detach().clone(), k.detach().clone()))
    with torch.no_grad():
        model(x[:2])
    for layer, (q, k) in got.items():
        for name, v in fused_sequence_means(q, k).items():
            for h in range(2):
                assert rows[(layer, h, "light_" + name)] == pytest.approx(float(v[:, h].double().mean()), abs=1e-12)


class Clock:
    """A perf_counter that advances one second per call."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now


def test_light_ms_is_the_steps_own_time_plus_its_share_of_the_call(monkeypatch) -> None:
    monkeypatch.setattr(LT, "time", Clock())
    model = _model(5)
    light = LightTracker(every=1, batch_fraction=0.5, batch_steps=2)
    ms = []
    for step in range(2):
        light.arm(model, step)
        model(_batch(step))
        ms += [r.value for r in light.collect() if r.metric == "light_ms"]
    # per step: 1 s per layer copied (2 layers) + 1 s in collect = 3 s; the shared call: 1 s over 2 steps
    assert ms == [3500.0, 3500.0] and light.last_ms == 3500.0


def test_split_own_writer_and_shared_writer_on_disk(tmp_path: Path) -> None:
    model = _model(6)
    own = LightTracker(every=1, batch_fraction=0.5, run_dir=tmp_path / "own", batch_steps=4)
    shared = MetricWriter(tmp_path / "shared")
    own.on_train_start(TrainStart(run_dir=tmp_path / "shared", config={}, model=model, start_step=0, device="cpu",
                                  metric_writer=shared))
    assert own.writer is not shared                                           # its own writer stays its own
    model(_batch(0))
    own.collect(split="val")
    own.on_checkpoint_due(CheckpointDue(step=1, model=model))                # computes and flushes its own writer
    m = attnlife.load_run(tmp_path / "own").metrics()                        # on disk before any close
    assert set(m.split) == {"val"} and set(m.step) == {0} and len(m) == 2 * 2 * len(LIGHT) + 1
    shared.close()
    assert not (tmp_path / "shared" / "metrics").exists() or attnlife.load_run(tmp_path / "shared").metrics().empty
    own.close()
    cfg = LightTracker.from_config(TrackConfig(light_every=2, light_fraction=0.5), run_dir=tmp_path / "cfg")
    cfg.arm(model, 0)
    model(_batch(0))
    cfg.collect()                                                            # batch_steps 8: queued
    cfg.close()
    assert set(attnlife.load_run(tmp_path / "cfg").metrics().step) == {0}


def test_one_sequence_gives_nan_stderr_without_a_warning_and_messages() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = light_rows({0: {"entropy_bits": torch.tensor([[2.5, 1.0]])}})
    assert [r.value for r in rows] == [2.5, 1.0] and all(math.isnan(r.stderr) for r in rows)
    with pytest.raises(LightTrackingError, match=r"from an attnlife GPT, not dict; for Hugging Face models use "
                                                 r"attnlife\.track\.hf_light\.HFLightStats$"):
        find_gpt({})
    base = LightEvents(1, 0.5, None)                                         # reads training forwards only
    with torch.no_grad():
        assert base.reads_now() is False
    assert base.reads_now() is True


def test_each_layer_reads_its_own_head_columns_with_three_layers() -> None:
    """Layers sit side by side along the head axis: layer l's heads start at l x H (three layers, so
    a wrong offset for the third cannot hide behind the second's)."""
    torch.manual_seed(7)
    model = GPT(GPTConfig(block_size=8, vocab_size=13, n_layer=3, n_head=2, n_embd=8, dropout=0.0))
    light = LightTracker(every=1, batch_fraction=1.0)
    x = _batch(0, B=2)
    light.arm(model, 0)
    model(x)
    rows = {(r.layer, r.head_index, r.metric): r.value for r in light.collect() if r.metric in LIGHT}
    got = {}
    for module in model.attention_modules():
        module.qk_sink = lambda layer, q, k: got.setdefault(layer, (q.detach().clone(), k.detach().clone()))
    with torch.no_grad():
        model(x)
    for layer, (q, k) in got.items():
        want = fused_sequence_means(q, k)["entropy_bits"].double().mean(0)
        assert [rows[(layer, h, "light_entropy_bits")] for h in range(2)] == pytest.approx(want.tolist(), abs=1e-6)
    assert rows[(2, 0, "light_entropy_bits")] != pytest.approx(rows[(1, 0, "light_entropy_bits")], abs=1e-6)
