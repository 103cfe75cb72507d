"""The light tier under bf16 autocast and torch.compile (on CPU, through the real trainer), and on
rank 0 only under DDP.

Tolerances (stated in BENCHMARKS.md): a bf16-autocast run agrees with the float32 eager run of the
same config, seed and batches to 0.01 bits of light entropy per head and step, 0.05 tokens of mean
distance and 0.01 of sink mass, over the first steps of training; a compiled run agrees with eager
float32 to 1e-4 (the light statistics are computed in float32 from the forward's own q and k),
and arming the light tier every step adds no compiled graph after the first steps (dynamo's
counters).
"""
from __future__ import annotations

import pytest
import torch

from attnlife.events import Callback
from attnlife.run import default_callbacks, run_training
from attnlife.store.run_dir import load_run
from attnlife.track.light_tracker import LightTracker
from tests.train.conftest import tiny_config

STEPS = 8
LIGHT = ["track.light_every=1", "track.every=1000", "track.at_checkpoints=false", "model.dropout=0.0",
         "train.eval_interval=1000", "model.n_layer=2", "model.block_size=32"]


def _light(run_dir) -> dict:
    m = load_run(run_dir).metrics()
    m = m[m.metric.str.startswith("light_") & (m.metric != "light_ms")]
    return {(int(r.step), int(r.layer), int(r.head_index), r.metric): float(r.value) for r in m.itertuples()}


def _losses(run_dir) -> dict:
    m = load_run(run_dir).metrics()
    return {int(r.step): float(r.value) for r in m[m.metric == "loss"].itertuples()}


def _train(prepared_dir, out, *extra, callbacks=()):
    config = tiny_config(prepared_dir, out, STEPS, *LIGHT, *extra)
    return run_training(config, default_callbacks(config) + list(callbacks), quiet=True)


TOL = {"light_entropy_bits": 0.01, "light_mean_distance_tokens": 0.05, "light_sink_mass": 0.01}


def test_bf16_autocast_training_with_light_tier_agrees_with_float32(prepared_dir, tmp_path, one_thread):
    _train(prepared_dir, tmp_path / "fp32", "train.dtype=float32")
    _train(prepared_dir, tmp_path / "bf16", "train.dtype=bfloat16")
    fp32, bf16 = _light(tmp_path / "fp32"), _light(tmp_path / "bf16")
    assert fp32.keys() == bf16.keys() and {k[0] for k in fp32} == set(range(STEPS))
    worst = {name: max(abs(fp32[k] - bf16[k]) for k in fp32 if k[3] == name) for name in TOL}
    for name, tol in TOL.items():
        assert worst[name] < tol, (name, worst[name])
    # bf16 really ran: the losses differ from float32 (rounding), but only slightly
    l32, l16 = _losses(tmp_path / "fp32"), _losses(tmp_path / "bf16")
    assert l32[0] != l16[0] and max(abs(l32[s] - l16[s]) for s in l32) < 0.05


class GraphCount(Callback):
    """dynamo's count of compiled graphs after every update."""

    def __init__(self) -> None:
        self.graphs: list[int] = []

    def on_step_end(self, rec) -> None:
        from torch._dynamo.utils import counters

        self.graphs.append(counters["stats"]["unique_graphs"])


def test_compiled_training_with_light_tier_every_step_never_recompiles(prepared_dir, tmp_path, one_thread):
    import torch._dynamo

    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()
    count = GraphCount()
    _train(prepared_dir, tmp_path / "compiled", "train.dtype=float32", "train.compile=true", callbacks=[count])
    assert len(count.graphs) == STEPS and count.graphs[0] > 0
    assert count.graphs[-1] == count.graphs[1], count.graphs        # armed every step: no new graph
    assert sum(counters["recompiles"].values()) == 0 if "recompiles" in counters else True
    _train(prepared_dir, tmp_path / "eager", "train.dtype=float32")
    compiled, eager = _light(tmp_path / "compiled"), _light(tmp_path / "eager")
    assert compiled.keys() == eager.keys()
    assert max(abs(compiled[k] - eager[k]) for k in eager) < 1e-4
    lc, le = _losses(tmp_path / "compiled"), _losses(tmp_path / "eager")
    assert max(abs(lc[s] - le[s]) for s in le) < 1e-4


def test_light_tier_arms_rank_zero_only():
    from attnlife.events import TrainStart
    from attnlife.model.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=8))
    x = torch.randint(0, 11, (2, 8))
    for rank in (1, 0):
        light = LightTracker(every=1, batch_fraction=0.5)
        seen = []
        for module in model.attention_modules():   # what a forward hands the sinks, per rank
            module.register_forward_pre_hook(lambda m, a: seen.append(m.qk_sink is not None))
        light.on_train_start(TrainStart(run_dir=None, config={}, model=model, start_step=0, device="cpu",
                                        rank=rank))
        model(x, x)
        light.collect()
        assert light.events == (1 if rank == 0 else 0) and any(seen) == (rank == 0)
        for module in model.attention_modules():
            module._forward_pre_hooks.clear()


