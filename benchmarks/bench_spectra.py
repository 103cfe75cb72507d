"""Weight spectra per checkpoint at Pythia-160m and Pythia-1.4B head shapes (issue 4).

Random float32 GPT-NeoX attention weights (query_key_value + dense, nothing else) are saved as
safetensors + config.json in a temp dir, read once to warm the page cache, then timed:
  io floor      open the checkpoint and read every attention tensor (`open_weights` + get)
  spectra-only  `analyse_checkpoint` with elements off (lambdas, vectors, moments, MP KL)
  full stats    `analyse_checkpoint` with the full element histogram and kurtosis (all rows)
  naive         per head: form W_QK (D x D), full SVD (torch, float32, with vectors), numpy
                histogram + kurtosis of all D^2 elements; timed on a few heads and scaled
                linearly to all heads, plus the io floor.
At the 1.4B shape only `--layers-14b` of the 24 layers are written (default 6) and the times
are scaled by 24 / layers (every step is per layer). Ratios are what matter: the machine is shared.
Usage: python benchmarks/bench_spectra.py [--layers-14b 6] [--naive-heads 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from attnlife.spectra.analyse import SpectraOptions, analyse_checkpoint
from attnlife.series.refs import CheckpointRef
from attnlife.spectra.analyse import open_weights

SHAPES = {"pythia-160m": (12, 12, 768), "pythia-1.4b": (24, 16, 2048)}


def write_checkpoint(root: Path, n_layer: int, n_head: int, d: int) -> CheckpointRef:
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for layer in range(n_layer):
        base = f"gpt_neox.layers.{layer}.attention."
        tensors[base + "query_key_value.weight"] = torch.randn(3 * d, d, generator=g) * 0.02
        tensors[base + "dense.weight"] = torch.randn(d, d, generator=g) * 0.02
    save_file(tensors, str(root / "model.safetensors"))
    (root / "config.json").write_text(json.dumps({
        "model_type": "gpt_neox", "hidden_size": d, "num_attention_heads": n_head,
        "num_hidden_layers": n_layer}))
    return CheckpointRef("bench", 0, "hf", str(root))


def read_all(ref: CheckpointRef) -> None:
    _, get, keys = open_weights(ref)
    for k in sorted(keys):
        get(k).sum()  # touch every byte


def evict(ref: CheckpointRef) -> None:
    """Drop the checkpoint's pages from the page cache (fsync, then POSIX_FADV_DONTNEED)."""
    for f in Path(ref.path).glob("*.safetensors"):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def best_of(fn, repeats: int, before=None) -> float:
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def naive_head_seconds(ref: CheckpointRef, heads: int) -> float:
    from scipy.stats import kurtosis

    _, get, _ = open_weights(ref)
    spec_d = get("gpt_neox.layers.0.attention.dense.weight").shape[0]
    qkv = get("gpt_neox.layers.0.attention.query_key_value.weight")
    n_head = json.loads((Path(ref.path) / "config.json").read_text())["num_attention_heads"]
    k = spec_d // n_head
    w = qkv.view(n_head, 3, k, spec_d)
    t0 = time.perf_counter()
    for h in range(heads):
        dense = w[h, 0].T @ w[h, 1]  # [D, D]
        torch.linalg.svd(dense, full_matrices=False)
        x = dense.numpy().ravel()
        np.histogram(x, bins=200)
        kurtosis(x)
    return (time.perf_counter() - t0) / heads


def bench_shape(name: str, n_layer: int, n_head: int, d: int, args) -> list[str]:
    full_layers = SHAPES[name][0]
    with tempfile.TemporaryDirectory() as tmp:
        ref = write_checkpoint(Path(tmp), n_layer, n_head, d)
        read_all(ref)  # warm the page cache
        io_warm = best_of(lambda: read_all(ref), args.repeats)
        spectra_warm = best_of(lambda: analyse_checkpoint(ref, SpectraOptions(elements=False)), args.repeats)
        cold = lambda: evict(ref)  # noqa: E731
        io = best_of(lambda: read_all(ref), args.repeats, before=cold)
        spectra = best_of(lambda: analyse_checkpoint(ref, SpectraOptions(elements=False)), args.repeats,
                          before=cold)
        full = best_of(lambda: analyse_checkpoint(ref, SpectraOptions(elements=True)), 1)
        naive_head = naive_head_seconds(ref, args.naive_heads)
    scale = full_layers / n_layer
    io, spectra, full = io * scale, spectra * scale, full * scale
    io_warm, spectra_warm = io_warm * scale, spectra_warm * scale
    naive = naive_head * full_layers * n_head + io
    note = "" if scale == 1 else f" ({n_layer} of {full_layers} layers measured, scaled x{scale:g})"
    return [f"| {name} | {d} | {n_head} x {full_layers} | {io:.2f} / {io_warm:.2f} | "
            f"{spectra:.2f} / {spectra_warm:.2f} | {full:.2f} | "
            f"{naive:.0f} ({args.naive_heads} heads x {naive_head:.2f} s) | "
            f"**{spectra / io:.2f}x** / {spectra_warm / io_warm:.1f}x | **{naive / full:.0f}x** |{note}"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers-14b", type=int, default=6)
    parser.add_argument("--naive-heads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=list(SHAPES), default=None)
    args = parser.parse_args()
    lines = ["### Weight spectra per checkpoint", "",
             f"torch threads: {torch.get_num_threads()}; random float32 weights in safetensors; cold = pages "
             "evicted with posix_fadvise(DONTNEED) before each read, warm = page cache hit; "
             "seconds per checkpoint, all heads, W_QK only.", "",
             "| shape | D | heads x layers | io floor s (cold / warm) | spectra-only s (cold / warm) | full stats s | "
             "naive s (extrapolated) | spectra / io, cold / warm (target <= 1.5) | naive / full (target >= 20) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, (n_layer, n_head, d) in SHAPES.items():
        if args.only and name != args.only:
            continue
        layers = min(n_layer, args.layers_14b) if name == "pythia-1.4b" else n_layer
        lines += bench_shape(name, layers, n_head, d, args)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
