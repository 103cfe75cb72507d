"""results/compare.md: each published number beside ours, with what differs between the two.

What differs is computed, not written by hand: the cell config's fields that are not the `paper`
preset's for that dataset (model shape, batch, rate, iterations), the data (a prefix and its
train tokens against the canonical 90M-token train split), and the hardware the cells ran on.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from attnlife.config import build_config
from attnlife.reproduce.protocol import (PUBLISHED_BEST_VAL_LOSS, PUBLISHED_OVERHEAD_PCT,
                                         PUBLISHED_TOKENS_PER_S, PUBLISHED_TRAIN_TIME_S)
from attnlife.store.atomic import atomic_path

COMPARED_FIELDS = (("model", "n_layer"), ("model", "n_head"), ("model", "n_embd"),
                   ("model", "block_size"), ("model", "dropout"), ("train", "batch_size"),
                   ("train", "learning_rate"), ("train", "max_iters"))
CANONICAL_TRAIN_TOKENS = {"shakespeare_char": 1_003_854, "enwik8": 90_000_000, "text8": 90_000_000}


def config_differences(dataset: str, config: dict) -> list[str]:
    """'field ours vs published' for every COMPARED_FIELDS entry that is not the paper preset's."""
    paper = build_config("paper", dataset).to_dict()
    return [f"{key} {config[sec][key]:g} vs {paper[sec][key]:g}" for sec, key in COMPARED_FIELDS
            if config.get(sec, {}).get(key) != paper[sec][key]]


def data_difference(dataset: str, info: dict) -> str:
    """'' for the full dataset, else 'prefix: N train tokens vs M'."""
    if not info.get("prefix"):
        return ""
    full = CANONICAL_TRAIN_TOKENS.get(dataset)
    return (f"prefix: {info.get('train_tokens', 0):,} train tokens"
            + (f" vs {full:,}" if full else ""))


def _cell(results: dict, run: int, dataset: str, key: str, digits: int) -> str:
    entry = results.get(run, {}).get(dataset)
    if entry is None:
        return "-"
    mean, se = entry["means"][f"{key}_mean"], entry["stderrs"][f"{key}_stderr"]
    text = f"{mean:.{digits}f}"
    if se is not None:
        text += f" ± {se:.{digits}f}"
    return text + f" (n={entry['n_seeds']})"


def compare_markdown(results: dict[int, dict], overhead: pd.DataFrame, hardware: str,
                     scale: str) -> str:
    """The compare.md text for run results {k: run_{k}.json dict} (module docstring)."""
    runs = sorted(results)
    datasets = list(dict.fromkeys(d for k in runs for d in results[k]))
    head = ["quantity", "dataset", "published"] + [f"run {k}" for k in runs] + ["what differs"]
    lines = [f"# Published numbers beside this reproduction (scale `{scale}`)", "",
             "Ours: mean ± standard error over seeds (n = seeds). Losses in nats/token; times in "
             "seconds of the training loop; speeds in new tokens/s. What differs is listed per "
             "dataset below the table.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = [("best val loss", "best_val_loss", PUBLISHED_BEST_VAL_LOSS, 3),
            ("total train time (s)", "total_train_time", PUBLISHED_TRAIN_TIME_S, 1),
            ("inference tokens/s", "avg_inference_tokens_per_second",
             {d: PUBLISHED_TOKENS_PER_S for d in datasets}, 0)]
    for label, key, published, digits in rows:
        for dataset in datasets:
            pub = published.get(dataset)
            pub_text = "-" if pub is None else (f"~{pub:g}" if key.startswith("avg") else f"{pub:g}")
            lines.append("| " + " | ".join(
                [label, dataset, pub_text] + [_cell(results, k, dataset, key, digits) for k in runs]
                + [f"[{dataset}](#what-differs-{dataset})"]) + " |")
    lines += ["", "## Tracking overhead (runs 1-3 against run 0, training wall time)", ""]
    lines += _overhead_lines(overhead)
    lines += ["", "## What differs", ""]
    for dataset in datasets:
        entry = next(results[k][dataset] for k in runs if dataset in results[k])
        differs = config_differences(dataset, entry.get("config", {}))
        data = data_difference(dataset, entry.get("data", {})) or "the full dataset"
        lines += [f"### What differs: {dataset}", "",
                  f"- config (ours vs the published paper preset): {'; '.join(differs) or 'none'}",
                  f"- data: {data}", f"- hardware: {hardware}; published: a GPU", ""]
    return "\n".join(lines)


def _overhead_lines(overhead: pd.DataFrame) -> list[str]:
    if overhead.empty:
        return ["No run 0 in this grid: no overhead to compare."]
    lines = [f"Published: {PUBLISHED_OVERHEAD_PCT}% (run 1 against run 0).", "",
             "| dataset | run | seeds | time s (run) | time s (run 0) | overhead % | paired % ± se |",
             "|---|---|---|---|---|---|---|"]
    for r in overhead.itertuples(index=False):
        se = "" if not math.isfinite(r.overhead_pct_paired_stderr) else \
            f" ± {r.overhead_pct_paired_stderr:.1f}"
        lines.append(f"| {r.dataset} | {r.run} | {r.n_seeds} | {r.train_time_s_mean:.1f} | "
                     f"{r.baseline_time_s_mean:.1f} | {r.overhead_pct:+.1f} | "
                     f"{r.overhead_pct_paired:+.1f}{se} |")
    lines += ["", "Cells that run in parallel (`--workers`) or on a shared machine share its cores: "
              "wall-time ratios then carry that noise (see docs/results.md)."]
    return lines


def write_compare(out_dir: str | Path, text: str) -> Path:
    """Write results/compare.md atomically."""
    path = Path(out_dir) / "results" / "compare.md"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
