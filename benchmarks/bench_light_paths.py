"""The light event at GPT-2-small shape, our GPT's path against the Hugging Face path, same process.

Both read the q, k of 1 of 2 sequences from 12 layers (12 heads, T = 1024, K = 64; views of a
c_attn output, as the forward hands them) and compute every head's entropy, mean distance, sink
mass and LSE bound:
  ours  `LightTracker`'s sink: each layer's q, k copied once into the padded buffers, one fused
        attention call over all 144 heads, then the rows (what `light_ms` times in training)
  hf    `HFLightStats`' path: `fused_sequence_means` per layer (12 calls of 12 heads)
Interleaved, `--repeats` events each, wall ms medians; `--profile` adds one torch.profiler table
per path (self CPU time by op). Under the heavy lock, `--threads` torch threads.

    python benchmarks/bench_light_paths.py [--repeats 5] [--threads 2] [--profile]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from attnlife.model.gpt import GPT, GPTConfig  # noqa: E402
from attnlife.track.fused_stats import fused_sequence_means  # noqa: E402
from attnlife.track.light_tracker import LightTracker  # noqa: E402

L, H, K, B = 12, 12, 64, 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers = []
    for _ in range(L):   # q, k as the forward hands them: strided views of c_attn's output
        q, k, _ = torch.randn(B, args.T, 3 * H * K).split(H * K, dim=2)
        layers.append((q.view(B, args.T, H, K).transpose(1, 2), k.view(B, args.T, H, K).transpose(1, 2)))
    light = LightTracker(every=1, batch_fraction=0.1, batch_steps=8)
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=L, n_head=H, n_embd=H * 8))  # the sink's layout

    def ours(step: int) -> None:
        light.arm(model, step)
        for layer, (q, k) in enumerate(layers):
            light._on_qk(layer, q, k)          # what each attention module's forward calls
        light.collect()
        light.compute_pending()

    def hf(step: int) -> None:
        [fused_sequence_means(q[:1], k[:1]) for q, k in layers]

    paths = {"ours": ours, "hf": hf}
    for f in paths.values():
        f(0)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(args.repeats):
        for name, f in (paths.items() if i % 2 else reversed(list(paths.items()))):
            t0 = time.perf_counter()
            f(i + 1)
            times[name].append(1e3 * (time.perf_counter() - t0))
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load")[-1]
    print(f"T = {args.T}, {args.threads} threads, load{load}")
    for name, v in times.items():
        print(f"{name}: median {statistics.median(v):.1f} ms ({', '.join(f'{x:.0f}' for x in v)})")
    print(f"ours, light_ms of the last event: {light.last_ms:.1f}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name, f in paths.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                f(10 ** 6)
            print(name)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
