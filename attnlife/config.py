"""Run configuration: dataclasses, presets (`cpu`, `paper`), TOML files and `section.key=value` overrides.

Precedence, lowest to highest: dataclass defaults < preset < TOML file < CLI overrides.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from attnlife.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: `tomli` (a dependency there) is the same parser
    import tomli as tomllib


# A field's help text and allowed range live in its metadata (`_field`): --help, `--set` checks and
# `field_reference` read them from there. range = (lowest, lowest allowed?, highest or None,
# highest allowed?).
Range = tuple[float, bool, Optional[float], bool]
AT_LEAST_1: Range = (1, True, None, False)
AT_LEAST_0: Range = (0, True, None, False)
UNIT_OPEN: Range = (0.0, True, 1.0, False)        # [0, 1)
FRACTION: Range = (0.0, False, 1.0, True)         # (0, 1]


def _field(default: Any, help: str, range: Optional[Range] = None) -> Any:  # noqa: A002
    """A dataclass field with its help text and allowed range in `metadata`."""
    return field(default=default, metadata={"help": help, "range": range})


@dataclass
class ModelConfig:
    """The GPT shape: n_layer blocks of n_head heads over n_embd dims, context block_size tokens.

    The one model-shape dataclass: `attnlife.model.gpt.GPTConfig` extends it with the vocabulary
    size (which comes from the dataset's meta.json).
    """

    n_layer: int = _field(4, "transformer blocks (L)", AT_LEAST_1)
    n_head: int = _field(4, "attention heads per block (H); must divide n_embd", AT_LEAST_1)
    n_embd: int = _field(128, "residual-stream width (D)", AT_LEAST_1)
    block_size: int = _field(64, "context length in tokens (T)", AT_LEAST_1)
    dropout: float = _field(0.0, "dropout probability, in [0, 1)", UNIT_OPEN)
    bias: bool = _field(True, "biases in Linear and LayerNorm layers (nanoGPT's train.py: false)")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DataConfig:
    """Which prepared dataset to train on: DATA_DIR/<dataset>/{train,val}.bin + meta.json."""

    dataset: str = _field("shakespeare_char", "prepared dataset name (DATA_DIR/<dataset>/)")
    data_dir: str = _field("data", "folder `attnlife prepare --out` wrote")


@dataclass
class TrainConfig:
    """Optimisation, evaluation and checkpoint cadence. Learning rates are per step."""

    batch_size: int = _field(12, "sequences per micro-batch", AT_LEAST_1)
    max_iters: int = _field(2000, "optimizer updates in total (the step budget; also --max-iters)", AT_LEAST_0)
    learning_rate: float = _field(1e-3, "peak learning rate after warm-up (also --lr)", (0.0, False, None, False))
    min_lr: float = _field(1e-4, "learning rate at and after lr_decay_iters", AT_LEAST_0)
    warmup_iters: int = _field(100, "updates of linear warm-up", AT_LEAST_0)
    lr_decay_iters: int = _field(2000, "update at which the cosine decay reaches min_lr", AT_LEAST_0)
    weight_decay: float = _field(0.1, "AdamW weight decay on matrices, >= 0", AT_LEAST_0)
    beta1: float = _field(0.9, "AdamW beta1, in [0, 1)", UNIT_OPEN)
    beta2: float = _field(0.99, "AdamW beta2, in [0, 1)", UNIT_OPEN)
    grad_clip: float = _field(1.0, "gradient-norm clip (0 = off)", AT_LEAST_0)
    gradient_accumulation_steps: int = _field(1, "micro-batches per update", AT_LEAST_1)
    eval_interval: int = _field(250, "evaluate every N updates (and at the end)", AT_LEAST_1)
    eval_iters: int = _field(20, "batches per evaluation and split", AT_LEAST_1)
    log_interval: int = _field(10, "progress-bar refresh every N updates", AT_LEAST_1)
    ckpt_log_max: int = _field(512, "log-spaced checkpoints 0, 1, 2, 4, ... up to this step", AT_LEAST_0)
    ckpt_every: int = _field(250, "then a checkpoint every N updates (and the last step)", AT_LEAST_0)
    ckpt_keep: int = _field(0, "keep at most N checkpoints (0 = all)", AT_LEAST_0)
    seed: int = _field(1337, "random seed, >= 0", AT_LEAST_0)
    device: str = _field("auto", "auto | cpu | cuda | cuda:N | mps")
    dtype: str = _field("auto", "auto | float32 | bfloat16 | float16")
    compile: bool = _field(False, "torch.compile the model")
    loss_spike_factor: float = _field(0.0, "stop when the loss exceeds this multiple of its running mean "
                                           "(0 = stop only on NaN/inf)", AT_LEAST_0)


@dataclass
class TrackConfig:
    """Attention tracking cadence (read by the tracker; the trainer ignores it)."""

    enabled: bool = _field(True, "track attention during training (--no-track disables)")
    every: int = _field(500, "track every N updates", AT_LEAST_1)
    batch_fraction: float = _field(0.1, "share of the batch the tracker reads, in (0, 1]", FRACTION)
    snapshot_every: int = _field(0, "attention snapshots every N updates (0 = at tracked checkpoints)",
                                 AT_LEAST_0)
    span_threshold: float = _field(0.01, "attention weight above which a key counts for the span, in [0, 1)",
                                   UNIT_OPEN)
    query_chunk: int = _field(256, "query rows per probability chunk", AT_LEAST_1)
    min_sequences: int = _field(8, "probe at least this many sequences (standard errors need n > 1)")
    at_checkpoints: bool = _field(True, "also track at every checkpoint step")
    light_every: int = _field(1, "light tier (entropy, mean distance, sink from the training forward) every "
                                 "N updates; 0 = off", AT_LEAST_0)
    light_fraction: float = _field(0.1, "share of the batch the light tier reads, in (0, 1]", FRACTION)
    sample_every: int = _field(0, "sample checkpoints at multiples of N updates for generation quality "
                                  "(split sample); 0 = off", AT_LEAST_0)
    sample_count: int = _field(8, "sequences sampled per checkpoint for generation quality", AT_LEAST_1)


ON_ALERT = ("warn", "checkpoint", "stop")


@dataclass
class HealthConfig:
    """Attention-health early warning: detector thresholds over the light tier's signals and
    what to do when one fires (`attnlife.track.health_rules` states the rules; the defaults were
    chosen by measurement, BENCHMARKS.md "Attention health"). Needs the light tier."""

    enabled: bool = _field(True, "watch the light tier for attention collapse, logit growth, sink "
                                 "takeover and dead heads (alert_* rows, console lines)")
    on_alert: str = _field("warn", "warn | checkpoint (write one at the first alert) | stop "
                                   "(checkpoint, then exit with code 3) (also --on-alert)")
    patience: int = _field(3, "observations in a row a condition must hold before it alerts", AT_LEAST_1)
    rearm_after: int = _field(25, "observations in a row a condition must be false before the same "
                                  "head can alert again", AT_LEAST_1)
    collapse_floor_bits: float = _field(0.5, "entropy collapse: a head's entropy at or below this "
                                             "(bits)", AT_LEAST_0)
    collapse_fall_bits: float = _field(2.0, "entropy collapse: or a fall of at least this many bits "
                                            "below its high of the last collapse_window steps",
                                       (0.0, False, None, False))
    collapse_window: int = _field(20, "steps the entropy fall is measured over", AT_LEAST_1)
    logit_ceiling_nats: float = _field(50.0, "logit growth: max-logit bound (max over rows of the "
                                             "logsumexp of attention logits) at or above this (nats)",
                                       (0.0, False, None, False))
    logit_rise_nats: float = _field(20.0, "logit growth: or a rise of at least this many nats within "
                                          "logit_window steps", (0.0, False, None, False))
    logit_window: int = _field(20, "steps the logit rise is measured over", AT_LEAST_1)
    sink_threshold: float = _field(0.5, "sink takeover: a layer's mean attention on token 0 at or "
                                        "above this", FRACTION)
    dead_uniform_fraction: float = _field(0.97, "dead head: entropy at least this share of uniform "
                                                "attention's ...", FRACTION)
    dead_after_steps: int = _field(1000, "... at or after this step", AT_LEAST_0)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunConfig:
    """Everything a training run needs; stored in run.json under `config`."""

    out_dir: str = _field("runs/demo", "run directory to create or resume")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    health: HealthConfig = field(default_factory=HealthConfig)

    def to_dict(self) -> dict:
        return asdict(self)


SECTIONS = ("model", "data", "train", "track", "health")

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
        if section not in SECTIONS:
            raise ConfigError(f"{origin}: unknown section {section!r}; use one of {list(SECTIONS)}")
        if not isinstance(body, Mapping):
            raise ConfigError(f"{origin}: {section} = {body!r} is a value, but {section} is a "
                              f"section; write it as a table: [{section}] followed by key = value lines")
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
    preset_max_iters = config.train.max_iters
    explicit: set[str] = set()
    if toml_path:
        path = Path(toml_path)
        table = read_toml(path)
        apply_section_values(config, table, str(path))
        explicit |= {f"{s}.{k}" for s, body in table.items() if isinstance(body, Mapping) for k in body}
    grouped: dict[str, dict[str, str]] = {}
    for text in overrides:
        section, key, value = parse_override(text)
        grouped.setdefault(section, {})[key] = value
    apply_section_values(config, grouped, "override")
    explicit |= {f"{s}.{k}" for s, body in grouped.items() for k in body}
    rescale_schedule(config.train, preset_max_iters, explicit)
    if dataset:
        config.data.dataset = dataset
    if out_dir:
        config.out_dir = out_dir
    validate_values(config)
    return config


def read_toml(path: Path) -> dict:
    """The tables of a TOML config file; ConfigError (one line) if missing or malformed."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing TOML file")
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text (byte {err.start}); save it as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML ({' '.join(str(err).split())}); fix the file") from None


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


