"""Capture attention probabilities from one forward pass of our GPT, Hugging Face causal LMs
(GPT-2, GPT-NeoX/Pythia, Llama-family incl. grouped-query attention) and TransformerLens.

    with capture_attention(model) as cap:
        cap.forward(idx)                       # idx [B, T] token ids
    cap.patterns["blocks.0.attn.pattern"]      # [B, H, T, T], rows sum to 1, causal

Probe sites are named TransformerLens-style, `blocks.{l}.attn.pattern`. With a `sink`, nothing is
stored: each layer's probabilities are handed to `sink(layer, first_row, probs[B, H, t, T])` in
chunks of at most `query_chunk` query rows (our GPT computes them chunk by chunk; HF and
TransformerLens compute a whole layer, which we then feed to the sink in row chunks). Outside
the `with`, nothing is hooked: our GPT runs SDPA, HF models get their attention implementation
back, TransformerLens hooks are removed.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional

import torch

from attnlife.errors import UnsupportedModelError
from attnlife.model.attention_probe import expose_attention
from attnlife.model.gpt import GPT

Sink = Callable[[int, int, torch.Tensor], None]


def site_name(layer: int) -> str:
    """Probe site of layer `layer`'s attention probabilities: `blocks.{layer}.attn.pattern`."""
    return f"blocks.{layer}.attn.pattern"


class Capture:
    """What a capture context yields: `forward(idx)` runs the model; `patterns` holds results."""

    def __init__(self, model: Any, family: str, sink: Optional[Sink], query_chunk: int) -> None:
        self.model = model
        self.family = family
        self.query_chunk = max(1, int(query_chunk))
        self.patterns: dict[str, torch.Tensor] = {}
        self._chunks: dict[int, list[tuple[int, torch.Tensor]]] = {}
        self._user_sink = sink

    def sink(self, layer: int, first_row: int, probs: torch.Tensor) -> None:
        """Receive probs [B, H, t, T] of `layer` starting at query row `first_row`."""
        if self._user_sink is not None:
            self._user_sink(layer, first_row, probs)
        else:
            self._chunks.setdefault(layer, []).append((first_row, probs.detach()))

    def sink_full(self, layer: int, probs: torch.Tensor) -> None:
        """Feed a whole layer [B, H, T, T] to the sink in chunks of `query_chunk` rows."""
        T = probs.size(-2)
        for start in range(0, T, self.query_chunk):
            self.sink(layer, start, probs[:, :, start:start + self.query_chunk])

    def forward(self, idx: torch.Tensor) -> Any:
        """Run the captured model on token ids idx [B, T]; returns the model's own output."""
        out = self.model(input_ids=idx) if self.family == "hf" else self.model(idx)
        self._assemble()
        return out

    def _assemble(self) -> None:
        for layer, parts in sorted(self._chunks.items()):
            parts.sort(key=lambda item: item[0])
            self.patterns[site_name(layer)] = torch.cat([p for _, p in parts], dim=2)
        self._chunks.clear()


def model_family(model: Any) -> str:
    """'gpt' (attnlife GPT), 'tl' (TransformerLens HookedTransformer) or 'hf' (transformers)."""
    if isinstance(model, GPT):
        return "gpt"
    cls = type(model)
    mod = cls.__module__
    if mod.startswith("transformer_lens") and hasattr(model, "hooks"):
        return "tl"
    if mod.startswith("transformers") and hasattr(model, "config"):
        return "hf"
    raise UnsupportedModelError(
        f"cannot capture attention from {cls.__name__}; pass an attnlife GPT, a Hugging Face causal "
        f"LM or a TransformerLens HookedTransformer (or the module that holds one)")


def find_capturable(module: Any) -> Any:
    """The model itself if supported, else the first supported submodule (e.g. inside a
    LightningModule); raises UnsupportedModelError if none."""
    try:
        model_family(module)
        return module
    except UnsupportedModelError:
        if isinstance(module, torch.nn.Module):
            for sub in module.modules():
                try:
                    model_family(sub)
                    return sub
                except UnsupportedModelError:
                    continue
        raise


@contextlib.contextmanager
def capture_attention(model: Any, sink: Optional[Sink] = None,
                      query_chunk: Optional[int] = None) -> Iterator[Capture]:
    """Context manager: attention probabilities of forward passes run inside it (see module doc).

    `query_chunk` (rows per sink call) bounds metric memory to O(B * H * query_chunk * T).
    """
    model = find_capturable(model)
    family = model_family(model)
    cap = Capture(model, family, sink, query_chunk or 256)
    if family == "gpt":
        with expose_attention(model, cap.sink, query_chunk=cap.query_chunk):
            yield cap
    elif family == "tl":
        with _tl_hooks(model, cap):
            yield cap
    else:
        with _hf_hooks(model, cap):
            yield cap


@contextlib.contextmanager
def _tl_hooks(model: Any, cap: Capture) -> Iterator[None]:
    def hook(pattern: torch.Tensor, hook: Any) -> torch.Tensor:  # pattern [B, H, T, T]
        cap.sink_full(int(hook.name.split(".")[1]), pattern)
        return pattern

    with model.hooks(fwd_hooks=[(lambda name: name.endswith("attn.hook_pattern"), hook)]):
        yield


def hf_attention_modules(model: Any) -> list[torch.nn.Module]:
    """The self-attention module of each decoder layer of a HF causal LM, in layer order."""
    found = [m for name, m in model.named_modules()
             if name.rsplit(".", 1)[-1] in ("attn", "self_attn", "attention")
             and type(m).__name__.endswith("Attention")]
    if not found:
        raise UnsupportedModelError(f"no attention modules found in {type(model).__name__}; "
                                    f"supported: GPT-2, GPT-NeoX/Pythia, Llama-family layouts")
    return found


@contextlib.contextmanager
def _hf_hooks(model: Any, cap: Capture) -> Iterator[None]:
    previous = getattr(model.config, "_attn_implementation", None)
    if previous != "eager":
        model.set_attn_implementation("eager")
    handles = []
    for layer, module in enumerate(hf_attention_modules(model)):
        def hook(mod: Any, args: Any, output: Any, layer: int = layer) -> None:
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None or weights.dim() != 4:
                raise UnsupportedModelError(f"{type(mod).__name__} returned no attention weights; "
                                            f"load the model with attn_implementation='eager'")
            cap.sink_full(layer, weights)
        handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        if previous not in (None, "eager"):
            model.set_attn_implementation(previous)
