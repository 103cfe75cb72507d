"""A W&B sink in offline mode for tests: the environment it needs on a busy shared machine and the
bytes of the run log it writes."""
from __future__ import annotations

from pathlib import Path


def offline_wandb(monkeypatch) -> None:
    """Offline, silent W&B. Under load the wandb-core service can take longer than its defaults
    (30 s to start, 90 s to init): generous limits make a test wait instead of fail."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_X_SERVICE_WAIT", "600")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "600")
    monkeypatch.setenv("WANDB_FINISH_TIMEOUT", "600")


def offline_run_log(root: Path) -> bytes:
    """The protobuf transaction log (.wandb) of the one offline run under ROOT/wandb, read after the
    service exits: finish() can return before wandb-core has written the history record (about half
    the runs on wandb 0.31 left a 7-byte .wandb file); teardown waits for the service to exit.
    History rows are JSON-encoded in it."""
    import wandb

    wandb.teardown()
    runs = list((Path(root) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    (log,) = runs[0].glob("*.wandb")
    return log.read_bytes()
