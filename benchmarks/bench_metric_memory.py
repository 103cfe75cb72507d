"""Attention-metric memory vs T: streamed row chunks vs materialising every layer's pattern.

Model: our GPT with 4 layers, 8 heads, 128 dims, block T, random weights, batch 1, CPU float32,
one thread. Each measurement runs in a fresh subprocess and reports the growth of peak RSS
(ru_maxrss) during one no-grad capture forward:
  stream  - the tracker's path: chunks of 256 query rows feed an AttentionAccumulator (all
            metrics incl. head JSD and cross-layer JSD/cosine on 64 subsampled rows)
  full    - the baseline: `capture_attention(model)` keeps [B, H, T, T] of every layer, then
            the same accumulator runs over the kept patterns
The ratio stream / full is printed last. `[B, H, T, T]` for all 4 layers at T = 4096 is 2 GiB.

    python benchmarks/bench_metric_memory.py [--T 512 1024 2048 4096] [--max-full-T 2048]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(T: int, mode: str) -> None:
    import torch

    from attnlife.model.gpt import GPT, GPTConfig
    from attnlife.track.accumulate import AttentionAccumulator
    from attnlife.track.capture import capture_attention

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=T, vocab_size=65, n_layer=4, n_head=8, n_embd=128)).eval()
    idx = torch.randint(0, 65, (1, T))
    with torch.no_grad():
        model(idx[:, :8])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    acc = AttentionAccumulator(xlayer_rows=64)
    t0 = time.perf_counter()
    with torch.no_grad():
        if mode == "stream":
            with capture_attention(model, sink=acc, query_chunk=256):
                model(idx)
        else:
            with capture_attention(model) as cap:
                cap.forward(idx)
            for layer in range(4):
                acc(layer, 0, cap.patterns[f"blocks.{layer}.attn.pattern"])
    rows = acc.results()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"delta_mib": (peak - before) / 1024, "seconds": seconds, "rows": len(rows)}))


def measure(T: int, mode: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(T), mode], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--max-full-T", type=int, default=2048)
    parser.add_argument("--child", nargs=2, default=None)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1])
        return
    print("## Attention-metric memory vs T (issue 3)\n")
    print("4 layers x 8 heads x 128 dims, batch 1, fp32, peak-RSS growth of one capture forward + "
          "all metrics, fresh process per cell; chunk = 256 query rows, 64 cross-layer rows.\n")
    print("| T | all-layer [B,H,T,T] MiB | stream MiB | stream s | full MiB | full s | stream / full |")
    print("|---|---|---|---|---|---|---|")
    for T in args.T:
        s = measure(T, "stream")
        full_bytes = 4 * 8 * T * T * 4 / 2**20
        if T <= args.max_full_T:
            f = measure(T, "full")
            tail = f"{f['delta_mib']:.0f} | {f['seconds']:.2f} | {s['delta_mib'] / f['delta_mib']:.3f}"
        else:
            tail = "not run | - | -"
        print(f"| {T} | {full_bytes:.0f} | {s['delta_mib']:.0f} | {s['seconds']:.2f} | {tail} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
