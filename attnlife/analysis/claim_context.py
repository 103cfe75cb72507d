"""What a claim check sees of a run, and the verdict helpers shared by the claim modules."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

HOLDS, FAILS, NA = "holds", "does not hold", "not applicable"
REL_TOL = 0.15  # a claimed number "holds" when the measured one is within 15 % of it


@dataclass
class ClaimContext:
    """metrics (excluded steps removed), the attention split used, model-level series by step
    (entropy_bits, span_tokens, head_jsd_mean, ...), per-layer series, val loss, spectra, the
    run record, phases and cycles rows, the scan-snap sweep trends of final entropy against
    eta_Y/eta_Z and against eta_Z (theory sweep runs), the induction phase change row (if any),
    and the per-step training loss and per-checkpoint probe loss (`probe_loss_nats`) by step."""

    metrics: pd.DataFrame
    split: str | None
    model: pd.DataFrame
    layers: dict[int, pd.DataFrame]
    val_loss: pd.Series
    spectra: pd.DataFrame
    record: dict
    phases: pd.DataFrame
    cycles: pd.DataFrame
    sweep_trend: list[dict] = field(default_factory=list)
    induction_phase: pd.DataFrame = field(default_factory=pd.DataFrame)
    train_loss: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    probe_loss: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    sweep_eta_z_trend: list[dict] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return str(self.record.get("kind", "train"))

    @property
    def n_layer(self) -> int:
        cfg = self.record.get("config", {}).get("model", {})
        return int(cfg.get("n_layer", len(self.layers)))

    @property
    def block_size(self) -> int | None:
        return self.record.get("config", {}).get("model", {}).get("block_size")

    @property
    def dataset(self) -> str | None:
        return self.record.get("dataset", {}).get("name") or \
            self.record.get("config", {}).get("data", {}).get("dataset")

    def series(self, name: str) -> pd.Series:
        """Model-level series `name` by step, NaNs dropped (empty if absent)."""
        if name not in self.model.columns:
            return pd.Series(dtype=float)
        return self.model[name].dropna()


def result(measured: str, verdict: str, reason: str) -> dict:
    return {"measured": measured, "verdict": verdict, "reason": reason}


def near(measured: float, claimed: float, tol: float = REL_TOL) -> bool:
    """|measured - claimed| <= tol * |claimed|."""
    return bool(abs(measured - claimed) <= tol * abs(claimed))


def value_near_step(series: pd.Series, step: int, window: float = 0.25) -> tuple[int, float] | None:
    """(step, value) of the sample nearest `step` within +- window * step, else None."""
    if series.empty:
        return None
    idx = np.asarray(series.index, dtype=np.float64)
    k = int(np.argmin(np.abs(idx - step)))
    if abs(idx[k] - step) > window * max(step, 1):
        return None
    return int(idx[k]), float(series.iloc[k])
