"""Long context: peak memory and time of the light statistics vs the explicit chunked path.

One layer, 8 heads, head dim 64, batch 1, float32, 1 thread, random q and k [1, 8, T, 64] (seed 0).
*light* = `fused_row_stats` (one fused attention call with V = [K | j] plus its log-sum-exp, then
entropy, mean distance and sink mass of every row). *explicit* = the tracker's explicit path for
the same three statistics: probabilities in chunks of 256 query rows ([1, 8, 256, T] scores,
causal mask, softmax), then `entropy_bits`, `mean_distance_tokens` and `sink_mass` of
`attnlife.track.metrics` per chunk (the accumulator's head JSD and span would add to this).
Each cell runs in a fresh subprocess; memory = growth of the peak RSS (ru_maxrss) over the RSS
after q and k exist. At large T the explicit path runs `--explicit-chunks` chunks and its time is
extrapolated linearly (every chunk scores all T keys, so chunks cost the same); its memory peak is
reached in the first chunk.

    python benchmarks/bench_light_long_context.py [--T 4096 16384 32768] [--explicit-chunks 8]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

H, K, CHUNK = 8, 64, 256


def rss_mib() -> float:
    """Peak resident set size of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def explicit(q: torch.Tensor, k: torch.Tensor, max_chunks: int) -> tuple[int, int]:
    """The explicit chunked path for the three statistics; returns (chunks run, chunks in total)."""
    from attnlife.track import metrics as M

    T = q.size(2)
    scale = 1 / math.sqrt(K)
    sums = torch.zeros(3, H, dtype=torch.float64)
    starts = list(range(0, T, CHUNK))
    for start in starts[:max_chunks]:
        s = (q[:, :, start:start + CHUNK] @ k.transpose(-2, -1)) * scale       # [1, H, t, T]
        hidden = torch.ones(s.size(-2), T, dtype=torch.bool).triu(start + 1)
        p = torch.softmax(s.masked_fill_(hidden, float("-inf")), dim=-1)
        for m, f in enumerate((M.entropy_bits, M.mean_distance_tokens, M.sink_mass)):
            sums[m] += f(p, start).double().nansum((0, 2))
        del s, p
    return min(max_chunks, len(starts)), len(starts)


def child(mode: str, T: int, max_chunks: int) -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, H, T, K, generator=g)
    k = torch.randn(1, H, T, K, generator=g)
    from attnlife.track.fused_stats import fused_row_stats

    fused_row_stats(q[:, :, :64], k[:, :, :64])  # load kernels before measuring
    base = rss_mib()
    t0 = time.perf_counter()
    if mode == "light":
        stats = fused_row_stats(q, k)
        float(stats.entropy_bits.mean())
        ran, total = 1, 1
    else:
        ran, total = explicit(q, k, max_chunks)
    seconds = (time.perf_counter() - t0) * total / ran
    print(json.dumps({"mode": mode, "T": T, "mib": rss_mib() - base, "s": seconds,
                      "extrapolated": ran < total, "chunks": f"{ran}/{total}"}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[4096, 16384, 32768])
    parser.add_argument("--explicit-chunks", type=int, default=8)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "T"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.explicit_chunks)
        return
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    results = {}
    for T in args.T:
        for mode in ("light", "explicit"):
            chunks = 10**9 if T <= 4096 else args.explicit_chunks
            out = subprocess.run([sys.executable, __file__, "--child", mode, str(T),
                                  "--explicit-chunks", str(chunks)],
                                 capture_output=True, text=True, check=True)
            results[(mode, T)] = json.loads(out.stdout.strip().splitlines()[-1])
            print(results[(mode, T)], flush=True)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print("\n| T | light MiB | light s | explicit MiB | explicit s | explicit / light time | MiB ratio |")
    print("|---|---|---|---|---|---|---|")
    for T in args.T:
        lt, ex = results[("light", T)], results[("explicit", T)]
        star = f" (extrapolated from {ex['chunks']} chunks)" if ex["extrapolated"] else ""
        print(f"| {T} | {lt['mib']:.0f} | {lt['s']:.2f} | {ex['mib']:.0f} | {ex['s']:.1f}{star} | "
              f"{ex['s'] / lt['s']:.1f}x | {ex['mib'] / max(lt['mib'], 1):.1f}x |")


if __name__ == "__main__":
    main()
