"""Dashboard size and load time at Pythia-1.4B scale (24 layers x 16 heads = 384 heads, 154 checkpoints).

Builds a synthetic run directory through the store's writers (attention metrics at every one of the
154 checkpoints, W_QK statistics, 128 eigenvalues and element histograms per head and checkpoint,
snapshots, analysis tables, light-tier signals at 1,000 steps with attention-health alerts, so the
health sections draw), writes its dashboard, then opens it in headless Chromium with the
network blocked and reads: first contentful paint (Paint Timing API), the time until every
section is drawn (the script's own `performance.now()` at the end) and each section's own drawing
time (`document.body.dataset.sectionMs`). Baseline in the same run: the same payload written as
plain JSON number lists instead of base64 float32 (size only), and a page holding nothing but the
inlined plotly.js (load floor). Targets: < 25 MB, first paint < 1 s, every section drawn < 3 s.
With `--plotly-js FILE` (e.g. plotly-cartesian.min.js of npm's plotly.js-cartesian-dist-min) the same
page is also written with that bundle and both are loaded in turn, so the two read in one run.

    python benchmarks/bench_dashboard.py [--keep DIR] [--repeats 3] [--plotly-js FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support (synthetic run, browser)


def naive_size(payload: dict) -> int:
    """Bytes of the payload with every base64 float32 array expanded to JSON numbers (6 significant digits)."""
    import base64

    def expand(obj):  # noqa: ANN001, ANN202
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                if k == "values" and isinstance(v, str):
                    raw = base64.b64decode(v)
                    arr = np.frombuffer(raw, dtype="<f4") if len(raw) % 4 == 0 else np.frombuffer(raw, np.uint8)
                    out[k] = [None if not np.isfinite(x) else float(f"{x:.6g}") for x in arr.tolist()]
                else:
                    out[k] = expand(v)
            return out
        if isinstance(obj, list):
            return [expand(v) for v in obj]
        return obj

    return len(json.dumps(expand(payload), separators=(",", ":")))


def load_times(path: Path) -> tuple[float, float, list[str], dict]:
    """(first contentful paint ms, all sections drawn ms, console errors, ms per section) of one load."""
    from tests.support.browser import open_dashboard

    with open_dashboard(path, timeout_ms=120_000) as (page, errors, _):
        fcp = page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {startTime: NaN}).startTime")
        ready = float(page.evaluate("document.body.dataset.readyMs || 'NaN'"))
        sections = json.loads(page.evaluate("document.body.dataset.sectionMs || '{}'"))
    return float(fcp), ready, errors, sections


def summary(name: str, runs: list[tuple]) -> tuple[float, float]:
    """Print the medians of fcp / all drawn over the loads of one page; return them."""
    fcp = float(np.median([r[0] for r in runs]))
    ready = float(np.median([r[1] for r in runs]))
    print(f"{name}: first contentful paint {fcp:.0f} ms (target < 1000 ms), all sections drawn {ready:.0f} ms "
          f"(target < 3000 ms); loads {[round(r[0]) for r in runs]} / {[round(r[1]) for r in runs]}")
    per_section = {k: round(float(np.median([r[3].get(k, np.nan) for r in runs]))) for k in runs[0][3]}
    print(f"{name}: ms per section (median of loads; scriptStart = when the dashboard's script began, "
          f"after plotly.js) {per_section}; console errors {sorted({e for r in runs for e in r[2]})}")
    return fcp, ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the synthetic run here and keep it")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plotly-js", type=Path, help="also load the page built with this plotly.js bundle")
    args = parser.parse_args()
    from plotly.offline import get_plotlyjs

    from attnlife.report.dashboard import write_dashboard
    from attnlife.report.dashboard_data import build_payload
    from attnlife.report.dashboard_health import health_payload
    from attnlife.report.data import ReportRun
    from tests.support.synthetic import write_synthetic_run

    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min), {os.getloadavg()[1]:.2f} (5 min)")
    tmp = Path(tempfile.mkdtemp(prefix="bench_dashboard_"))
    root = args.keep or tmp / "pythia_scale"
    t0 = time.perf_counter()
    write_synthetic_run(root, n_layer=24, n_head=16, n_ckpt=154, n_tracked=154, last_step=143_000,
                        d_head=128, pattern_tokens=64, seed=0, n_light=1000,
                        parts=("metrics", "spectra", "snapshots", "analysis", "health"))
    t1 = time.perf_counter()
    run = ReportRun(root)
    page = write_dashboard(run)
    t2 = time.perf_counter()
    payload = build_payload(ReportRun(root))
    health = health_payload(ReportRun(root), (payload["n_layer"], payload["n_head"]))
    floor = tmp / "plotly_only.html"
    floor.write_text("<!DOCTYPE html><html><body><p>plotly only</p><script>" + get_plotlyjs()
                     + "</script><script>document.body.dataset.readyMs=String(performance.now());"
                     "document.body.dataset.ready='1'</script></body></html>")
    size_mb = page.stat().st_size / 1e6
    naive_mb = (naive_size({**payload, "health": health}) + len(get_plotlyjs())) / 1e6
    pages = {"plotly package bundle": page}
    if args.plotly_js:
        pages[f"bundle {args.plotly_js.name}"] = write_dashboard(run, tmp / "dashboard_other_bundle.html", args.plotly_js)
    loads: dict[str, list] = {name: [] for name in pages}
    floors = []
    for _ in range(args.repeats):  # interleaved, so every page sees the same machine state
        for name, path in pages.items():
            loads[name].append(load_times(path))
        floors.append(load_times(floor))
    print(f"synthetic run written in {t1 - t0:.1f} s; dashboard built in {t2 - t1:.1f} s")
    print(f"stats in payload: {len(payload['stats'])}; eigen k = {payload['eigen']['k']}; "
          f"snapshot steps = {len(payload['snapshots']['steps'])}; health: {len(health['steps'])} light steps, "
          f"{len(health['alerts'])} alerts, {len(json.dumps(health)) / 1e6:.2f} MB")
    print(f"dashboard size: {size_mb:.2f} MB (target < 25 MB); as plain JSON lists it would be {naive_mb:.2f} MB")
    for name, path in list(pages.items())[1:]:
        print(f"{name}: page size {path.stat().st_size / 1e6:.2f} MB")
    results = {name: summary(name, runs) for name, runs in loads.items()}
    fcp, ready = results["plotly package bundle"]
    floor_fcp = float(np.median([r[0] for r in floors]))
    print(f"plotly-only page first paint: {floor_fcp:.0f} ms")
    print(f"ratio size compact / plain JSON = {size_mb / naive_mb:.3f}; "
          f"ratio first paint dashboard / plotly-only = {fcp / floor_fcp:.2f}")
    for name, (_, other) in list(results.items())[1:]:
        print(f"ratio all sections drawn {name} / plotly package bundle = {other / ready:.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min), {os.getloadavg()[1]:.2f} (5 min)")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0 if size_mb < 25 and fcp < 1000 and ready < 3000 else 1)


if __name__ == "__main__":
    main()
