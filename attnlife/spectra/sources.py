"""Checkpoint series to analyse: our run directories, nanoGPT `ckpt.pt` files, HF revisions.

A series is a list of `CheckpointRef` (plain, picklable: it crosses process boundaries);
`open_weights(ref)` returns the architecture and a lazy tensor getter, so only the attention
weights are read from disk (safetensors are opened with `safe_open`).

Hugging Face revision rule (`--hf MODEL --revisions r1,r2`), first match wins per revision:
  1. MODEL is a directory with a subdirectory `r` holding config.json -> MODEL/r
  2. MODEL is a directory in the HF cache layout (refs/, snapshots/) -> snapshots/<refs/r>
  3. otherwise MODEL is a hub id: `huggingface_hub.snapshot_download(MODEL, revision=r)`, which
     uses the HF cache and downloads when online; offline (HF_HUB_OFFLINE=1) a revision not
     in the cache is a `SpectraSourceError` naming it.
The step of a revision is the last integer in its name (`step1000` -> 1000), else its position.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from attnlife.errors import AttnlifeError, RunDirError
from attnlife.spectra.layouts import ArchSpec, spec_from_gpt_config, spec_from_hf_config
from attnlife.store.run_dir import RunPaths, list_checkpoints

HF_WEIGHT_PATTERNS = ["config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin"]


class SpectraSourceError(AttnlifeError):
    """A checkpoint series cannot be found or read."""


@dataclass(frozen=True)
class CheckpointRef:
    """One checkpoint of a series: kind is 'run' (our safetensors dir), 'nanogpt' or 'hf'."""

    model: str
    step: int
    kind: str
    path: str
    config: dict = field(default_factory=dict)


def _last_int(text: str) -> int | None:
    found = re.findall(r"\d+", text)
    return int(found[-1]) if found else None


def run_series(run_dir: str | os.PathLike, model: str | None = None) -> list[CheckpointRef]:
    """The complete checkpoints of one of our run directories, ascending by step."""
    paths = RunPaths(Path(run_dir))
    if not paths.root.is_dir():
        raise RunDirError(f"run directory {paths.root} does not exist; pass the --out directory of a run")
    cfg = json.loads(paths.run_json.read_text()).get("config", {}) if paths.run_json.is_file() else {}
    model_cfg = cfg.get("model", {})
    if not model_cfg:
        raise RunDirError(f"{paths.run_json} has no config.model (n_layer, n_head, n_embd); "
                          f"is {paths.root} an attnlife run directory?")
    found = list_checkpoints(paths.root)
    if not found:
        raise RunDirError(f"no complete checkpoints under {paths.checkpoints}; train with "
                          f"checkpoints enabled first")
    name = model or paths.root.resolve().name
    return [CheckpointRef(name, step, "run", str(d), dict(model_cfg)) for step, d in found]


def _load_nanogpt(path: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except FileNotFoundError:
        raise SpectraSourceError(f"nanoGPT checkpoint {path} does not exist; pass ckpt.pt files") from None
    except Exception as err:  # noqa: BLE001 - any unpickling failure is the same user problem
        raise SpectraSourceError(f"cannot read {path} as a nanoGPT ckpt.pt ({type(err).__name__}); "
                                 f"expected torch.save({{'model': ..., 'model_args': ...}})") from None


def nanogpt_series(paths: list[str], model: str = "nanogpt") -> list[CheckpointRef]:
    """nanoGPT `ckpt.pt` files (dict with 'model', 'model_args', 'iter_num'), ascending by step."""
    refs = []
    for i, p in enumerate(paths):
        ckpt = _load_nanogpt(str(p))
        if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
            raise SpectraSourceError(f"{p} is not a nanoGPT checkpoint (needs 'model' and 'model_args')")
        step = int(ckpt.get("iter_num", _last_int(Path(p).stem) if _last_int(Path(p).stem) is not None else i))
        refs.append(CheckpointRef(model, step, "nanogpt", str(Path(p).resolve()), dict(ckpt["model_args"])))
    steps = [r.step for r in refs]
    if len(set(steps)) != len(steps):
        raise SpectraSourceError(f"nanoGPT checkpoints share steps {steps}; pass one file per iteration")
    return sorted(refs, key=lambda r: r.step)


def _resolve_hf_revision(model: str, revision: str) -> Path:
    root = Path(model)
    if root.is_dir():
        if (root / revision / "config.json").is_file():
            return root / revision
        ref = root / "refs" / revision
        if ref.is_file() and (root / "snapshots" / ref.read_text().strip()).is_dir():
            return root / "snapshots" / ref.read_text().strip()
        if revision in ("", "main") and (root / "config.json").is_file():
            return root
        raise SpectraSourceError(f"revision '{revision}' not found under {root}: expected {root}/{revision}/"
                                 f"config.json or an HF cache refs/{revision}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, revision=revision, allow_patterns=HF_WEIGHT_PATTERNS))
    except Exception as err:  # noqa: BLE001 - offline miss, unknown repo, bad revision
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        why = "the hub is offline (HF_HUB_OFFLINE=1)" if offline else type(err).__name__
        raise SpectraSourceError(f"revision '{revision}' of {model} is not in the Hugging Face cache "
                                 f"and could not be fetched ({why}); run once online or pass a local "
                                 f"directory with one subdirectory per revision") from None


def hf_series(model: str, revisions: list[str]) -> list[CheckpointRef]:
    """One ref per revision (resolved to a local directory now), ascending by step."""
    revs = revisions or ["main"]
    refs = []
    for i, rev in enumerate(revs):
        local = _resolve_hf_revision(model, rev)
        step = _last_int(rev)
        refs.append(CheckpointRef(model.rstrip("/").split("/")[-1] if Path(model).is_dir() else model,
                                  step if step is not None else i, "hf", str(local), {"revision": rev}))
    return sorted(refs, key=lambda r: r.step)


def _safetensors_getter(files: list[Path]) -> tuple[Callable[[str], torch.Tensor], set[str]]:
    from safetensors import safe_open

    where: dict[str, Path] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            where.update({k: f for k in h.keys()})

    def get(name: str) -> torch.Tensor:
        with safe_open(str(where[name]), framework="pt") as h:
            return h.get_tensor(name)

    return get, set(where)


def _hf_weights(directory: Path) -> tuple[Callable[[str], torch.Tensor], set[str]]:
    files = sorted(directory.glob("*.safetensors"))
    if files:
        return _safetensors_getter(files)
    bins = sorted(directory.glob("pytorch_model*.bin"))
    if not bins:
        raise SpectraSourceError(f"no *.safetensors or pytorch_model*.bin in {directory}")
    state: dict[str, torch.Tensor] = {}
    for b in bins:
        state.update(torch.load(b, map_location="cpu", mmap=True, weights_only=True))
    return state.__getitem__, set(state)


def open_weights(ref: CheckpointRef) -> tuple[ArchSpec, Callable[[str], torch.Tensor], set[str]]:
    """(architecture, name -> tensor getter, available names) of one checkpoint."""
    if ref.kind == "run":
        path = Path(ref.path) / "model.safetensors"
        if not path.is_file():
            raise SpectraSourceError(f"checkpoint {ref.path} has no model.safetensors")
        get, keys = _safetensors_getter([path])
        return spec_from_gpt_config(ref.config, "attnlife"), get, keys
    if ref.kind == "nanogpt":
        state = _load_nanogpt(ref.path)["model"]
        return spec_from_gpt_config(ref.config, "nanogpt"), state.__getitem__, set(state)
    if ref.kind == "hf":
        cfg_path = Path(ref.path) / "config.json"
        if not cfg_path.is_file():
            raise SpectraSourceError(f"no config.json in {ref.path}; not a Hugging Face model directory")
        spec = spec_from_hf_config(json.loads(cfg_path.read_text()))
        get, keys = _hf_weights(Path(ref.path))
        return spec, get, keys
    raise SpectraSourceError(f"unknown checkpoint kind '{ref.kind}'")
