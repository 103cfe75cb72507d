"""Checkpoints per minute of `attnlife measure` (weight spectra + attention probe pass, one read of
each checkpoint) over a hub suite streamed from a Hub on 127.0.0.1, at Pythia shapes.

Suite: `--revisions` revisions of a GPT-NeoX model at the Pythia-160m or -410m shape (random
weights, float16, the real `save_pretrained` safetensors layout; tests/support/hub_suite.py),
served by tests/support/hub_server.py (file hashes computed before the clock starts). The sweep
runs as `python -m attnlife measure --hf org/pythia-<shape> --tokens ids.npy` in a subprocess
with the real huggingface_hub client (HF_ENDPOINT, an empty HF_HUB_CACHE), default options:
W_QK spectra with element statistics, probe set of 16 windows x 256 tokens + 16 repeated random
sequences of 2 x 128 tokens. Measured: wall time of the command, the steady-state rate (from the
times the per-checkpoint done markers appear, first checkpoint excluded: no start-up), peak RSS of
the sweep process (`ru_maxrss` of the child), peak bytes under the cache (a watcher thread, every
20 ms), and a one-revision breakdown measured in this process (download over loopback, spectra,
probe pass). Results append one JSON line to `--out`; `--report FILE` prints the table.

    python benchmarks/bench_hub_throughput.py --shape 160m --revisions 4 --out runs/hub.jsonl
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.hub_server import HubServer  # noqa: E402
from tests.support.hub_suite import (PYTHIA_1_4B, PYTHIA_160M, PYTHIA_410M, TINY_NEOX, build_suite,  # noqa: E402
                                     suite_bytes)

SHAPES = {"160m": PYTHIA_160M, "410m": PYTHIA_410M, "1.4b": PYTHIA_1_4B, "tiny": TINY_NEOX}


def disk_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                try:
                    total += os.path.getsize(p)
                except OSError:
                    pass
    return total


class DiskWatcher(threading.Thread):
    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root, self.peak, self.stop = root, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, disk_bytes(self.root))
            time.sleep(0.02)


def breakdown(repo: str, tokens: Path, work: Path, device: str = "cpu") -> dict:
    """Seconds of one revision's download, spectra and probe pass, measured here; with a `device`
    other than cpu also the probe pass of that revision's model on the device (after one warm-up
    pass, synchronised) and the largest |device - cpu| difference of its rows."""
    from attnlife.series.hub import HubStore, suite_refs
    from attnlife.series.revisions import RevisionSelector
    from attnlife.spectra.analyse import SpectraOptions
    from attnlife.spectra.sweep import SpectraPass
    from attnlife.track import probe_pass as P

    ref = suite_refs(repo, RevisionSelector(log_spaced=2))[-1]
    store = HubStore(work / "ledger")
    t0 = time.perf_counter()
    local = store.fetch(ref)
    t1 = time.perf_counter()
    SpectraPass(str(work / "b"), SpectraOptions())(local)
    t2 = time.perf_counter()
    options = P.ProbeOptions()
    vocab, context = P.series_shape(local)
    probe = P.make_probe_set(np.load(tokens), vocab, context, options)
    P.ProbePass(str(work / "b"), probe, options, P.options_key(options, probe))(local)
    t3 = time.perf_counter()
    parts = {"download_s": t1 - t0, "spectra_s": t2 - t1, "probe_s": t3 - t2}
    if device != "cpu":
        parts.update(probe_on_device(local, probe, options, device))
    store.evict(ref)
    return parts


def probe_on_device(ref, probe: dict, options, device: str) -> dict:
    """The probe pass of one checkpoint on `device` (model and probe set moved there): seconds per
    checkpoint (median of 3 after a warm-up; loading excluded) and the worst row difference to cpu."""
    import statistics

    import torch

    from attnlife.series.models import load_series_model
    from attnlife.track.probe_pass import measure_checkpoint

    model = load_series_model(ref).eval()
    want = {(r.layer, r.head_index, r.metric): r.value for r in measure_checkpoint(model, probe, options)}
    model = model.to(device)
    moved = {k: v.to(device) for k, v in probe.items()}
    times = []
    for _ in range(4):
        torch.cuda.synchronize()
        t = time.perf_counter()
        rows = measure_checkpoint(model, moved, options)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    got = {(r.layer, r.head_index, r.metric): r.value for r in rows}
    diff = max(abs(got[k] - v) for k, v in want.items() if np.isfinite(v))
    return {"probe_device": device, "probe_device_s": statistics.median(times[1:]),
            "probe_device_ckpt_per_min": 60 / statistics.median(times[1:]), "probe_device_max_abs_diff": diff,
            "device_name": torch.cuda.get_device_name(0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="160m")
    parser.add_argument("--revisions", type=int, default=4)
    parser.add_argument("--suites", default="/work/scratch/scale/suites")
    parser.add_argument("--only-breakdown", action="store_true",
                        help="Skip the sweep subprocess: one revision's components only (the 1.4B shape).")
    parser.add_argument("--device", default="cpu", help="cuda: also time the probe pass on the GPU")
    parser.add_argument("--out", default=None)
    parser.add_argument("--report", default=None)
    args = parser.parse_args()
    if args.report:
        return report(args.report)
    steps = [0] + [2 ** i * 1000 for i in range(args.revisions - 1)]
    t = time.perf_counter()
    suite = build_suite(Path(args.suites) / f"pythia-{args.shape}", steps=steps, shape=SHAPES[args.shape])
    build_s = time.perf_counter() - t
    repo = f"org/pythia-{args.shape}"
    Path(args.suites).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=Path(args.suites).parent) as tmp, HubServer({repo: suite}) as hub:
        work = Path(tmp)
        for rev in hub.repos[repo].revisions():                        # hashes before the clock
            for name in hub.repos[repo].files(rev):
                hub.repos[repo].hashes(suite / rev / name)
        tokens = work / "ids.npy"
        np.save(tokens, np.random.default_rng(0).integers(0, SHAPES[args.shape]["vocab_size"], 60000))
        cache = work / "cache"
        if args.only_breakdown:
            os.environ.update({"HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(cache),
                               "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
            parts = breakdown(repo, tokens, work, args.device)
            result = {"shape": args.shape, "revisions": 1, "revision_bytes": suite_bytes(suite / "step0"),
                      "only_breakdown": True, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "threads": int(os.environ["OMP_NUM_THREADS"]), "build_s": build_s, **parts,
                      "load": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
            print(json.dumps(result))
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(result) + "\n")
            return
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(cache),
               "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": str(ROOT)}
        watcher = DiskWatcher(cache)
        watcher.start()
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "attnlife", "measure", "--hf", repo, "--out", str(work / "out"),
                               "--tokens", str(tokens), "--quiet"], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        watcher.stop.set()
        watcher.join()
        assert done.returncode == 0, done.stderr[-3000:]
        peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        marks = sorted(p.stat().st_mtime for p in (work / "out" / "probe" / "done").rglob("*.json"))
        steady = (len(marks) - 1) / (marks[-1] - marks[0]) * 60 if len(marks) > 1 else float("nan")
        left = disk_bytes(cache) if cache.exists() else 0
        os.environ.update({"HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(work / "cache2"),
                           "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
        parts = breakdown(repo, tokens, work, args.device)
    revision_bytes = suite_bytes(suite / "step0")
    result = {"shape": args.shape, "revisions": len(steps), "revision_bytes": revision_bytes, "wall_s": wall,
              "ckpt_per_min_wall": len(steps) * 60 / wall, "ckpt_per_min_steady": steady,
              "peak_rss_bytes": peak_rss, "peak_cache_bytes": watcher.peak, "cache_left_bytes": left,
              "peak_cache_revisions": watcher.peak / revision_bytes, "build_s": build_s,
              "threads": int(os.environ["OMP_NUM_THREADS"]), **parts,
              "load": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
    print(json.dumps(result))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")


def report(path: str) -> None:
    rows = [json.loads(line) for line in open(path) if line.strip()]
    print("| shape | revisions (GB each, fp16) | wall s | ckpt/min (wall / steady) | peak RSS GB | peak cache GB "
          "(revisions) | left in cache | one revision: download / spectra / probe s |")
    print("|---|---|---:|---|---:|---|---:|---|")
    for r in rows:
        if r.get("only_breakdown"):
            print(f"| Pythia-{r['shape']} | 1 ({r['revision_bytes'] / 1e9:.2f}) | - | - | "
                  f"{r['peak_rss_bytes'] / 1e9:.2f} (in-process) | - | - | {r['download_s']:.1f} / "
                  f"{r['spectra_s']:.1f} / {r['probe_s']:.1f} |")
            continue
        print(f"| Pythia-{r['shape']} | {r['revisions']} ({r['revision_bytes'] / 1e9:.2f}) | {r['wall_s']:.0f} | "
              f"{r['ckpt_per_min_wall']:.2f} / **{r['ckpt_per_min_steady']:.2f}** | {r['peak_rss_bytes'] / 1e9:.2f} | "
              f"{r['peak_cache_bytes'] / 1e9:.2f} ({r['peak_cache_revisions']:.1f}) | {r['cache_left_bytes']} B | "
              f"{r['download_s']:.1f} / {r['spectra_s']:.1f} / {r['probe_s']:.1f} |")
    for r in rows:
        if "probe_device_s" in r:
            print(f"\nPythia-{r['shape']} probe pass on {r['probe_device']} ({r['device_name']}): "
                  f"{r['probe_device_s']:.2f} s per checkpoint = {r['probe_device_ckpt_per_min']:.1f} checkpoints/min "
                  f"(cpu here: {r['probe_s']:.1f} s), worst row |{r['probe_device']} - cpu| {r['probe_device_max_abs_diff']:.2e}")


if __name__ == "__main__":
    main()
