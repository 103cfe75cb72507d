"""nanoGPT-architecture GPT, KV-cache generation, and on-demand attention probabilities."""
from attnlife.model.attention_probe import expose_attention
from attnlife.model.gpt import GPT, GPTConfig

__all__ = ["GPT", "GPTConfig", "expose_attention"]
