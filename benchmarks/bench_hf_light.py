"""Hugging Face GPT-2 (random config): SDPA forward with the light statistics vs plain SDPA vs eager.

GPT-2 architecture with random weights (no download): `GPT2Model` (no LM head, vocab 1024), 6
layers, 8 heads, 512 dims, context 512; batch 10 x 512 tokens, float32, 1 thread, no_grad
forwards. *sdpa* = `attn_implementation="sdpa"`; *light* = the same model on `attnlife_sdpa` (transformers' SDPA call plus `fused_sequence_means`
on ceil(0.1 * 10) = 1 sequence per layer, rows logged); *eager* = `attn_implementation="eager"`
with `output_attentions=True` (what an explicit tracker needs). Forwards alternate
sdpa / light / eager for `--repeats` rounds; medians and ratios over sdpa are printed.

    python benchmarks/bench_hf_light.py [--repeats 7] [--layers 6] [--T 512]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import transformers as tf  # noqa: E402

from attnlife.track.hf_light import HFLightStats  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--T", type=int, default=512)
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = tf.GPT2Config(vocab_size=1024, n_positions=args.T, n_embd=512, n_layer=args.layers,
                           n_head=8, attn_implementation="sdpa")
    model = tf.GPT2Model(config).eval()            # the transformer; no LM head
    ids = torch.randint(0, 1024, (args.batch, args.T))
    stats = HFLightStats(model, batch_fraction=0.1)
    stats.close()                                   # back to sdpa; switched per forward below

    def forward(name: str) -> tuple[float, float]:
        """(wall s, CPU s) of one forward (the light event's collect and logging included)."""
        model.set_attn_implementation({"sdpa": "sdpa", "light": "attnlife_sdpa", "eager": "eager"}[name])
        if name == "light":
            stats.arm(0)
        t0, c0 = time.perf_counter(), time.process_time()
        model(input_ids=ids, output_attentions=name == "eager")
        if name == "light":
            stats.collect()
        return time.perf_counter() - t0, time.process_time() - c0

    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    times: dict[str, list[tuple[float, float]]] = {"sdpa": [], "light": [], "eager": []}
    light_ms = []
    with torch.no_grad():
        for name in times:
            forward(name)                           # warm-up
        for _ in range(args.repeats):
            for name in times:
                times[name].append(forward(name))
            light_ms.append(stats.last_ms)
    model.set_attn_implementation("sdpa")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    base = [statistics.median(t[i] for t in times["sdpa"]) for i in (0, 1)]
    print(f"\nGPT-2 random config, {args.layers} layers x 8 heads x 512 dims, batch {args.batch} x {args.T}, "
          f"float32, 1 thread, no_grad, median of {args.repeats} alternating rounds; light stats on "
          f"1 sequence per layer; the light statistics' own cost (median light_ms) "
          f"{statistics.median(light_ms):.1f} ms per forward, implied ratio "
          f"{1 + statistics.median(light_ms) / (1e3 * base[0]):.4f}.\n")
    print("| forward | median wall s | all wall s | wall ratio over sdpa | median CPU s | CPU ratio |")
    print("|---|---|---|---|---|---|")
    for name in ("sdpa", "light", "eager"):
        wall = statistics.median(t[0] for t in times[name])
        cpu = statistics.median(t[1] for t in times[name])
        print(f"| {name} | {wall:.3f} | {', '.join(f'{t[0]:.2f}' for t in times[name])} | "
              f"**{wall / base[0]:.3f}** | {cpu:.3f} | **{cpu / base[1]:.3f}** |")


if __name__ == "__main__":
    main()
