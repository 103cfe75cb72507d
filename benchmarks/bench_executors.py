"""The same checkpoint sweep on each executor: serial, local process pool, a local Ray cluster,
submitit's local array; wall time per executor and whether its tables equal the serial ones.

Suite: `--revisions` revisions of a GPT-NeoX model at `--shape` (random weights, float16, the real
safetensors layout; tests/support/hub_suite.py) in a local directory. Pass: `attnlife measure`'s
combined pass (`measurement.measure_series`: W_QK spectra, then the probe pass of 8 windows x 128
tokens + 8 repeated sequences), one task per checkpoint. Each executor runs in a fresh output
folder; its spectra and probe tables are compared with the serial run's (exact equality,
`pandas.testing.assert_frame_equal`). Ray: `ray.init(address="local")` on 127.0.0.1 with 2 CPUs,
started and shut down inside the timing (its start-up is part of what a user pays); submitit: its
local executor (subprocesses). On this 2-core machine, 2 workers of 1 thread each against 1
process of 2 threads measure the executors' overhead, not a speed-up. Appends one JSON line to
`--out`; `--report FILE` prints the table.

    python benchmarks/bench_executors.py --shape 160m --revisions 4 --out runs/executors.jsonl
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.hub_suite import PYTHIA_160M, TINY_NEOX, build_suite  # noqa: E402

SHAPES = {"tiny": TINY_NEOX, "160m": PYTHIA_160M}
EXECUTORS = [("serial", "local", 1), ("local", "local", 2), ("ray", "ray", 2), ("submitit", "submitit", 2)]


def tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from attnlife.store.run_dir import load_run

    run = load_run(out)
    spectra = run.spectra().sort_values(["model", "step", "layer", "head_index", "matrix", "stat"])
    probe = run.metrics().sort_values(["step", "split", "layer", "head_index", "layer_b", "metric"])
    return spectra.reset_index(drop=True), probe.reset_index(drop=True)


def equal(a: tuple, b: tuple) -> bool:
    try:
        for x, y in zip(a, b):
            pd.testing.assert_frame_equal(x, y)
        return True
    except AssertionError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="160m")
    parser.add_argument("--revisions", type=int, default=4)
    parser.add_argument("--only", default=",".join(e[0] for e in EXECUTORS))
    parser.add_argument("--out", default=None)
    parser.add_argument("--report", default=None)
    args = parser.parse_args()
    if args.report:
        return report(args.report)
    from attnlife.measurement import measure_series
    from attnlife.series.executors import make_executor
    from attnlife.series.hub import suite_refs
    from attnlife.spectra.analyse import SpectraOptions
    from attnlife.track.probe_pass import ProbeOptions, make_probe_set, series_shape

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        work = Path(tmp)
        steps = [0] + [2 ** i * 1000 for i in range(args.revisions - 1)]
        suite = build_suite(work / "suite", steps=steps, shape=SHAPES[args.shape])
        refs = suite_refs(str(suite))
        vocab, context = series_shape(refs[0])
        options, probe_options = SpectraOptions(), ProbeOptions(sequences=8, seq_len=min(128, context))  # tiny: 64
        probe = make_probe_set(np.random.default_rng(0).integers(0, vocab, 20000), vocab, context, probe_options)
        result = {"shape": args.shape, "revisions": len(refs), "threads": int(os.environ["OMP_NUM_THREADS"]),
                  "executors": {}}
        serial = None
        for label, name, workers in EXECUTORS:
            if label not in args.only.split(","):
                continue
            out = work / label
            kwargs = {"folder": str(work / "submitit")} if name == "submitit" else {}
            executor = make_executor(name, workers=workers, **kwargs)
            t0 = time.perf_counter()
            measure_series(refs, out, options, probe, probe_options, executor=executor, progress=False)
            wall = time.perf_counter() - t0
            got = tables(out)
            serial = got if serial is None else serial
            result["executors"][label] = {"workers": workers, "wall_s": wall, "equal_to_serial": equal(serial, got)}
            print(label, f"{wall:.1f} s", result["executors"][label]["equal_to_serial"], flush=True)
    base = result["executors"].get("serial", {}).get("wall_s")
    for row in result["executors"].values():
        row["ratio_to_serial"] = row["wall_s"] / base if base else None
    result["load"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(json.dumps(result))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")


def report(path: str) -> None:
    print("| shape (revisions) | executor | workers | wall s | / serial | tables equal to serial |")
    print("|---|---|---:|---:|---:|---|")
    for line in open(path):
        if not line.strip():
            continue
        r = json.loads(line)
        for label, e in r["executors"].items():
            ratio = f"{e['ratio_to_serial']:.2f}" if e.get("ratio_to_serial") else "-"
            print(f"| Pythia-{r['shape']} ({r['revisions']}) | {label} | {e['workers']} | {e['wall_s']:.1f} | "
                  f"{ratio} | {'yes' if e['equal_to_serial'] else '**no**'} |")


if __name__ == "__main__":
    main()
