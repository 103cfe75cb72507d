"""Checkpoint series: our run directories, nanoGPT `ckpt.pt` files, Hugging Face revisions.

One concept for every pass over a training history (the spectra sweep, the post-hoc attention
probe pass): enumerate a series as `CheckpointRef`s (plain and picklable: they cross process
boundaries) and open one as raw tensors (`open_state`: a lazy name -> tensor getter, safetensors
read with `safe_open`). `attnlife.series.models` turns a ref into a runnable model and
`attnlife.series.workers` splits the work between processes and ranks. New sources register in
`SOURCES` (kind -> opener of its weights).

Hugging Face revision rule (`--hf MODEL --revisions r1,r2`), first match wins per revision:
  1. MODEL is a directory with a subdirectory `r` holding config.json -> MODEL/r
  2. MODEL is a directory in the HF cache layout (refs/, snapshots/) -> snapshots/<refs/r>
  3. otherwise MODEL is a hub id: `huggingface_hub.snapshot_download(MODEL, revision=r)`, which
     uses the HF cache and downloads when online; offline (HF_HUB_OFFLINE=1) a revision not
     in the cache is a `SeriesSourceError` naming it.
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
from attnlife.store.layout import RunPaths, list_checkpoints
from attnlife.store.run_dir import Run

HF_WEIGHT_PATTERNS = ["config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin"]
Getter = Callable[[str], torch.Tensor]


class SeriesSourceError(AttnlifeError):
    """A checkpoint series cannot be found or read."""


@dataclass(frozen=True)
class CheckpointRef:
    """One checkpoint of a series: kind is 'run' (our safetensors dir), 'nanogpt', 'hf' (a local
    Hugging Face model directory) or 'hub' (a hub revision not fetched yet: path is empty, config
    holds repo and revision; `attnlife.series.hub.HubStore` turns it into an 'hf' ref)."""

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
    model_cfg = Run(paths.root).config.get("model", {})
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
        raise SeriesSourceError(f"nanoGPT checkpoint {path} does not exist; pass ckpt.pt files") from None
    except Exception as err:  # noqa: BLE001 - any unpickling failure is the same user problem
        raise SeriesSourceError(f"cannot read {path} as a nanoGPT ckpt.pt ({type(err).__name__}); "
                                f"expected torch.save({{'model': ..., 'model_args': ...}})") from None


def nanogpt_series(paths: list[str], model: str = "nanogpt") -> list[CheckpointRef]:
    """nanoGPT `ckpt.pt` files (dict with 'model', 'model_args', 'iter_num'), ascending by step."""
    refs = []
    for i, p in enumerate(paths):
        ckpt = _load_nanogpt(str(p))
        if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
            raise SeriesSourceError(f"{p} is not a nanoGPT checkpoint (needs 'model' and 'model_args')")
        step = int(ckpt.get("iter_num", _last_int(Path(p).stem) if _last_int(Path(p).stem) is not None else i))
        refs.append(CheckpointRef(model, step, "nanogpt", str(Path(p).resolve()), dict(ckpt["model_args"])))
    steps = [r.step for r in refs]
    if len(set(steps)) != len(steps):
        raise SeriesSourceError(f"nanoGPT checkpoints share steps {steps}; pass one file per iteration")
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
        found = sorted((d.name for d in root.iterdir() if (d / "config.json").is_file()),
                       key=lambda name: (_last_int(name) is None, _last_int(name) or 0, name))
        if revision in ("", "main") and found:
            shown = ",".join(found[:4]) + (",..." if len(found) > 4 else "")
            raise SeriesSourceError(f"{root} holds {len(found)} revision folders ({shown}) and no model of "
                                    f"its own; name them: --revisions {','.join(found) if len(found) <= 8 else shown}")
        raise SeriesSourceError(f"revision '{revision}' not found under {root}: expected {root}/{revision}/"
                                f"config.json or an HF cache refs/{revision}"
                                + (f"; it holds {', '.join(found[:6])}" if found else ""))
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, revision=revision, allow_patterns=HF_WEIGHT_PATTERNS))
    except Exception as err:  # noqa: BLE001 - offline miss, unknown repo, bad revision
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        why = "the hub is offline (HF_HUB_OFFLINE=1)" if offline else type(err).__name__
        raise SeriesSourceError(f"revision '{revision}' of {model} is not in the Hugging Face cache "
                                f"and could not be fetched ({why}); run once online or pass a local "
                                f"directory with one subdirectory per revision") from None


def hf_series(model: str, revisions: list[str]) -> list[CheckpointRef]:
    """One ref per revision (resolved to a local directory now), ascending by step."""
    revs = revisions or ["main"]
    refs = []
    for i, rev in enumerate(revs):
        local = _resolve_hf_revision(model, rev)
        step = _last_int(rev)
        # a local model directory is named by its folder (`..` names the parent; links kept)
        name = Path(os.path.abspath(model)).name if Path(model).is_dir() else model
        refs.append(CheckpointRef(name, step if step is not None else i, "hf", str(local),
                                  {"revision": rev}))
    return sorted(refs, key=lambda r: r.step)


def _safetensors_getter(files: list[Path]) -> tuple[Getter, set[str]]:
    from safetensors import SafetensorError, safe_open

    where: dict[str, Path] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as h:
                where.update({k: f for k in h.keys()})
        except (SafetensorError, OSError) as err:
            raise SeriesSourceError(f"cannot read {f} ({' '.join(str(err).split())[:120]}); the "
                                    f"checkpoint file is corrupt or truncated") from None

    def get(name: str) -> torch.Tensor:
        try:
            with safe_open(str(where[name]), framework="pt") as h:
                return upcast(h.get_tensor(name))
        except (SafetensorError, OSError) as err:
            raise SeriesSourceError(f"cannot read {name} from {where[name]} "
                                    f"({' '.join(str(err).split())[:120]}); the file is corrupt") from None

    return get, set(where)


def _hf_weights(directory: Path) -> tuple[Getter, set[str]]:
    files = sorted(directory.glob("*.safetensors"))
    if files:
        return _safetensors_getter(files)
    bins = sorted(directory.glob("pytorch_model*.bin"))
    if not bins:
        raise SeriesSourceError(f"no *.safetensors or pytorch_model*.bin in {directory}")
    state: dict[str, torch.Tensor] = {}
    for b in bins:
        state.update(torch.load(b, map_location="cpu", mmap=True, weights_only=True))
    return (lambda name: upcast(state[name])), set(state)


def upcast(t: torch.Tensor) -> torch.Tensor:
    """float16 / bfloat16 weights as float32 (exact), before any statistic: products of small
    fp16 weights underflow (early Pythia checkpoints); other dtypes unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _open_run(ref: CheckpointRef) -> tuple[Getter, set[str]]:
    path = Path(ref.path) / "model.safetensors"
    if not path.is_file():
        raise SeriesSourceError(f"checkpoint {ref.path} has no model.safetensors")
    return _safetensors_getter([path])


