"""Attention-health lead time: how long before a loss event each detector alerts, on real runs.

Every run is a real `attnlife train` run (`run_training` with `default_callbacks`: the light tier
every step, computed 8 steps per fused call, and the `HealthMonitor` with the default
`HealthConfig`) of the `cpu` preset on tiny-shakespeare (../shared/data), CPU, one thread.

  unstable   300 updates, no gradient clipping, cosine decay over the 300 updates, seeds 1, 2, 3:
             lr 1e-2, 3e-2, 1e-1 with no warm-up, lr 3e-2 with 20 and 50 warm-up updates, and
             lr 3e-3 with no warm-up (the mildest setting that stalls)
  healthy    the demo configuration (`attnlife train --preset cpu`: lr 1e-3, 100 warm-up updates,
             clip 1.0, 2000 updates), seeds 1337 (the demo's), 1, 2, 3, 4; and the same at
             `--max-iters 300` (the unstable runs' length), seeds 1, 2, 3

Loss events (`attnlife.analysis.health.loss_events`, stated there): spike (a loss >= 0.5 nats
above the median of the previous <= 10), divergence (non-finite, or the 10-step median back
above the first loss + 0.5), plateau (the 10-step median moved < 0.15 nats over 50 steps while
still >= 0.75 x the first loss). A run is *unstable* if it has a loss event. Per detector and
event kind: the lead = event step - the step at which the first alert was *raised* (handed to
the console and the actions, up to 7 steps after the step it is dated, because the light tier
computes 8 steps at a time); *caught* = raised before the event. Healthy runs count *false
alerts*: any alert at all.

Each run's result is cached as JSON under --out, so the benchmark resumes; --budget stops starting
new runs after that many seconds (run it in chunks), --jobs runs that many in parallel.

    python benchmarks/bench_health_lead_time.py [--group unstable|healthy|all] [--jobs 2]
        [--budget 540] [--out runs/bench_health] [--report]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "shakespeare" / "input.txt"
KINDS = ("entropy_collapse", "logit_growth", "sink_takeover", "dead_head")
EVENTS = ("spike", "plateau", "divergence")
BATCH_STEPS = 8


def grid() -> dict[str, tuple[str, list[str]]]:
    """name -> (group, `section.key=value` overrides)."""
    runs = {}
    for seed in (1, 2, 3):
        base = ["train.max_iters=300", "train.lr_decay_iters=300", "train.grad_clip=0", f"train.seed={seed}"]
        for lr, warm in (("1e-2", 0), ("3e-2", 0), ("1e-1", 0), ("3e-2", 20), ("3e-2", 50), ("3e-3", 0)):
            runs[f"unstable_lr{lr}_w{warm}_s{seed}"] = ("unstable", base + [f"train.learning_rate={lr}",
                                                                            f"train.warmup_iters={warm}"])
    for seed in (1337, 1, 2, 3, 4):
        runs[f"healthy_demo_s{seed}"] = ("healthy", [f"train.seed={seed}"])
    for seed in (1, 2, 3):
        runs[f"healthy_300_s{seed}"] = ("healthy", ["train.max_iters=300", f"train.seed={seed}"])
    return runs


def one_run(name: str, overrides: list[str], out: Path, data_dir: Path) -> dict:
    """Train one run through `attnlife train`'s callbacks; its loss events and alerts (JSON-able)."""
    import attnlife
    from attnlife.config import build_config
    from attnlife.events import Callback
    from attnlife.run import default_callbacks, run_training

    run_dir = out / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = build_config("cpu", "shakespeare_char", overrides=overrides + [
        f"data.data_dir={data_dir}", "track.at_checkpoints=false", "track.every=100000",
        "train.ckpt_log_max=0", "train.ckpt_every=0", "train.eval_iters=5"], out_dir=str(run_dir))
    raised: dict = {}

    class Clock(Callback):
        step = 0

        def on_step_end(self, rec) -> None:  # noqa: ANN001
            Clock.step = rec.step

    def hook(alert, monitor) -> None:  # noqa: ANN001 - the step the alert reached the console/actions
        raised.setdefault((alert.kind, alert.layer, alert.head, alert.step), Clock.step)

    callbacks = [Clock()] + default_callbacks(cfg, health_hooks=[hook])   # the clock ticks first
    spent = [0.0, 0]
    for cb in callbacks:
        if hasattr(cb, "echo"):
            cb.echo = None
        if hasattr(cb, "listeners"):      # the light tier: time the monitor's share of each step
            def timed(fn):  # noqa: ANN001, ANN202
                def call(*a):  # noqa: ANN002, ANN202
                    t = time.perf_counter()
                    fn(*a)
                    spent[0] += time.perf_counter() - t
                    spent[1] += 1
                return call
            cb.listeners[:] = [timed(fn) for fn in cb.listeners]
    t0 = time.time()
    run_training(cfg, [c for c in callbacks if type(c).__name__ != "Tracker"], quiet=True)
    seconds = time.time() - t0
    metrics = attnlife.load_run(run_dir).metrics()
    keep = metrics[metrics.metric.str.startswith(("light_", "alert_")) | (metrics.metric == "loss")]
    keep = keep[keep.metric != "light_mean_distance_tokens"]
    keep.to_parquet(out / "results" / f"{name}.parquet")      # for --replay with other thresholds
    alerts = metrics[metrics.metric.str.startswith("alert_")]
    live = {(r.metric[len("alert_"):], int(r.layer), int(r.head_index), int(r.step)) for r in alerts.itertuples()}
    result = summarize_run(name, overrides, metrics, alerts, raised)
    result.update(seconds=round(seconds, 1), live_alert_rows=len(live),
                  monitor_ms_per_step=1e3 * spent[0] / max(spent[1], 1),
                  hook_saw_every_row=all(key in raised for key in live))
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def summarize_run(name: str, overrides: list[str], metrics, alerts, raised: dict) -> dict:  # noqa: ANN001
    """Loss events and the first alert of each detector (dated step, raised step, units)."""
    from attnlife.analysis.health import loss_events, training_loss

    first = {}
    for kind in KINDS:
        a = alerts[alerts.metric == "alert_" + kind]
        if len(a):
            rows = [(int(r.step), raised.get((kind, int(r.layer), int(r.head_index), int(r.step)),
                                             raised_step(int(r.step)))) for r in a.itertuples()]
            first[kind] = {"step": min(s for s, _ in rows), "raised": min(r for _, r in rows),
                           "units": len({(int(r.layer), int(r.head_index)) for r in a.itertuples()})}
    loss = training_loss(metrics)
    return {"name": name, "overrides": overrides, "final_loss_20": float(loss.iloc[-20:].mean()),
            "events": [{"step": int(e.step), "event": e.event, "loss": float(e.loss)}
                       for e in loss_events(loss).itertuples()],
            "first_alerts": first}


