"""The light tier's event at GPT-2-small shape: today's path against the previous one, same process.

One event = the q, k of n sequences from each of 12 layers (12 heads, T = 1024, K = 64) turned into
per-head entropy, mean distance and sink mass. *Previous* (issue 13): clone each layer's q[:n],
k[:n], concatenate the layers, then pad q and concatenate [k | j] (two more copies each), one fused
call, reductions with [n, L H, T, K + 1] temporaries. *Today*: copy each layer's q, k once into
reused padded buffers, one fused call, reductions as flat dot products. Also timed: the fused
attention call alone (the floor) and one training-forward attention over B = 2 sequences for
scale. Medians of `--repeats` events, wall ms, `--threads` torch threads; values checked equal.

    python benchmarks/bench_light_event.py [--n 1] [--repeats 7] [--threads 2]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from attnlife.track.fused_stats import LOG2, _centre, padded_qk, padded_sequence_means  # noqa: E402

L, H, T, K = 12, 12, 1024, 64


def previous(layers: list[tuple[torch.Tensor, torch.Tensor]], n: int) -> dict:
    """Issue 13's path: clones, concatenation over layers, pad and cat, [.., W] temporaries."""
    kept = [(q[:n].clone(), k[:n].clone()) for q, k in layers]
    q = torch.cat([a for a, _ in kept], dim=1)
    k = torch.cat([b for _, b in kept], dim=1)
    B, HH = q.shape[:2]
    scale = 1 / math.sqrt(K)
    pos = torch.arange(T, dtype=q.dtype) - _centre(T)
    kv = torch.cat([k, pos.view(1, 1, T, 1).expand(B, HH, T, 1)], dim=-1)
    qp = F.pad(q, (0, 1))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(qp, kv, kv, 0.0, True, scale=scale)
    entropy = (lse.mean(-1) - scale * (qp * out).sum(-1).mean(-1)) / LOG2
    distance = (T - 1) / 2 - _centre(T) - out[..., K].mean(-1)
    s0 = scale * (qp[:, :, 1:] @ kv[:, :, 0, :, None]).squeeze(-1)
    sink = torch.exp(s0 - lse[..., 1:]).mean(-1)
    return {"entropy_bits": entropy, "mean_distance_tokens": distance, "sink_mass": sink}


def today(layers: list[tuple[torch.Tensor, torch.Tensor]], n: int, buffers: tuple) -> dict:
    qp, kv = buffers
    for i, (q, k) in enumerate(layers):
        padded_qk(q[:n], k[:n], "cpu_flash", out=(qp[:, i * H:(i + 1) * H], kv[:, i * H:(i + 1) * H]))
    return padded_sequence_means(qp, kv, K)


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B = max(2, args.n)
    layers = [(torch.randn(B, H, T, K) * 0.4, torch.randn(B, H, T, K) * 0.4) for _ in range(L)]
    buffers = padded_qk(torch.zeros(args.n, L * H, T, K), torch.zeros(args.n, L * H, T, K), "cpu_flash")
    a, b = previous(layers, args.n), today(layers, args.n, buffers)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-4)
    qp, kv = buffers
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    old = median_ms(lambda: previous(layers, args.n), args.repeats)
    new = median_ms(lambda: today(layers, args.n, buffers), args.repeats)
    floor = median_ms(lambda: torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        qp, kv, kv, 0.0, True, scale=1 / math.sqrt(K)), args.repeats)
    fwd = median_ms(lambda: [F.scaled_dot_product_attention(q, k, k, is_causal=True) for q, k in layers],
                    args.repeats)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(f"\nGPT-2-small shape (12 x 12 heads, T = {T}, K = {K}), n = {args.n} sequence(s), "
          f"{args.threads} threads, median of {args.repeats}:\n")
    print("| light event path | ms |")
    print("|---|---:|")
    print(f"| previous (clone, cat, pad, cat, temporaries) | {old:.0f} |")
    print(f"| today (one copy into reused buffers, flat dots) | {new:.0f} |")
    print(f"| the fused attention call alone (floor) | {floor:.0f} |")
    print(f"| for scale: training-forward attention, 12 layers, B = {B} | {fwd:.0f} |")
    print(f"\nratio today / previous = **{new / old:.3f}**; today / floor = {new / floor:.3f}")


if __name__ == "__main__":
    main()