def _open_nanogpt(ref: CheckpointRef) -> tuple[Getter, set[str]]:
    state = _load_nanogpt(ref.path)["model"]
    return state.__getitem__, set(state)


def _open_hf(ref: CheckpointRef) -> tuple[Getter, set[str]]:
    if not (Path(ref.path) / "config.json").is_file():
        raise SeriesSourceError(f"no config.json in {ref.path}; not a Hugging Face model directory")
    return _hf_weights(Path(ref.path))


def _open_hub(ref: CheckpointRef) -> tuple[Getter, set[str]]:
    raise SeriesSourceError(f"revision '{ref.config.get('revision')}' of {ref.model} is not fetched yet; a "
                            f"sweep fetches hub revisions through attnlife.series.hub.HubStore.local(ref)")


# the checkpoint sources (the extension point): kind -> opener of one checkpoint's weights
# ('hub': a hub revision not fetched yet, see attnlife.series.hub)
SOURCES: dict[str, Callable[[CheckpointRef], tuple[Getter, set[str]]]] = {
    "run": _open_run, "nanogpt": _open_nanogpt, "hf": _open_hf, "hub": _open_hub}


def open_state(ref: CheckpointRef) -> tuple[Getter, set[str]]:
    """(name -> tensor getter, available names) of one checkpoint's weights, read lazily."""
    if ref.kind not in SOURCES:
        raise SeriesSourceError(f"unknown checkpoint kind '{ref.kind}'; known: {sorted(SOURCES)}")
    return SOURCES[ref.kind](ref)


def hf_config(ref: CheckpointRef) -> dict:
    """The config.json of a Hugging Face checkpoint as a dict."""
    path = Path(ref.path) / "config.json"
    if not path.is_file():
        raise SeriesSourceError(f"no config.json in {ref.path}; not a Hugging Face model directory")
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError) as err:
        raise SeriesSourceError(f"{path} is not readable JSON ({err}); the model directory is corrupt") from None
