"""Tracking at the sizes people train: GPT-2-small shape (12 x 12 x 768, T = 1024) and a Llama-style
grouped-query model, light tier every step and full tier at the paper cadence, on this CPU.

Models (random weights, real architectures, AdamW training steps on random token ids):
  gpt      attnlife's GPT (nanoGPT names), 12 layers x 12 heads x 768, vocab 50304, T = 1024
  hf-gpt2  transformers GPT2LMHeadModel, same shape, light tier through the attention interface
           (`attnlife_sdpa`, `HFLightStats`)
  llama    transformers LlamaForCausalLM from a config: 12 layers, 12 query heads sharing 4
           key/value heads (GQA), hidden 768, MLP 2048, vocab 32000, T = 1024, `HFLightStats`
Modes: fp32 eager, bf16 (torch.autocast on CPU), compile (torch.compile of the model, fp32).

One process per (model, mode, batch): a warm-up step, then `--repeats` pairs of an untracked step
and a step with the light tier armed (batch_fraction 0.1: n = ceil(0.1 B) sequences), alternating,
then one full-tier event (`Tracker.track`: explicit capture forward + every metric on
min(B, max(8, ceil(0.1 B))) sequences). Printed and appended as one JSON line to `--out`:
step times (wall and CPU), the light event's own time (`light_ms`), the measured ratio (median on /
median off) and the implied ratios 1 + light_ms / step_ms (every step) and 1 + full_ms x events /
(steps x step_ms) at the paper cadence (every 500 of 5000 iterations plus the 10 log-spaced
checkpoint steps below 500: 20 events). Wall ratios on this shared 2-core machine are noise; the
implied ratio is the figure. `--report FILE` prints the markdown table of a results file.

    python benchmarks/bench_scale_tracking.py --model gpt --mode fp32 --batch 2 --out runs/scale.jsonl
    python benchmarks/bench_scale_tracking.py --report runs/scale.jsonl
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

T_DEFAULT = 1024
PAPER_EVENTS, PAPER_STEPS = 20, 5000


def build(model: str, T: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if model == "gpt":
        from attnlife.model.gpt import GPT, GPTConfig

        return GPT(GPTConfig(block_size=T, vocab_size=50304, n_layer=12, n_head=12, n_embd=768, dropout=0.0))
    import transformers as tf

    if model == "hf-gpt2":
        cfg = tf.GPT2Config(vocab_size=50304, n_positions=T, n_embd=768, n_layer=12, n_head=12,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        return tf.GPT2LMHeadModel(cfg)
    cfg = tf.LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=T)
    return tf.LlamaForCausalLM(cfg)


class Runner:
    """One training step of `model` (compiled or not, autocast or not), light tier optional."""

    def __init__(self, name: str, mode: str, batch: int, T: int, device: str = "cpu") -> None:
        self.name, self.mode, self.device = name, mode, torch.device(device)
        self.model = build(name, T).to(self.device).train()
        self.vocab = 50304 if name != "llama" else 32000
        g = torch.Generator().manual_seed(1)
        self.x = torch.randint(0, self.vocab, (batch, T), generator=g).to(self.device)
        self.y = torch.randint(0, self.vocab, (batch, T), generator=g).to(self.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-5)
        if name == "gpt":
            from attnlife.track.light_tracker import LightTracker

            self.light = LightTracker(every=1, batch_fraction=0.1, batch_steps=8)
        else:
            from attnlife.track.hf_light import HFLightStats

            self.light = HFLightStats(self.model, batch_fraction=0.1, training_only=True)
        self.run = torch.compile(self.model) if mode == "compile" else self.model

    def loss(self) -> torch.Tensor:
        if self.name == "gpt":
            return self.run(self.x, self.y)[1]
        return self.run(input_ids=self.x, labels=self.x).loss

    def step(self, step: int, light: bool) -> tuple[float, float, float]:
        """(wall s, CPU s, light_ms or 0) of one update."""
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.mode == "bf16"
                    else contextlib.nullcontext())
        self.sync()
        t0, c0 = time.perf_counter(), time.process_time()
        if light:
            armed = self.light.step(self.model, step) if self.name == "gpt" else self.light.step(step)
        else:
            armed = contextlib.nullcontext()
        with armed, autocast:
            loss = self.loss()
        if light and self.name == "gpt":
            self.light.compute_pending()          # inside the timing
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sync()
        return time.perf_counter() - t0, time.process_time() - c0, (self.light.last_ms if light else 0.0)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def full_event_ms(self) -> tuple[float, int]:
        from attnlife.track.tracker import Tracker

        tr = Tracker(every=1, batch_fraction=0.1)
        tr.track(0, self.model, self.x)
        return tr.last_ms, min(self.x.size(0), max(tr.min_sequences, math.ceil(0.1 * self.x.size(0))))


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load")[-1]


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    r = Runner(args.model, args.mode, args.batch, args.T, args.device)
    before = load()
    from torch._dynamo.utils import counters

    def dynamo() -> tuple[int, int]:
        """(graphs compiled, frames dynamo converted) so far: a recompile raises both."""
        return counters["stats"]["unique_graphs"], counters["frames"]["total"]

    t_warm = r.step(0, light=True)[0]    # compiles both graphs (armed, and below unarmed) under compile
    progress(f"warm-up step (light armed) {t_warm:.1f} s, graphs/frames {dynamo()}")
    t_warm_off = r.step(1, light=False)[0]
    progress(f"warm-up step (unarmed) {t_warm_off:.1f} s, graphs/frames {dynamo()}")
    graphs_warm, frames_warm = dynamo()   # both graphs (armed, unarmed) compiled
    off, on, light_ms, per_step = [], [], [], []
    for i in range(args.repeats):
        off.append(r.step(2 + 2 * i, light=False))
        per_step.append(dynamo())
        w, c, ms = r.step(3 + 2 * i, light=True)
        per_step.append(dynamo())
        progress(f"pair {i}: off {off[-1][0]:.1f} s, on {w:.1f} s, light {ms:.0f} ms, graphs/frames {dynamo()}")
        on.append((w, c))
        light_ms.append(ms)
    full_ms, full_n = r.full_event_ms() if args.full else (float("nan"), 0)
    step_ms = 1e3 * statistics.median(o[0] for o in off)
    cpu_ms = 1e3 * statistics.median(o[1] for o in off)
    event = statistics.median(light_ms)
    result = {
        "model": args.model, "mode": args.mode, "batch": args.batch, "T": args.T, "threads": args.threads, "device": args.device,
        "light_sequences": math.ceil(0.1 * args.batch), "warmup_s": t_warm, "warmup_off_s": t_warm_off,
        "repeats": args.repeats,
        "off_s": [o[0] for o in off], "on_s": [o[0] for o in on], "off_cpu_s": [o[1] for o in off],
        "on_cpu_s": [o[1] for o in on], "light_ms": light_ms, "step_ms": step_ms, "step_cpu_ms": cpu_ms,
        "measured_ratio": statistics.median(o[0] for o in on) / statistics.median(o[0] for o in off),
        "measured_cpu_ratio": statistics.median(o[1] for o in on) / statistics.median(o[1] for o in off),
        "implied_light_every_step": 1 + event / step_ms,
        "full_event_ms": full_ms, "full_sequences": full_n,
        "implied_full_paper": 1 + full_ms * PAPER_EVENTS / (PAPER_STEPS * step_ms) if args.full else None,
        "load": [before, load()], "torch": torch.__version__,
    }
    if args.mode == "compile":
        result["unique_graphs"] = counters["stats"]["unique_graphs"]
        result["graphs_after_warmup"] = counters["stats"]["unique_graphs"] - graphs_warm
        result["frames_after_warmup"] = counters["frames"]["total"] - frames_warm
        result["graphs_frames_per_timed_step"] = per_step
    if args.mode == "bf16" and args.model == "gpt":
        result["bf16_max_abs_diff"] = bf16_agreement(r.model, r.x[:1], device_type=r.device.type)
    return result


class _Rows:
    """A light-tier sink that keeps the per-head rows it is handed."""

    def __init__(self) -> None:
        self.values: dict = {}

    def log_rows(self, step: int, rows: list) -> None:
        self.values.update({(r.layer, r.head_index, r.metric): r.value for r in rows if r.metric != "light_ms"})

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def bf16_agreement(model: torch.nn.Module, x: torch.Tensor, sharpen: float = 8.0, device_type: str = "cpu") -> dict:
    """Largest |bf16 autocast - float32| over every head of each light statistic: one forward of the
    same weights on the same sequence (GPT-2-small shape). At initialisation every head is almost
    uniform and any rounding washes out, so a copy whose W_Q, W_K are scaled by `sharpen` (peaked,
    trained-like heads) is measured; its float32 mean entropy is reported beside the differences."""
    import copy

    from attnlife.track.light_tracker import LightTracker

    sharp = copy.deepcopy(model)
    with torch.no_grad():
        for block in sharp.transformer.h:
            block.attn.c_attn.weight[: 2 * block.attn.n_embd] *= sharpen
    values = []
    for bf16 in (False, True):
        sink = _Rows()
        light = LightTracker(every=1, batch_fraction=1.0, sinks=[sink])
        with light.step(sharp, 0), torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            sharp(x, x)
        light.flush()
        values.append(sink.values)
    metrics = sorted({k[2] for k in values[0]})
    worst = {m: max(abs(values[0][k] - values[1][k]) for k in values[0] if k[2] == m) for m in metrics}
    entropy = {k: v for k, v in values[0].items() if k[2] == "light_entropy_bits"}
    above = [abs(v - values[1][k]) for k, v in entropy.items() if v >= 1.0]   # heads of >= 1 bit
    return {**worst, "fp32_mean_entropy_bits": sum(entropy.values()) / len(entropy),
            "fp32_min_entropy_bits": min(entropy.values()), "heads": len(entropy),
            "heads_at_least_1_bit": len(above), "entropy_bits_at_least_1_bit": max(above, default=math.nan),
            "sharpen": sharpen}


def agreement_sweep(args: argparse.Namespace) -> dict:
    """`bf16_agreement` of our GPT at the benchmark shape for each W_Q, W_K factor in --sharpen."""
    torch.set_num_threads(args.threads)
    model = build("gpt", args.T)
    x = torch.randint(0, 50304, (1, args.T), generator=torch.Generator().manual_seed(1))
    out = {"model": "gpt", "mode": "bf16-agreement", "T": args.T, "threads": args.threads, "load": [load()],
           "agreement": [bf16_agreement(model, x, float(f)) for f in args.sharpen.split(",")]}
    out["load"].append(load())
    return out


def report(path: str) -> None:
    lines = [json.loads(line) for line in open(path) if line.strip()]
    rows = [r for r in lines if "step_ms" in r]
    print("| model | mode | batch (light seqs) | step s (off, median) | light event ms | implied, light every step "
          "| measured wall / CPU ratio | full event s (seqs) | implied, full at paper cadence |")
    print("|---|---|---|---:|---:|---:|---|---:|---:|")
    for r in rows:
        full = (f"{r['full_event_ms'] / 1e3:.1f} ({r['full_sequences']})" if r.get("implied_full_paper") else "-")
        paper = f"{r['implied_full_paper']:.5f}" if r.get("implied_full_paper") else "-"
        print(f"| {r['model']} | {r['mode']}{'' if r.get('device', 'cpu') == 'cpu' else ' ' + r['device']} | {r['batch']} ({r['light_sequences']}) | {r['step_ms'] / 1e3:.2f} | "
              f"{statistics.median(r['light_ms']):.0f} | **{r['implied_light_every_step']:.4f}** | "
              f"{r['measured_ratio']:.3f} / {r['measured_cpu_ratio']:.3f} | {full} | {paper} |")
    for r in rows:
        if "graphs_after_warmup" in r:
            print(f"\n{r['model']} compile: {r['unique_graphs']} graphs in all, {r['graphs_after_warmup']} "
                  f"compiled after the warm-up steps ({2 * r['repeats'] if 'repeats' in r else len(r['off_s']) * 2} "
                  "timed steps, light tier armed every other step)")
        if "bf16_max_abs_diff" in r:
            d = r["bf16_max_abs_diff"]
            print(f"\n{r['model']} bf16 vs float32, same weights (W_Q, W_K x{d['sharpen']:g}, float32 mean entropy "
                  f"{d['fp32_mean_entropy_bits']:.2f} bits), worst head: entropy {d['light_entropy_bits']:.4f} bits, "
                  f"mean distance {d['light_mean_distance_tokens']:.4f} tokens, sink mass {d['light_sink_mass']:.5f}")
    for r in lines:
        if "agreement" in r:
            print("\n| W_Q, W_K x | float32 entropy, mean / min head (bits) | worst head: entropy bits | "
                  "worst head of >= 1 bit (heads) | mean distance tokens | sink mass |")
            print("|---:|---|---:|---|---:|---:|")
            for d in r["agreement"]:
                print(f"| {d['sharpen']:g} | {d['fp32_mean_entropy_bits']:.2f} / {d['fp32_min_entropy_bits']:.2f} | "
                      f"{d['light_entropy_bits']:.4f} | {d['entropy_bits_at_least_1_bit']:.4f} "
                      f"({d['heads_at_least_1_bit']} of {d['heads']}) | {d['light_mean_distance_tokens']:.4f} | "
                      f"{d['light_sink_mass']:.5f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["gpt", "hf-gpt2", "llama"], default="gpt")
    parser.add_argument("--mode", choices=["fp32", "bf16", "compile"], default="fp32")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--T", type=int, default=T_DEFAULT)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (the light event's time then includes a sync)")
    parser.add_argument("--no-full", dest="full", action="store_false")
    parser.add_argument("--out", default=None)
    parser.add_argument("--report", default=None)
    parser.add_argument("--sharpen", default=None,
                        help="only the bf16 agreement of our GPT, for these W_Q, W_K factors (e.g. 1,2,4,8)")
    args = parser.parse_args()
    if args.report:
        report(args.report)
        return
    result = agreement_sweep(args) if args.sharpen else measure(args)
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
