"""Text from a trained run: load a checkpoint, encode a prompt, generate, decode, time it.

The vocabulary comes from the prepared dataset named in the run's run.json (`dataset.name`,
`dataset.data_dir`), so the dataset must still be prepared where the run was trained.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from attnlife.data import load_prepared
from attnlife.errors import ConfigError, RunDirError
from attnlife.model.generate import timed_generate
from attnlife.series.models import checkpoint_dir, load_model
from attnlife.store.run_dir import load_run
from attnlife.train.run_record import check_same_dataset


WARMUP_TOKENS = 16


@dataclass(frozen=True)
class SampleResult:
    """Generated text (prompt included) and its speed; `tokens_per_s` counts new tokens only and
    is timed after `warmup_tokens` untimed tokens (first-call allocations and kernel selection
    excluded; the warm-up draws from its own generator, so the text does not depend on it)."""

    text: str
    step: int
    new_tokens: int
    seconds: float
    warmup_tokens: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / max(self.seconds, 1e-9)


def sample_run(run_dir: str | os.PathLike, tokens: int = 500, prompt: Optional[str] = None,
               temperature: float = 0.8, top_k: Optional[int] = 200, seed: int = 1337,
               step: Optional[int] = None, use_cache: bool = True) -> SampleResult:
    """Generate `tokens` new tokens from checkpoint `step` (newest if None) of `run_dir`.

    `prompt` None starts from the single token id 0 (a newline for shakespeare_char);
    temperature 0 is greedy decoding; CPU, float32.
    """
    if tokens < 1:
        raise ConfigError(f"--tokens {tokens} must be >= 1")
    if not math.isfinite(temperature) or temperature < 0:
        raise ConfigError(f"--temperature {temperature} must be a finite number >= 0 (0 = greedy)")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"--top-k {top_k} must be >= 1 (the number of most likely tokens kept)")
    run = load_run(run_dir)
    dataset = run.record.get("dataset", {})
    if "name" not in dataset:
        raise RunDirError(f"{run_dir} has no run.json with a dataset; pass the --out directory "
                          f"of an `attnlife train` run")
    data = load_prepared(dataset["data_dir"], dataset["name"])
    check_same_dataset(dataset, {"vocab_size": data.vocab_size, "meta": dict(data.meta)},
                       keys=("vocab_size", "vocabulary"),
                       fix="re-prepare the run's original data to decode its samples")
    ckpt = checkpoint_dir(run_dir, step)
    model = load_model(ckpt)
    try:
        ids = data.encode(prompt) if prompt else [0]
    except (KeyError, ValueError, UnicodeError) as err:
        raise ConfigError(f"--prompt contains a symbol outside the {dataset['name']} vocabulary "
                          f"({err}); use characters of the training text") from None
    if not ids:
        raise ConfigError("--prompt encodes to no tokens; give at least one character")
    idx = torch.tensor([ids], dtype=torch.long)
    warmup = min(tokens, WARMUP_TOKENS)
    timed_generate(model, idx, warmup, temperature=temperature, top_k=top_k, use_cache=use_cache,
                   generator=torch.Generator().manual_seed(seed + 1))
    generator = torch.Generator().manual_seed(seed)
    out, seconds = timed_generate(model, idx, tokens, temperature=temperature, top_k=top_k,
                                  use_cache=use_cache, generator=generator)
    text = data.decode(out[0].tolist()) if prompt else data.decode(out[0, 1:].tolist())
    return SampleResult(text=text, step=int(Path(ckpt).name.split("_")[-1]), new_tokens=tokens,
                        seconds=seconds, warmup_tokens=warmup)
