"""The post-hoc probe pass: every checkpoint of a series measured on one fixed probe set.

    run_probe_pass(refs, out_dir, tokens, options)     # `attnlife track RUN | --nanogpt | --hf`

Probe set (built once, stored in OUT/probe/probe_set.safetensors with its source and options):
  ids       [N, T]   N = options.sequences windows of held-out text at evenly spaced offsets
                     (T = options.seq_len, at most the model context; 0 = min(model context, 256))
  repeated  [R, 2h]  R = options.repeat_sequences random token sequences of h tokens, repeated
                     (h = options.repeat_half, 0 = min(T // 2, 128)), seeded by options.seed
Per checkpoint (split `probe` of OUT's metric table, `stderr` = standard error across sequences):
  on `ids`:       every attention metric of the tracker (per head, per layer, cross-layer), the
                  type scores prev_token_score, local_score, self_score per head (the sink
                  score is the attention metric sink_mass),
                  probe_loss_nats (model level, next-token loss on the probe text)
  on `repeated`:  induction_score per head; induction_loss_drop_nats (model level: mean loss on
                  the first half minus the second half)
  model level:    sink_head_share (share of heads with sink_mass > 0.3)
Resumable: OUT/probe/done/<model>/step_XXXXXXX.json marks a checkpoint done for an options key
(options + probe set digest); a rerun skips those. Parallel: `workers` processes, and rank r of W
(torchrun's RANK / WORLD_SIZE) takes checkpoints r, r+W, ... (`attnlife.series.workers`).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from attnlife.errors import AttnlifeError, CheckpointError
from attnlife.series.models import load_series_model
from attnlife.series.refs import CheckpointRef, SeriesSourceError, hf_config
from attnlife.series.executors import CheckpointTask, LocalExecutor, evict_leftovers, map_checkpoints
from attnlife.series.workers import rank_share
from attnlife.store.atomic import atomic_path, write_json_atomic
from attnlife.store.damage import first_line, warn_damaged
from attnlife.store.metrics_table import MetricRow, MetricWriter
from attnlife.store.layout import checkpoint_name, model_dirname
from attnlife.store.run_dir import Run
from attnlife.track import head_types as HT
from attnlife.track.accumulate import AttentionAccumulator, stderr_of_mean
from attnlife.track.capture import capture_attention
from attnlife.track.metrics import DEFAULT_METRICS

PROBE_SPLIT = "probe"
PROBE_SET_FILE = "probe_set.safetensors"


class ProbeSetError(AttnlifeError):
    """The probe text is missing, unreadable or too short for the model's context."""


@dataclass(frozen=True)
class ProbeOptions:
    """What the probe pass measures (see module doc); part of every done marker's key."""

    sequences: int = 16
    seq_len: int = 0
    repeat_sequences: int = 16
    repeat_half: int = 0
    seed: int = 0
    span_threshold: float = 0.01
    query_chunk: int = 256


@dataclass(frozen=True)
class ProbeSummary:
    """Checkpoints measured now and skipped as already done."""

    measured: int
    skipped: int
    failed: tuple[str, ...] = ()   # one line per checkpoint that could not be read (skipped)


def probe_dir(out_dir: str | os.PathLike) -> Path:
    """OUT/probe: the probe set and the done markers."""
    return Path(out_dir) / "probe"


def model_shape(model: Any) -> tuple[int, int]:
    """(vocab_size, context length in tokens) of an attnlife GPT or a transformers causal LM."""
    cfg = model.config
    if hasattr(cfg, "block_size"):
        return int(cfg.vocab_size), int(cfg.block_size)
    ctx = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or 2048
    return int(model.get_input_embeddings().num_embeddings), int(ctx)


def probe_window(options: ProbeOptions, context: int) -> int:
    """T, the tokens per probe window: options.seq_len, 0 = min(context, 256); ProbeSetError when
    seq_len is longer than the model's context (the model cannot read such a window)."""
    if options.seq_len > context:
        raise ProbeSetError(f"--seq-len {options.seq_len} is longer than the model's context of {context} "
                            f"tokens; pass --seq-len {context} or less (0 = min(context, 256))")
    return options.seq_len or min(context, 256)


