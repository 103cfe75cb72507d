"""The run directory format: atomic writes, Parquet part tables, checkpoints, run.json."""
from attnlife.store.layout import RunPaths, list_checkpoints
from attnlife.store.run_dir import Run, load_run

__all__ = ["Run", "RunPaths", "list_checkpoints", "load_run"]