class _Rows:
    """A sink that keeps the light rows it is handed."""

    def __init__(self) -> None:
        self.rows: list = []

    def log_rows(self, step, rows) -> None:
        self.rows += [r for r in rows if r.metric != "light_ms"]

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_bf16_light_entropy_within_0_01_bits_on_sharp_attention(one_thread):
    """Same weights and batch, attention made sharp (entropy ~1 bit, where bf16 rounding of q and
    k matters most): autocast bf16 light statistics within the stated tolerances of float32."""
    from attnlife.model.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=128, vocab_size=65, n_layer=4, n_head=4, n_embd=128, dropout=0.0))
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight[:256] *= 12      # W_Q and W_K rows: peaked attention
    x = torch.randint(0, 65, (8, 128))
    values = {}
    for bf16 in (False, True):
        sink = _Rows()
        light = LightTracker(every=1, batch_fraction=1.0, sinks=[sink])
        with light.step(model, 0), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x, x)
        light.flush()
        values[bf16] = {(r.layer, r.head_index, r.metric): r.value for r in sink.rows}
    entropy = [k for k in values[False] if k[2] == "light_entropy_bits"]
    assert max(values[False][k] for k in entropy) < 1.5          # sharp: far below log2(T) = 7 bits
    for name, tol in TOL.items():
        keys = [k for k in values[False] if k[2] == name]
        worst = max(abs(values[False][k] - values[True][k]) for k in keys)
        assert 0 < worst < tol, (name, worst)


def test_ddp_gloo_two_processes_light_and_full_tier_on_rank_zero_only(prepared_dir, tmp_path):
    """torchrun, 2 processes on gloo: with both tiers on, rank 0 writes every light row and the
    full tier's rows (one writer process), and the run's losses equal those of the same DDP run
    with tracking off, bit for bit: the averaged gradients, so rank 1's forward and backward too,
    are untouched."""
    from tests.support.ddp import train_ddp
    from tests.train.conftest import tiny_overrides

    def ddp(out, *extra):
        train_ddp(out, tiny_overrides(prepared_dir, 6, "model.dropout=0.0", "train.eval_interval=1000", *extra),
                  timeout=240)

    ddp(tmp_path / "on", "track.light_every=1", "track.every=2")
    ddp(tmp_path / "off", "track.enabled=false")
    on = load_run(tmp_path / "on").metrics()
    light = on[on.metric == "light_entropy_bits"]
    assert sorted(set(light.step)) == list(range(6))
    assert len(light) == 6 * 1 * 2            # steps x layers x heads
    assert set(on[on.metric == "entropy_bits"].step) >= {0, 2, 4}
    parts = list((tmp_path / "on" / "metrics").glob("part-*.parquet"))
    assert len({p.name.split("-")[2] for p in parts}) == 1          # one writer process: rank 0
    assert _losses(tmp_path / "on") == _losses(tmp_path / "off")


class _StepRows(_Rows):
    """A sink that keeps the light rows by (step, layer, head, metric)."""

    def __init__(self) -> None:
        self.values: dict = {}

    def log_rows(self, step, rows) -> None:
        self.values.update({(step, r.layer, r.head_index, r.metric): r.value for r in rows if r.metric != "light_ms"})


def test_compiled_twelve_layers_light_tier_every_other_step_one_graph_set_and_eager_rows(one_thread):
    """GPT-2-small depth (12 layers, tiny width), compiled, light tier armed every other step (the
    benchmark's and `track.light_every=2`'s pattern): the armed graphs serve all 12 layers (no
    per-layer recompile past dynamo's limit of 8), disarming runs the unarmed graph (no armed graph
    runs with the sink gone: this crashed before the sink moved behind a bool attribute), nothing
    compiles after the first armed and unarmed steps, and the rows equal eager's to 1e-5."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from attnlife.model.gpt import GPT, GPTConfig

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=17, n_layer=12, n_head=2, n_embd=16, dropout=0.0))
    compiled = torch.compile(model)
    x = torch.randint(0, 17, (4, 32))
    rows, graphs = {}, []
    for run, name in ((compiled, "compiled"), (model, "eager")):
        sink = _StepRows()
        light = LightTracker(every=2, batch_fraction=0.5, sinks=[sink])
        for step in range(6):
            with light.step(model, step):
                run(x, x)[1].backward()
            if name == "compiled":
                graphs.append((counters["stats"]["unique_graphs"], counters["frames"]["total"]))
        light.flush()
        rows[name] = sink.values
    assert graphs[1] == graphs[-1], graphs                 # no graph, no frame after the first two steps
    assert graphs[1][0] < 12                               # not one graph per layer
    assert rows["compiled"].keys() == rows["eager"].keys()
    assert {k[0] for k in rows["eager"]} == {0, 2, 4} and {k[1] for k in rows["eager"]} == set(range(12))
    assert max(abs(rows["compiled"][k] - rows["eager"][k]) for k in rows["eager"]) < 1e-5