# ---------------------------------------------------------------- help, ranges, TOML output
def _field_metadata(key: str) -> dict[str, Any]:
    """"section.key" -> that field's metadata value `key` (help or range), read from the dataclasses."""
    out = {"out_dir": RunConfig.__dataclass_fields__["out_dir"].metadata[key]}
    for section in SECTIONS:
        for f in fields(RunConfig.__dataclass_fields__[section].default_factory):
            out[f"{section}.{f.name}"] = f.metadata.get(key)
    return {name: value for name, value in out.items() if value is not None}


FIELD_HELP: dict[str, str] = _field_metadata("help")            # name -> help text
FIELD_RANGES: dict[str, Range] = _field_metadata("range")       # name -> allowed range


def iter_fields(config: RunConfig) -> Iterable[tuple[str, Any]]:
    """("section.key", value) for every field of `config`, `out_dir` first."""
    yield "out_dir", config.out_dir
    for section in SECTIONS:
        body = getattr(config, section)
        for f in fields(body):
            yield f"{section}.{f.name}", getattr(body, f.name)


def _range_text(low: float, low_ok: bool, high: Optional[float], high_ok: bool) -> str:
    if high is None:
        return f"must be {'>=' if low_ok else '>'} {low:g}"
    return f"must be in {'[' if low_ok else '('}{low:g}, {high:g}{']' if high_ok else ')'}"


