"""Fault injection for executor tests: a pass whose first attempt kills the process running it."""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DieOnce:
    """Wraps a series pass (`done(ref)`, `__call__(ref)`): the first time it runs on the checkpoint
    at `step` it writes its pid to `marker` and SIGKILLs its own (worker) process; afterwards it
    runs the wrapped pass. A retried task therefore succeeds."""

    inner: Any
    marker: str
    step: int

    def done(self, ref: Any) -> bool:
        return self.inner.done(ref)

    def __call__(self, ref: Any) -> Any:
        if ref.step == self.step and not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(ref)
