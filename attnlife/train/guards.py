"""What stops a training loop early, cleanly: divergence and termination signals.

- `LossGuard`: the first non-finite loss, or (with `spike_factor` f > 0) a loss above f times
  the running mean m of the earlier ones (m_s = 0.9 m_{s-1} + 0.1 loss_s, checked after
  `warmup` finite losses), raises DivergenceError. `weights_finite(model)` guards checkpoints:
  the trainer never writes non-finite weights.
- `SignalCatcher`: while active, SIGTERM and SIGINT only record the signal (`received`), so the
  loop can finish its step, write a checkpoint and exit with 128 + signum. A second signal of
  the same kind restores the default action (a second Ctrl-C kills at once).
"""
from __future__ import annotations

import math
import signal
import threading
from types import FrameType
from typing import Callable, Iterable, Optional

import torch

from attnlife.errors import DivergenceError

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class LossGuard:
    """Raises DivergenceError on a non-finite loss or a spike above `spike_factor` x running mean."""

    def __init__(self, spike_factor: float = 0.0, warmup: int = 10, momentum: float = 0.9) -> None:
        self.spike_factor = spike_factor
        self.warmup = warmup
        self.momentum = momentum
        self.mean: Optional[float] = None
        self.seen = 0

    def check(self, step: int, loss: float, hint: Callable[[], str]) -> None:
        """Accept `loss` (nats) of update `step` or raise; `hint()` ends the message (what to do)."""
        if not math.isfinite(loss):
            raise DivergenceError(f"training diverged at step {step}: the loss is {loss}; {hint()}")
        if (self.spike_factor > 0 and self.mean is not None and self.seen >= self.warmup
                and loss > self.spike_factor * self.mean):
            raise DivergenceError(f"training diverged at step {step}: loss {loss:.4g} is more than "
                                  f"{self.spike_factor:g} x its running mean {self.mean:.4g} "
                                  f"(train.loss_spike_factor); {hint()}")
        self.mean = loss if self.mean is None else self.momentum * self.mean + (1 - self.momentum) * loss
        self.seen += 1


def weights_finite(parameters: Iterable[torch.Tensor]) -> bool:
    """True when every element of every tensor is finite (no NaN, no +-inf)."""
    return all(bool(torch.isfinite(p.detach()).all()) for p in parameters)


class SignalCatcher:
    """Context manager deferring SIGTERM/SIGINT to the loop (main thread only; else inactive)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.received: Optional[int] = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "SignalCatcher":
        if self.enabled:
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.received == signum:  # asked twice: stop waiting for the step to finish
            signal.signal(signum, signal.SIG_DFL)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
        self.received = signum
