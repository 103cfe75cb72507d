"""Light attention statistics for Hugging Face models while they run SDPA (no switch to eager).

    from attnlife.track.hf_light import HFLightStats, HFLightCallback
    stats = HFLightStats(model, batch_fraction=0.1, run_dir="runs/hf")   # model runs "attnlife_sdpa"
    with stats.step(step):                    # any loop: the forward(s) inside are read
        loss = model(input_ids=ids, labels=ids).loss
    trainer = Trainer(..., callbacks=[HFLightCallback(stats)])          # or with the HF Trainer
    stats.close()                             # flush; the model gets its attention implementation back

`register_light_attention()` registers the attention function `attnlife_sdpa` in transformers'
`AttentionInterface` (and the SDPA mask builder under the same name in `AttentionMaskInterface`,
so padding masks are built exactly as for `sdpa`). The function calls transformers' own
`sdpa_attention_forward` (same kernel, same output) and, when the module is armed, also hands the
first n = ceil(batch_fraction * B) sequences' q [n, H, T, K] and k [n, Hkv, T, K] (after rotary,
before `repeat_kv`) to `attnlife.track.fused_stats.fused_row_stats` with the module's `scaling`
and mask. Works for every model whose attention goes through `ALL_ATTENTION_FUNCTIONS`: GPT-2,
GPT-NeoX/Pythia and Llama-family grouped-query attention are tested against eager
`output_attentions` patterns. TransformerLens models keep the hook path (`capture_attention`).

Rows are the light tier's (`attnlife.track.light_tracker`): `light_entropy_bits`,
`light_mean_distance_tokens`, `light_sink_mass` (rows i >= 1), `light_lse_max_nats` per head with
stderr across the n sequences, plus `light_ms`. Row means include every query row, so pass unpadded batches (padded
query rows would count as rows). Steps: `HFLightCallback` arms at `on_step_begin` with
`state.global_step` (= updates done, the weights the forward sees) and logs at `on_step_end`.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Any, Iterator, Optional

import torch
from transformers import TrainerCallback

from attnlife.store.metrics_table import MetricRow, MetricWriter
from attnlife.track.capture import hf_attention_modules
from attnlife.track.fused_stats import fused_row_stats, fused_sequence_means
from attnlife.track.light_tracker import LightEvents, LightTrackingError, light_rows

ATTN_NAME = "attnlife_sdpa"
_ARMED = "_attnlife_light"   # attribute set on an armed attention module: (stats, layer index)


def light_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                         value: torch.Tensor, attention_mask: Optional[torch.Tensor],
                         dropout: float = 0.0, scaling: Optional[float] = None,
                         **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention (q [B, H, Tq, K], k/v [B, Hkv, Tk, K]) plus light statistics
    of the armed module's first sequences; returns exactly what `sdpa_attention_forward` returns."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    out = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                 scaling=scaling, **kwargs)
    armed = getattr(module, _ARMED, None)
    if armed is not None:
        armed[0].observe(armed[1], query, key, attention_mask, scaling)
    return out


def register_light_attention() -> str:
    """Register `attnlife_sdpa` with transformers' attention and mask interfaces; returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_NAME, light_sdpa_attention)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)
    return ATTN_NAME


class HFLightStats(LightEvents):
    """Arms a HF causal LM's attention modules and logs light rows per armed step."""

    def __init__(self, model: Any, batch_fraction: float = 0.1, every: int = 1,
                 run_dir: Optional[str | os.PathLike] = None, writer: Optional[MetricWriter] = None,
                 backend: str = "auto", training_only: bool = False) -> None:
        own = MetricWriter(run_dir) if writer is None and run_dir is not None else None
        super().__init__(every, batch_fraction, writer or own, (), backend, training_only)
        self._own_writer = own is not None
        self.model, self.modules = model, hf_attention_modules(model)
        self._previous = getattr(model.config, "_attn_implementation", None)
        model.set_attn_implementation(register_light_attention())
        if model.config._attn_implementation != ATTN_NAME:
            raise LightTrackingError(f"{type(model).__name__} cannot switch to attention "
                                     f"{ATTN_NAME!r}; it does not use transformers' AttentionInterface")
        self._means: dict[int, dict[str, torch.Tensor]] = {}
        self._seq_len = 0

    def observe(self, layer: int, query: torch.Tensor, key: torch.Tensor,
                mask: Optional[torch.Tensor], scaling: Optional[float]) -> None:
        """Statistics of one layer's first n sequences (first forward per armed step only)."""
        if layer in self._means or not self.reads_now():
            return
        t0 = time.perf_counter()
        n = max(1, math.ceil(self.batch_fraction * query.size(0)))
        if mask is not None and mask.dim() == 4 and mask.size(0) == query.size(0):
            mask = mask[:n]
        q, k = query[:n], key[:n]
        self._seq_len = int(key.size(2))
        with torch.no_grad():
            if mask is None and q.size(2) == k.size(2):   # plain causal: the lighter means path
                self._means[layer] = fused_sequence_means(q, k, scaling, backend=self.backend)
            else:
                mask = None if mask is None else mask.detach()
                self._means[layer] = fused_row_stats(q, k, scaling, attn_mask=mask,
                                                     backend=self.backend).sequence_means()
        self._spent_s += time.perf_counter() - t0

    def arm(self, step: int) -> bool:
        """Read the next forward(s) if `step` is due (step % every == 0); returns whether armed."""
        if step % self.every != 0:
            return False
        self.disarm()
        self._step, self._means, self._spent_s = int(step), {}, 0.0
        for layer, module in enumerate(self.modules):
            setattr(module, _ARMED, (self, layer))
        return True

    def disarm(self) -> None:
        """Stop reading forwards (the attention function then only runs SDPA)."""
        for module in self.modules:
            if hasattr(module, _ARMED):
                delattr(module, _ARMED)

    def collect(self, split: str = "train") -> list[MetricRow]:
        """Disarm, log the armed step's rows (if a forward was read) and return them."""
        t0 = time.perf_counter()
        self.disarm()
        step, means, self._step, self._means = self._step, self._means, None, {}
        if step is None or not means:
            return []
        rows = light_rows(means)
        return self._emit(step, rows, (self._spent_s + time.perf_counter() - t0) * 1e3, split,
                          self._seq_len)

    @contextlib.contextmanager
    def step(self, step: int) -> Iterator[bool]:
        """Arm for the forward(s) inside the block, then collect and log; yields whether armed."""
        armed = self.arm(step)
        try:
            yield armed
        finally:
            if armed:
                self.collect()

    def close(self) -> None:
        """Disarm, flush an own writer and give the model its previous attention implementation."""
        self.disarm()
        if self._own_writer:
            self.writer.flush()
        if self._previous not in (None, ATTN_NAME):
            self.model.set_attn_implementation(self._previous)


class HFLightCallback(TrainerCallback):
    """transformers `Trainer` callback: light rows at every `stats.every`-th optimizer step."""

    def __init__(self, stats: HFLightStats) -> None:
        self.stats = stats

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.stats.arm(state.global_step)   # updates done = the weights this forward sees

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.stats.collect()
        if getattr(control, "should_save", False) and self.stats.writer is not None:
            self.stats.writer.flush()   # HF saves right after this event: rows first

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.stats.close()
