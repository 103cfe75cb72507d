"""Run configuration: dataclasses, presets (`cpu`, `paper`), TOML files and `section.key=value` overrides.

Precedence, lowest to highest: dataclass defaults < preset < TOML file < CLI overrides.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from attnlife.errors import ConfigError


@dataclass
class ModelConfig:
    """GPT shape (vocab_size comes from the dataset's meta.json)."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = True


@dataclass
class DataConfig:
    """Which prepared dataset to train on: DATA_DIR/<dataset>/{train,val}.bin + meta.json."""

    dataset: str = "shakespeare_char"
    data_dir: str = "data"


@dataclass
class TrainConfig:
    """Optimisation, evaluation and checkpoint cadence. Learning rates are per step."""

    batch_size: int = 12
    max_iters: int = 2000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int = 2000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    gradient_accumulation_steps: int = 1
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 10
    ckpt_log_max: int = 512      # log-spaced checkpoints 0, 1, 2, 4, ... up to this step
    ckpt_every: int = 250        # then every N steps (and always the last step)
    ckpt_keep: int = 0           # keep at most N checkpoints (0 = all); log-spaced ones thin first
    seed: int = 1337
    device: str = "auto"         # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"          # auto (bf16 autocast where supported) | float32 | bfloat16 | float16
    compile: bool = False


@dataclass
class TrackConfig:
    """Attention tracking cadence (read by the tracker; the trainer ignores it)."""

    enabled: bool = True
    every: int = 500
    batch_fraction: float = 0.1
    snapshot_every: int = 0      # 0 = snapshot at tracked steps that are checkpoints
    span_threshold: float = 0.01
    query_chunk: int = 256


@dataclass
class RunConfig:
    """Everything a training run needs; stored in run.json under `config`."""

    out_dir: str = "runs/demo"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    track: TrackConfig = field(default_factory=TrackConfig)

    def to_dict(self) -> dict:
        return asdict(self)


SECTIONS = ("model", "data", "train", "track")

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # laptop/CI scale: 4 layers, 4 heads, 128 dims, block 64
    "cpu": {
        "model": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0),
        "train": dict(batch_size=12, max_iters=2000, lr_decay_iters=2000, learning_rate=1e-3,
                      eval_interval=250, eval_iters=20, ckpt_every=250),
    },
    # nanoGPT's shakespeare_char model: 6/6/384, block 256
    "paper": {
        "model": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2),
        "train": dict(batch_size=64, max_iters=5000, lr_decay_iters=5000, learning_rate=1e-3,
                      eval_interval=250, eval_iters=200, ckpt_every=250),
    },
}

# the paper preset uses a smaller batch and rate on the byte/word-level corpora
PAPER_LARGE_CORPUS = dict(batch_size=32, learning_rate=5e-4)


def preset_overrides(preset: str, dataset: str) -> dict[str, dict[str, Any]]:
    """Section -> {field: value} of a named preset, adjusted for `dataset`."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    out = {k: dict(v) for k, v in PRESETS[preset].items()}
    if preset == "paper" and dataset in ("enwik8", "text8"):
        out["train"].update(PAPER_LARGE_CORPUS)
    return out


def apply_section_values(config: RunConfig, values: Mapping[str, Any], origin: str) -> None:
    """Set config fields from {"section": {"key": value}} (or top-level "out_dir")."""
    for section, body in values.items():
        if section == "out_dir":
            config.out_dir = str(body)
            continue
        if section not in SECTIONS or not isinstance(body, Mapping):
            raise ConfigError(f"{origin}: unknown section {section!r}; use one of {list(SECTIONS)}")
        target = getattr(config, section)
        known = {f.name: f for f in fields(target)}
        for key, value in body.items():
            if key not in known:
                raise ConfigError(f"{origin}: unknown field {section}.{key}; known: {sorted(known)}")
            setattr(target, key, _coerce(value, known[key], f"{origin}: {section}.{key}"))


def parse_override(text: str) -> tuple[str, str, str]:
    """`section.key=value` -> (section, key, value-as-text)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"override {text!r} is not section.key=value (e.g. train.max_iters=100)")
    lhs, value = text.split("=", 1)
    section, key = lhs.split(".", 1)
    return section.strip(), key.strip(), value.strip()


def build_config(preset: Optional[str] = "cpu", dataset: Optional[str] = None,
                 toml_path: Optional[str | Path] = None, overrides: Iterable[str] = (),
                 out_dir: Optional[str] = None) -> RunConfig:
    """Assemble a RunConfig: defaults < preset < TOML file < `section.key=value` overrides."""
    config = RunConfig()
    if dataset:
        config.data.dataset = dataset
    if preset:
        apply_section_values(config, preset_overrides(preset, config.data.dataset), f"preset {preset}")
    if toml_path:
        path = Path(toml_path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing TOML file")
        try:
            apply_section_values(config, tomllib.loads(path.read_text()), str(path))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path} is not valid TOML ({err}); fix the file") from None
    grouped: dict[str, dict[str, str]] = {}
    for text in overrides:
        section, key, value = parse_override(text)
        grouped.setdefault(section, {})[key] = value
    apply_section_values(config, grouped, "override")
    if dataset:
        config.data.dataset = dataset
    if out_dir:
        config.out_dir = out_dir
    return config


def config_from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from its `to_dict()` form (as stored in run.json)."""
    config = RunConfig()
    apply_section_values(config, {k: v for k, v in data.items() if k in SECTIONS or k == "out_dir"},
                         "run.json")
    return config


def _coerce(value: Any, f: dataclasses.Field, origin: str) -> Any:
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "bool": bool,
                                                     "str": str}.get(str(f.type), str)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{origin} = {value!r} is not a valid {kind.__name__}") from None