def make_probe_set(tokens: np.ndarray, vocab_size: int, context: int,
                   options: ProbeOptions, source: str = "") -> dict[str, torch.Tensor]:
    """{"ids": [N, T], "repeated": [R, 2h]} int64 (see module doc) from 1-D token ids (`source`
    describes them for the error messages)."""
    T = probe_window(options, context)
    if len(tokens) < T + 1:
        raise ProbeSetError(f"probe text has {len(tokens)} tokens, fewer than one window of {T}; "
                            f"pass a longer text or a smaller --seq-len")
    starts = np.unique(np.linspace(0, len(tokens) - T - 1, options.sequences).round().astype(np.int64))
    ids = torch.from_numpy(np.stack([np.asarray(tokens[s:s + T], dtype=np.int64) for s in starts]))
    if int(ids.min()) < 0:
        raise ProbeSetError(f"probe text holds a negative token id ({int(ids.min())}); token ids "
                            f"are 0 .. vocab_size - 1")
    if int(ids.max()) >= vocab_size:
        why = "the ids were made for another model"
        if source.startswith("tokens:") and source.endswith(".bin"):
            why += f", or the file holds another dtype than it was read as ({token_file_dtype(source[7:])[1]})"
        raise ProbeSetError(f"probe tokens hold id {int(ids.max())} >= the model's vocab_size {vocab_size}; {why}")
    half = max(2, min(options.repeat_half or min(T // 2, 128), context // 2))
    rep = HT.repeated_random_tokens(options.repeat_sequences, half, vocab_size, seed=options.seed)
    return {"ids": ids, "repeated": rep}


def load_or_make_probe_set(out_dir: str | os.PathLike, tokens: Optional[np.ndarray], vocab_size: int,
                           context: int, options: ProbeOptions, source: str) -> dict[str, torch.Tensor]:
    """The stored probe set when it was made with these options and source for a model of this
    vocab_size and context, else a new one (written atomically to OUT/probe/probe_set.safetensors)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    probe_window(options, context)   # a stored set is no excuse for a window the model cannot read
    path = probe_dir(out_dir) / PROBE_SET_FILE
    # the set is a function of all four: one made for another model's shape is not this one
    record = json.dumps({"options": asdict(options), "source": source, "vocab_size": vocab_size, "context": context},
                        sort_keys=True)
    if path.is_file():
        try:
            with safe_open(str(path), framework="pt") as h:
                if (h.metadata() or {}).get("record") == record:
                    stored = {k: h.get_tensor(k) for k in h.keys()}
                    if set(stored) == {"ids", "repeated"}:
                        return stored
                    raise ValueError(f"it holds {sorted(stored)}, not ids and repeated")
        except Exception as err:  # noqa: BLE001 - safetensors raises its own (Rust) error types
            if isinstance(err, MemoryError):
                raise
            fix = ("rebuilt from its source" if tokens is not None else
                   "pass --text or --tokens to rebuild it")
            warn_damaged(path, first_line(err), fix)
    if tokens is None:
        raise ProbeSetError("no probe text: pass --text FILE or --tokens FILE (a run directory uses "
                            "its dataset's val split)")
    probe = make_probe_set(tokens, vocab_size, context, options, source)
    with atomic_path(path) as tmp:
        save_file(probe, str(tmp), metadata={"record": record})
    return probe


def _logits(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out.logits


def _token_loss(model: Any, ids: torch.Tensor, sink: AttentionAccumulator, chunk: int) -> torch.Tensor:
    """Next-token loss [B, T-1] nats of ids [B, T], feeding attention to `sink` on the way."""
    with torch.no_grad(), capture_attention(model, sink, chunk) as cap:
        logits = _logits(cap.forward(ids)).float()
    return torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")


def measure_checkpoint(model: Any, probe: dict[str, torch.Tensor], options: ProbeOptions) -> list[MetricRow]:
    """Every probe-pass row of one model (see module doc); model in eval mode."""
    acc = AttentionAccumulator(DEFAULT_METRICS + HT.TYPE_SCORES, options.span_threshold)
    loss = _token_loss(model, probe["ids"], acc, options.query_chunk)           # [N, T-1]
    rows = acc.results()
    per_seq = loss.double().mean(1)
    rows.append(MetricRow(-1, -1, "probe_loss_nats", float(per_seq.mean()), stderr=float(stderr_of_mean(per_seq, 0))))
    ind = AttentionAccumulator(("induction_score",), options.span_threshold, xlayer_rows=1)
    rep_loss = _token_loss(model, probe["repeated"], ind, options.query_chunk)  # [R, 2h-1]
    rows += [r for r in ind.results() if r.metric == "induction_score"]
    drops = torch.tensor([HT.repeated_halves_loss_drop(rep_loss[i:i + 1])[2] for i in range(len(rep_loss))])
    rows.append(MetricRow(-1, -1, "induction_loss_drop_nats", HT.repeated_halves_loss_drop(rep_loss)[2],
                          stderr=float(stderr_of_mean(drops.double(), 0))))
    sinks = torch.tensor([r.value for r in rows if r.metric == "sink_mass" and r.head_index >= 0])
    rows.append(MetricRow(-1, -1, "sink_head_share", HT.sink_head_share(sinks)))
    return rows


def done_path(out_dir: str | os.PathLike, model: str, step: int) -> Path:
    """OUT/probe/done/<model>/step_XXXXXXX.json, written after the checkpoint's rows."""
    return probe_dir(out_dir) / "done" / model_dirname(model) / f"{checkpoint_name(step)}.json"


def options_key(options: ProbeOptions, probe: dict[str, torch.Tensor]) -> str:
    """Options plus a digest of the probe set: what a done marker must match to be skipped."""
    digest = hashlib.sha256(b"".join(probe[k].numpy().tobytes() for k in sorted(probe))).hexdigest()[:16]
    return json.dumps({"options": asdict(options), "probe": digest}, sort_keys=True)


def is_done(out_dir: str | os.PathLike, ref: CheckpointRef, key: str) -> bool:
    """Whether this checkpoint was measured with this options key."""
    path = done_path(out_dir, ref.model, ref.step)
    try:
        return path.is_file() and json.loads(path.read_text()).get("key") == key
    except (ValueError, OSError):
        return False


def first_readable_model(refs: list[CheckpointRef]) -> Any:
    """The model of the first checkpoint of `refs` that can be read (the pass itself warns about
    the unreadable ones it skips); ProbeSetError naming the first failure when none can."""
    from safetensors import SafetensorError

    failures = []
    for ref in refs:
        try:
            return load_series_model(ref)
        except (CheckpointError, SeriesSourceError, SafetensorError, OSError) as err:
            failures.append(f"{ref.model} step {ref.step}: {' '.join(str(err).split())}")
    first = f" (first: {failures[0]})" if failures else ""
    raise ProbeSetError(f"none of the {len(refs)} checkpoints could be read{first}")


def _measure_or_skip(ref: CheckpointRef, out_dir: str, probe: dict, options: ProbeOptions,
                     key: str) -> Optional[str]:
    """`_measure_and_write`, or the one-line reason a checkpoint that cannot be read was skipped
    (a failed write still stops the pass)."""
    from safetensors import SafetensorError

    try:
        model = load_series_model(ref)
    except (CheckpointError, SeriesSourceError, SafetensorError, OSError) as err:
        return f"skipped {ref.model} step {ref.step}: {' '.join(str(err).split())}"
    _measure_and_write(ref, out_dir, probe, options, key, model)
    return None


def _measure_and_write(ref: CheckpointRef, out_dir: str, probe: dict, options: ProbeOptions, key: str,
                       model: Any) -> int:
    """Measure the loaded `model` of `ref`, write its rows, then its done marker (key, row count)."""
    rows = measure_checkpoint(model, probe, options)
    writer = MetricWriter(out_dir)
    writer.log_rows(ref.step, rows, split=PROBE_SPLIT)
    writer.close()
    write_json_atomic(done_path(out_dir, ref.model, ref.step), {"key": key, "rows": len(rows)})
    return ref.step


@dataclass(frozen=True)
class ProbePass:
    """The probe pass of one checkpoint as a pass of a series sweep (`series.executors`):
    picklable; `done(ref)` checks the done marker for this options key, calling it measures and
    writes one checkpoint and returns None, or the line saying why it was skipped (unreadable)."""

    out: str
    probe: dict
    options: ProbeOptions
    key: str

    def done(self, ref: CheckpointRef) -> bool:
        return is_done(self.out, ref, self.key)

    def __call__(self, ref: CheckpointRef) -> Optional[str]:
        return _measure_or_skip(ref, self.out, self.probe, self.options, self.key)


def run_probe_pass(refs: list[CheckpointRef], out_dir: str | os.PathLike, probe: dict[str, torch.Tensor],
                   options: ProbeOptions, workers: int = 1, rank: int = 0, world_size: int = 1,
                   progress: bool = True, force: bool = False, executor=None,  # noqa: ANN001
                   store: Optional[tuple] = None) -> ProbeSummary:
    """Measure this rank's not-yet-done checkpoints of `refs` on `probe`; rows go to OUT/metrics.
    One task per checkpoint on `executor` (default: `workers` local processes); hub revisions are
    fetched and evicted by the hub store `store` (see `attnlife.spectra.sweep.run_sweep`)."""
    from tqdm.auto import tqdm

    probe_pass = ProbePass(str(out_dir), probe, options, options_key(options, probe))
    mine = rank_share(refs, rank, world_size)
    todo = [r for r in mine if force or not probe_pass.done(r)]
    evict_leftovers(store, refs, mine, todo)
    tasks = [CheckpointTask(r, (probe_pass,), store if r.kind == "hub" else None) for r in todo]
    with tqdm(total=len(todo), disable=not progress, desc="probe", unit="ckpt") as bar:
        results = map_checkpoints(tasks, executor or LocalExecutor(workers), on_done=lambda _: bar.update(1))
        failed = [line for (line,) in results if line]
        for line in failed:   # like `spectra`: an unreadable checkpoint is skipped, the pass goes on
            bar.write(f"warning: {line}", file=sys.stderr)
    return ProbeSummary(measured=len(todo) - len(failed), skipped=len(mine) - len(todo),
                        failed=tuple(failed))


def series_shape(ref: CheckpointRef) -> tuple[int, int]:
    """(vocab_size, context) of a checkpoint: from config.json for Hugging Face models (nothing
    loaded), else from the loaded model (`model_shape`)."""
    if ref.kind == "hf":
        cfg = hf_config(ref)
        vocab = cfg.get("vocab_size")
        context = cfg.get("n_positions") or cfg.get("max_position_embeddings") or 2048
        if vocab:
            return int(vocab), int(context)
    return model_shape(load_series_model(ref))


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "spiece.model",
                   "vocab.txt")
BIN_DTYPES = ("uint8", "uint16", "uint32", "int32", "int64")


def token_file_dtype(path: str | os.PathLike) -> tuple[str, str]:
    """(dtype, where it came from) of a .bin of token ids: the `dtype` of the meta.json beside it
    (what `attnlife prepare` writes: uint8 for small vocabularies), else nanoGPT's uint16."""
    meta = Path(path).with_name("meta.json")
    if meta.is_file():
        try:
            dtype = json.loads(meta.read_text(encoding="utf-8")).get("dtype")
        except (ValueError, UnicodeDecodeError, AttributeError):
            dtype = None
        if dtype in BIN_DTYPES:
            return dtype, f"dtype {dtype} from {meta}"
    return "uint16", "uint16 (nanoGPT's default; no meta.json with a dtype beside it)"


def read_token_file(path: str | os.PathLike) -> np.ndarray:
    """1-D token ids from .npy, or a .bin of ids in the dtype `token_file_dtype` finds."""
    p = Path(path)
    if not p.is_file():
        raise ProbeSetError(f"token file {p} does not exist; pass a .npy or nanoGPT .bin (uint16) of ids")
    if p.suffix == ".npy":
        try:
            ids = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:   # a zip's magic: read as .npz
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise ProbeSetError(f"cannot read token ids from {p} ({reason}); save them with "
                                f"np.save(path, ids.astype(np.int64))") from None
        if not isinstance(ids, np.ndarray):                 # an .npz archive: np.load's NpzFile
            names = ", ".join(ids.files)
            ids.close()
            raise ProbeSetError(f"{p} is an .npz archive ({names}), not one array of token ids; save them with "
                                f"np.save(path, ids.astype(np.int64))")
        ids = ids.reshape(-1)
        if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
            raise ProbeSetError(f"{p} holds {ids.dtype} values, not integer token ids; save them with "
                                f"np.save(path, ids.astype(np.int64))")
        return ids
    if p.suffix == ".bin":
        dtype, how = token_file_dtype(p)
        if p.stat().st_size % np.dtype(dtype).itemsize:
            raise ProbeSetError(f"{p} has {p.stat().st_size} bytes, not a whole number of {dtype} ids "
                                f"(read as {how}); put the meta.json of its dataset beside it")
        return np.memmap(p, dtype=dtype, mode="r")
    raise ProbeSetError(f"{p}: token files must be .npy or nanoGPT .bin (uint16); for text use --text")


def tokenize_text(path: str | os.PathLike, tokenizer_dir: str) -> np.ndarray:
    """Token ids of a text file under the Hugging Face tokenizer saved in `tokenizer_dir`."""
    if not Path(path).is_file():
        raise ProbeSetError(f"text file {path} does not exist")
    if not any((Path(tokenizer_dir) / name).is_file() for name in TOKENIZER_FILES):
        raise ProbeSetError(f"{tokenizer_dir} holds no tokenizer ({', '.join(TOKENIZER_FILES[:3])}, ...), so "
                            f"--text cannot be tokenized; copy the model's tokenizer files there or pass "
                            f"--tokens FILE (.npy of token ids)")
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    except (OSError, ValueError) as err:
        raise ProbeSetError(f"no tokenizer in {tokenizer_dir} ({type(err).__name__}); pass --tokens FILE "
                            f"of token ids instead of --text") from None
    text = Path(path).read_text(encoding="utf-8")
    ids = np.asarray(tok(text)["input_ids"], dtype=np.int64)
    if len(ids) == 0 and text.strip():
        raise ProbeSetError(f"the tokenizer in {tokenizer_dir} turned {len(text):,} characters of {path} into "
                            f"no tokens; it is not this model's tokenizer: pass --tokens FILE instead")
    return ids


def run_val_tokens(run_dir: str | os.PathLike) -> tuple[np.ndarray, str]:
    """The val split of a run's prepared dataset (from run.json config.data) and its description."""
    from attnlife.data import load_prepared

    data = Run(run_dir).config.get("data", {})
    if not data.get("data_dir") or not data.get("dataset"):
        raise ProbeSetError(f"{run_dir}/run.json names no dataset (config.data); pass --tokens or --text")
    prepared = load_prepared(data["data_dir"], data["dataset"])
    return prepared.splits["val"], f"{data['dataset']}:val"


__all__ = ["PROBE_SPLIT", "ProbeOptions", "ProbeSetError", "ProbeSummary", "load_or_make_probe_set",
           "make_probe_set", "measure_checkpoint", "probe_window", "model_shape", "run_probe_pass", "run_val_tokens",
           "ProbePass", "series_shape",
           "read_token_file", "tokenize_text"]
