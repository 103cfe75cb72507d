"""Turn on the explicit-probability path of our GPT's attention for the duration of a block.

`expose_attention(model, sink)` sets `pattern_sink` on every attention module and clears it on
exit, so only forward passes inside the `with` pay for materialising probabilities.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

from attnlife.model.gpt import GPT, PatternSink


@contextlib.contextmanager
def expose_attention(model: GPT, sink: PatternSink, query_chunk: Optional[int] = None) -> Iterator[GPT]:
    """Within the block, each attention layer calls `sink(layer, first_row, probs[B, H, t, T])`.

    `query_chunk` bounds t (rows per call) so memory stays O(B * H * query_chunk * T) per layer.
    """
    modules = model.attention_modules()
    saved = [(m.pattern_sink, m.query_chunk) for m in modules]
    try:
        for m in modules:
            m.pattern_sink = sink
            if query_chunk is not None:
                m.query_chunk = int(query_chunk)
        yield model
    finally:
        for m, (s, c) in zip(modules, saved):
            m.pattern_sink, m.query_chunk = s, c