def raised_step(step: int) -> int:
    """The update during which the light tier computes step `step`'s rows (8 steps per call)."""
    return BATCH_STEPS * (step // BATCH_STEPS) + BATCH_STEPS - 1


def replay(out: Path) -> list[dict]:
    """Results recomputed from the stored light rows with today's HealthConfig defaults, through
    the same detectors (`detect_table` = the live monitor's alerts, tested), raised at the batch
    boundary as live."""
    import pandas as pd

    from attnlife.track.health_rules import detect_table

    results = []
    for path in sorted((out / "results").glob("*.json")):
        stored = json.loads(path.read_text())
        metrics = pd.read_parquet(path.with_suffix(".parquet"))
        a = detect_table(metrics, 64)
        alerts = pd.DataFrame({"metric": "alert_" + a.kind, "layer": a.layer, "head_index": a.head_index,
                               "step": a.step})
        results.append(summarize_run(stored["name"], stored["overrides"], metrics, alerts, {}))
    return results


def healthy_margins(out: Path) -> str:
    """Per healthy run, the most extreme value of each rule's signal that held at `patience`
    consecutive reads (what the default thresholds must clear), and the same over the unstable
    runs' first 50 updates; a markdown table."""
    import numpy as np
    import pandas as pd

    from attnlife.config import HealthConfig
    from attnlife.track.health_signals import entropy_fall_bits, signals_from_table

    r = HealthConfig()
    held = r.patience

    def lasting(x, worst):  # noqa: ANN001, ANN202 - the value held at `held` reads in a row
        w = np.lib.stride_tricks.sliding_window_view(x, held, axis=0)
        return np.nanmax(w.min(-1)) if worst == "max" else np.nanmin(w.max(-1))

    lines = ["| run | lowest entropy, bits | largest fall in 20 steps, bits | largest \\|bound\\|, nats "
             "| largest rise in 20 steps, nats | largest layer sink mass | largest uniform fraction after step 1000 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for path in sorted((out / "results").glob("*.parquet")):
        name = path.stem
        m = pd.read_parquet(path)
        if name.startswith("unstable"):
            m = m[m.step < 50]
        sig = list(signals_from_table(m, 64))
        steps = np.array([s.step for s in sig])
        e = np.stack([s.entropy_bits for s in sig])
        bound = np.abs(np.stack([s.lse_max_nats for s in sig]))
        span = r.collapse_window + held - 1
        fall = np.stack([entropy_fall_bits(sig[max(0, i - span):i + 1], span) for i in range(len(sig))])
        rise = np.stack([bound[i] - np.nanmin(bound[max(0, i - span + 1):i + 1], axis=0) for i in range(len(sig))])
        sink = np.stack([s.layer_sink_mass() for s in sig])
        late = np.stack([s.uniform_fraction() for s in sig])[steps >= r.dead_after_steps]
        dead = f"{lasting(late, 'max'):.2f}" if len(late) >= held else "-"
        label = name if name.startswith("healthy") else name + " (updates < 50)"
        lines.append(f"| {label} | {lasting(e, 'min'):.2f} | {lasting(fall, 'max'):.2f} | {lasting(bound, 'max'):.1f} "
                     f"| {lasting(rise, 'max'):.1f} | {lasting(sink, 'max'):.2f} | {dead} |")
    lines.append(f"| **default threshold** | {r.collapse_floor_bits:g} | {r.collapse_fall_bits:g} | "
                 f"{r.logit_ceiling_nats:g} | {r.logit_rise_nats:g} | {r.sink_threshold:g} | {r.dead_uniform_fraction:g} |")
    return "\n".join(lines)


def prepare(out: Path) -> Path:
    from attnlife.data import prepare_dataset

    data_dir = out / "data"
    if not (data_dir / "shakespeare_char" / "meta.json").is_file():
        prepare_dataset("shakespeare_char", data_dir, source=SHARED if SHARED.is_file() else None, quiet=True)
    return data_dir


def _spread(values: list[int]) -> str:
    """median (min, max) of a list of ints, or -."""
    import statistics

    v = sorted(values)
    return f"{statistics.median(v):g} ({v[0]}, {v[-1]})" if v else "-"


def summarize(results: list[dict]) -> str:
    """The markdown tables of BENCHMARKS.md from the results."""
    unstable = [r for r in results if r["name"].startswith("unstable") and r["events"]]
    quiet = [r["name"] for r in results if r["name"].startswith("unstable") and not r["events"]]
    healthy = [r for r in results if r["name"].startswith("healthy")]
    lines = [f"unstable runs with a loss event: {len(unstable)} of "
             f"{len(unstable) + len(quiet)} (no event: {', '.join(quiet) or 'none'})", "",
             "| detector | loss event | runs with it | its step, median (min, max) | caught before it "
             "| lead steps, median (min, max) | missed: alert raised late by, median (min, max) | missed: no alert |",
             "|---|---|---:|---|---:|---|---|---:|"]
    for kind in KINDS + ("any", "any, dated"):      # dated: as if raised at the step it is dated
        for ev in EVENTS + ("first",):
            at, leads, late, none = [], [], [], 0
            for r in unstable:
                evs = [e["step"] for e in r["events"] if ev == "first" or e["event"] == ev]
                if not evs:
                    continue
                at.append(min(evs))
                fa = r["first_alerts"]
                when = "step" if kind == "any, dated" else "raised"
                got = [fa[k][when] for k in (KINDS if kind.startswith("any") else (kind,)) if k in fa]
                if not got:
                    none += 1
                elif min(got) < min(evs):
                    leads.append(min(evs) - min(got))
                else:
                    late.append(min(got) - min(evs))
            if not at:
                continue
            lines.append(f"| {kind} | {ev} | {len(at)} | {_spread(at)} | {len(leads)} ({len(leads) / len(at):.0%}) "
                         f"| {_spread(leads)} | {_spread(late)} | {none} |")
    lines += ["", "| healthy run | updates | final loss (last 20) | alerts | loss events |", "|---|---:|---:|---|---|"]
    for r in healthy:
        n = 300 if "300" in r["name"] else 2000
        alerts = ", ".join(f"{k} at {v['step']} ({v['units']} units)" for k, v in r["first_alerts"].items())
        events = ", ".join(f"{e['event']}@{e['step']}" for e in r["events"])
        lines.append(f"| {r['name']} | {n} | {r['final_loss_20']:.3f} | {alerts or 'none'} | {events or 'none'} |")
    lines += ["", "| unstable run | final loss (last 20) | loss events | first alert raised (dated) per detector |",
              "|---|---:|---|---|"]
    for r in sorted((r for r in results if r["name"].startswith("unstable")), key=lambda r: r["name"]):
        events = ", ".join(f"{e['event']}@{e['step']}" for e in r["events"]) or "none"
        alerts = ", ".join(f"{k} {v['raised']} ({v['step']})" for k, v in r["first_alerts"].items()) or "none"
        lines.append(f"| {r['name']} | {r['final_loss_20']:.3f} | {events} | {alerts} |")
    ms = [r["monitor_ms_per_step"] for r in results if "monitor_ms_per_step" in r]
    if ms:
        lines += ["", f"monitor cost: median {sorted(ms)[len(ms) // 2]:.3f} ms per light step "
                      f"(min {min(ms):.3f}, max {max(ms):.3f}) over {len(ms)} runs; "
                      f"every live alert row reached the hook: {all(r.get('hook_saw_every_row', True) for r in results)}"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--group", default="all", choices=["unstable", "healthy", "all"])
    ap.add_argument("--out", default="runs/bench_health")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--budget", type=float, default=540.0)
    ap.add_argument("--report", action="store_true", help="only print the tables of what is cached")
    ap.add_argument("--replay", action="store_true", help="recompute alerts from the stored rows with "
                    "today's default thresholds, then print the tables")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = Path(args.out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    runs = grid()
    if args.one:
        result = one_run(args.one, runs[args.one][1], out, prepare(out))
        tmp = out / "results" / f".{args.one}.json"
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(out / "results" / f"{args.one}.json")
        return
    todo = [n for n, (g, _) in runs.items() if args.group in ("all", g)
            and not (out / "results" / f"{n}.json").is_file()]
    if args.replay:
        print(summarize(replay(out)))
        print("\n" + healthy_margins(out))
        return
    if not args.report:
        prepare(out)
        print(f"uptime: {os.getloadavg()}; {len(todo)} runs to do", flush=True)
        t0, running = time.time(), []
        while todo or running:
            running = [p for p in running if p.poll() is None]
            if todo and len(running) < args.jobs and time.time() - t0 < args.budget:
                name = todo.pop(0)
                running.append(subprocess.Popen([sys.executable, __file__, "--out", str(out), "--one", name]))
            elif not running:
                break
            time.sleep(0.5)
        print(f"{len(todo)} runs left for the next chunk; {time.time() - t0:.0f} s", flush=True)
    results = [json.loads(p.read_text()) for p in sorted((out / "results").glob("*.json"))]
    print(summarize(results))


if __name__ == "__main__":
    main()
