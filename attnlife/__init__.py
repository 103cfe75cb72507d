"""attnlife: measure the lifecycle of attention while a transformer trains."""
from __future__ import annotations

from attnlife.version import __version__


def load_run(path, strict=False):  # noqa: ANN001 - thin re-export kept lazy so `import attnlife` stays light
    """Open a run directory; see `attnlife.store.run_dir.load_run` (`strict`: damaged parts raise)."""
    from attnlife.store.run_dir import load_run as _load_run

    return _load_run(path, strict=strict)


__all__ = ["__version__", "load_run"]
