"""Checkpoint suites the way the Hugging Face Hub holds them: one folder per revision, each the
`save_pretrained` output of a real transformers model (config.json + model.safetensors).

    root = build_suite(tmp / "pythia-mini", steps=[0, 1, 2, 4, 512, 1000], shape=TINY_NEOX)
    # root/step0/{config.json, model.safetensors}, root/step1/..., one per revision

GPT-NeoX (Pythia's architecture) with random weights seeded by the step, saved in `dtype`
(Pythia's own checkpoints are float16). The same folder is served by `tests.support.hub_server`
as a hub repository, and read by attnlife directly as a local directory of revisions, so a hub
sweep and a local sweep see byte-identical files.

Shapes (GPT-NeoX config fields): `TINY_NEOX` for unit tests; `PYTHIA_160M`, `PYTHIA_410M` and `PYTHIA_1_4B`
the published Pythia shapes (vocab 50304, context 2048) for the throughput benchmark.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import torch

TINY_NEOX = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 vocab_size=61, max_position_embeddings=64)
PYTHIA_160M = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                   vocab_size=50304, max_position_embeddings=2048, rotary_pct=0.25)
PYTHIA_410M = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                   vocab_size=50304, max_position_embeddings=2048, rotary_pct=0.25)
PYTHIA_1_4B = dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, intermediate_size=8192,
                   vocab_size=50304, max_position_embeddings=2048, rotary_pct=0.25)

# Pythia's 154 revisions: step0, the log-spaced steps 1..512, then every 1000 up to 143000.
PYTHIA_STEPS = [0] + [2 ** i for i in range(10)] + list(range(1000, 143001, 1000))


def pythia_revision(step: int) -> str:
    return f"step{step}"


def olmo_revision(step: int, tokens_per_step: int = 4) -> str:
    """OLMo's branch names: stepN-tokensMB (M = tokens seen, in billions)."""
    return f"step{step}-tokens{step * tokens_per_step}B"


def save_revision(directory: Path, step: int, shape: dict, dtype: torch.dtype = torch.float16,
                  seed: int = 0) -> Path:
    """One revision: a GPTNeoXForCausalLM with weights drawn from seed + step, saved in `dtype`."""
    import transformers

    torch.manual_seed(seed * 1_000_003 + step)
    config = transformers.GPTNeoXConfig(**shape)
    model = transformers.GPTNeoXForCausalLM(config)
    with torch.no_grad():   # the init leaves some weights at exact constants: spread them by step
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02 * (1 + step % 7) / 7)
    model.to(dtype).save_pretrained(directory, safe_serialization=True)
    return directory


def build_suite(root: Path, steps: Iterable[int] = (0, 1, 2, 4, 8), shape: Optional[dict] = None,
                dtype: torch.dtype = torch.float16, naming: str = "pythia", seed: int = 0) -> Path:
    """root/<revision>/ for every step (existing revision folders are kept); returns root."""
    root = Path(root)
    name = pythia_revision if naming == "pythia" else olmo_revision
    for step in steps:
        folder = root / name(step)
        if not (folder / "config.json").is_file():
            save_revision(folder, step, shape or TINY_NEOX, dtype, seed)
    return root


def suite_bytes(root: Path) -> int:
    """Total size of the weight files of a suite folder."""
    return sum(f.stat().st_size for f in Path(root).rglob("*.safetensors"))
