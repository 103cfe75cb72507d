"""`BatchSampler`: random contiguous windows of a token stream, reproducible from a seed."""
from __future__ import annotations

import numpy as np
import torch

from attnlife.errors import AttnlifeError


class SplitTooShortError(AttnlifeError):
    """A split has fewer than block_size + 1 tokens, so no (x, y) window fits."""


class BatchSampler:
    """Draw batches (x, y) of B random windows of length T from `ids` [N].

    Offsets o_b ~ Uniform{0, ..., N - T - 1} from the sampler's own seeded `torch.Generator`;
    x[b] = ids[o_b : o_b + T], y[b] = ids[o_b + 1 : o_b + T + 1] (next-token targets).
    The batch sequence depends only on (ids, T, B, seed); `state_dict`/`load_state_dict`
    capture and restore the generator, so a resumed sampler continues the identical sequence.
    """

    def __init__(self, ids: np.ndarray, block_size: int, batch_size: int, seed: int,
                 device: str | torch.device = "cpu"):
        if block_size < 1 or batch_size < 1:
            raise SplitTooShortError(f"block_size {block_size} and batch_size {batch_size} must "
                                     f"both be >= 1")
        if len(ids) < block_size + 1:
            raise SplitTooShortError(f"split has {len(ids):,} tokens, fewer than block_size + 1 = "
                                     f"{block_size + 1:,}; lower model.block_size or use more data")
        self.ids = ids
        self.block_size = int(block_size)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.batches_drawn = 0
        self._window = np.arange(self.block_size + 1, dtype=np.int64)  # [T + 1]

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: x, y int64 [B, T] on `device`."""
        high = len(self.ids) - self.block_size  # offsets in [0, N - T - 1]
        offsets = torch.randint(high, (self.batch_size,), generator=self.generator).numpy()
        rows = np.asarray(self.ids[offsets[:, None] + self._window], dtype=np.int64)  # [B, T+1]
        both = torch.from_numpy(rows)
        self.batches_drawn += 1
        x, y = both[:, :-1], both[:, 1:]
        if self.device.type == "cuda":
            return (x.pin_memory().to(self.device, non_blocking=True),
                    y.pin_memory().to(self.device, non_blocking=True))
        return x.to(self.device), y.to(self.device)

    def state_dict(self) -> dict:
        """Generator state (uint8 tensor), seed, shape and the number of batches drawn."""
        return {"generator": self.generator.get_state(), "seed": self.seed,
                "block_size": self.block_size, "batch_size": self.batch_size,
                "batches_drawn": self.batches_drawn}

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict`; the next batch equals the one the saved sampler would draw."""
        self.generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8))
        self.batches_drawn = int(state.get("batches_drawn", 0))
