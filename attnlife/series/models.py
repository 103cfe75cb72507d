"""The one model loader: a checkpoint as a runnable model.

- `load_model(ckpt_dir)`: a checkpoint directory written by `attnlife train` stores its model
  shape in `meta.json` under `model_config` (the `GPTConfig` fields, vocab_size included), so the
  directory alone is enough: `load_model(RUN/checkpoints/step_0001000)`. `checkpoint_dir(run,
  step)` finds the directory of a step (or the newest one).
- `load_series_model(ref)`: any `CheckpointRef` of a series (our runs and nanoGPT `ckpt.pt` as an
  attnlife GPT, vocabulary and context read from the embedding shapes; Hugging Face revisions as
  a transformers causal LM).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from attnlife.errors import CheckpointError
from attnlife.model.gpt import GPT, GPTConfig
from attnlife.series.refs import CheckpointRef, SeriesSourceError, hf_config, open_state
from attnlife.store.checkpoints import load_meta, load_state_dict
from attnlife.store.layout import list_checkpoints


def checkpoint_dir(run_dir: str | os.PathLike, step: Optional[int] = None) -> Path:
    """Directory of the checkpoint at `step` in `run_dir` (the newest when step is None)."""
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir} has no checkpoints; pass the --out directory of "
                              f"an `attnlife train` run")
    if step is None:
        return found[-1][1]
    for s, path in found:
        if s == int(step):
            return path
    steps = [s for s, _ in found]
    raise CheckpointError(f"{run_dir} has no checkpoint at step {step}; available steps: "
                          f"{_short_list(steps)}")


def model_config_from_meta(meta: dict) -> GPTConfig:
    """The GPTConfig stored in a checkpoint's meta.json (`model_config`)."""
    cfg = meta.get("model_config")
    if not isinstance(cfg, dict):
        raise CheckpointError("checkpoint meta.json lacks `model_config`; it was not written by "
                              "`attnlife train` (load its state dict into a GPT yourself)")
    known = set(GPTConfig.__dataclass_fields__)
    try:
        config = GPTConfig(**{k: v for k, v in cfg.items() if k in known})
        sizes = [int(getattr(config, k)) for k in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd")]
    except (TypeError, ValueError, ZeroDivisionError) as err:
        raise CheckpointError(f"checkpoint meta.json has an invalid model_config ({err}); the "
                              f"checkpoint is damaged") from None
    if min(sizes) < 1:
        raise CheckpointError(f"checkpoint meta.json model_config has a size < 1 ({cfg}); the "
                              f"checkpoint is damaged")
    return config


def load_model(ckpt_dir: str | os.PathLike, device: str | torch.device = "cpu") -> GPT:
    """A GPT in eval mode with the weights of checkpoint `ckpt_dir`, on `device` (float32)."""
    meta = load_meta(ckpt_dir)
    model = GPT(model_config_from_meta(meta))
    state = load_state_dict(ckpt_dir)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"weights in {ckpt_dir} do not fit its model_config ({first}); "
                              f"the checkpoint is corrupt") from None
    return model.to(device).eval()


def _short_list(steps: list[int]) -> str:
    text = ", ".join(str(s) for s in steps[:12])
    return text + (", ..." if len(steps) > 12 else "")


def load_series_model(ref: CheckpointRef, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The checkpoint as a runnable model in eval mode: an attnlife GPT for 'run' and 'nanogpt'
    (vocab and context read from the embedding shapes), a transformers causal LM for 'hf'."""
    if ref.kind == "hf":
        from transformers import AutoModelForCausalLM

        hf_config(ref)
        # float32 whatever the stored dtype (transformers would keep fp16 / bf16 weights as they are)
        return AutoModelForCausalLM.from_pretrained(ref.path, attn_implementation="eager",
                                                    dtype=torch.float32).to(device).eval()
    get, keys = open_state(ref)
    state = {k.removeprefix("_orig_mod."): get(k) for k in keys}
    state.setdefault("lm_head.weight", state["transformer.wte.weight"])  # tied, saved once
    shape = {k: v for k, v in ref.config.items() if k in GPTConfig.__dataclass_fields__}
    shape["vocab_size"], _ = state["transformer.wte.weight"].shape
    shape["block_size"], _ = state["transformer.wpe.weight"].shape
    shape["bias"] = "transformer.ln_f.bias" in state
    model = GPT(GPTConfig(**shape))
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own}  # nanoGPT's causal-mask buffers attn.bias
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise SeriesSourceError(f"weights of {ref.path} do not fit a GPT of {shape} ({first})") from None
    return model.to(device).eval()