def validate_values(config: RunConfig) -> None:
    """Raise ConfigError (one line) at the first non-finite or out-of-range value.

    Every float must be finite; ranges are FIELD_RANGES (e.g. beta2 in [0, 1), dropout in
    [0, 1), learning_rate > 0, sizes >= 1); n_embd must be divisible by n_head.
    """
    for name, value in iter_fields(config):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name} = {value} is not a finite number; set it with --set {name}=VALUE")
        if name not in FIELD_RANGES or isinstance(value, bool):
            continue
        low, low_ok, high, high_ok = FIELD_RANGES[name]
        too_low = value < low if low_ok else value <= low
        too_high = high is not None and (value > high if high_ok else value >= high)
        if too_low or too_high:
            hint = "N" if isinstance(value, int) else "VALUE"
            raise ConfigError(f"{name} = {value} {_range_text(low, low_ok, high, high_ok)}; "
                              f"set it with --set {name}={hint}")
    if config.health.on_alert not in ON_ALERT:
        raise ConfigError(f"health.on_alert = {config.health.on_alert!r} is not one of "
                          f"{', '.join(ON_ALERT)}; set it with --on-alert or --set health.on_alert=warn")
    if config.model.n_embd % config.model.n_head:
        raise ConfigError(f"model.n_embd = {config.model.n_embd} is not divisible by model.n_head = "
                          f"{config.model.n_head}; change one of them")


def rescale_schedule(train: TrainConfig, base_max_iters: int, explicit: set[str]) -> None:
    """Scale warm-up and decay with a changed step budget (nanoGPT sets lr_decay_iters = max_iters).

    When max_iters was set (TOML or override) to M instead of the preset's M0, the warm-up and
    decay lengths that were *not* set explicitly become round(value * M / M0), so the schedule
    keeps its shape: `--max-iters 500` on the cpu preset (2000 updates, 100 warm-up, decay 2000)
    gives 25 warm-up updates and decay to min_lr at 500.
    """
    if "train.max_iters" not in explicit or train.max_iters == base_max_iters or base_max_iters <= 0:
        return
    factor = train.max_iters / base_max_iters
    for key in ("warmup_iters", "lr_decay_iters"):
        if f"train.{key}" not in explicit:
            setattr(train, key, int(round(getattr(train, key) * factor)))


def config_to_toml(config: RunConfig) -> str:
    """The resolved config as TOML that `--config FILE` reads back to the same RunConfig."""
    import tomli_w

    return tomli_w.dumps(config.to_dict())


def field_reference(config: Optional[RunConfig] = None) -> str:
    """One line per field, `section.key = default  help`, grouped by section (for --help)."""
    config = config or build_config(preset="cpu")
    return "\n".join(f"{name} = {_toml_scalar(value)}  {FIELD_HELP.get(name, '')}".rstrip()
                     for name, value in iter_fields(config))


def _toml_scalar(value: Any) -> str:
    """A scalar as TOML writes it: true/false, quoted strings, numbers as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)
