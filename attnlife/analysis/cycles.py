"""Focus-dilution cycle detection on a 1-D signal (pure: numpy + scipy.signal.find_peaks).

Peaks (focus) and troughs (dilution) are the local maxima of s and of -s whose topographic
prominence is at least `prominence` (absolute, in the signal's units) or, when `rel_prominence` is
given, rel_prominence * (max s - min s). Runs of same-kind extrema are merged (keep the most
extreme) so peaks and troughs alternate. A cycle is a peak followed by a trough: focus then dilution;
it spans from the trough before the peak (or the signal start) to the trough after it (which may
be the last sample when the signal ends at least `prominence` below the peak). Peaks are interior
maxima only, so a signal that only falls from its first sample has no cycle.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import find_peaks


@dataclass(frozen=True)
class Cycle:
    """One focus-dilution cycle, in the units of `steps` and of the signal."""

    start_step: float
    peak_step: float
    trough_step: float
    peak_value: float
    trough_value: float

    def to_dict(self) -> dict:
        return asdict(self)


def _alternate(peaks: np.ndarray, troughs: np.ndarray, signal: np.ndarray) -> list[tuple[int, str]]:
    events = sorted([(int(i), "peak") for i in peaks] + [(int(i), "trough") for i in troughs])
    merged: list[tuple[int, str]] = []
    for idx, kind in events:
        if merged and merged[-1][1] == kind:
            prev = merged[-1][0]
            better = signal[idx] > signal[prev] if kind == "peak" else signal[idx] < signal[prev]
            if better:
                merged[-1] = (idx, kind)
            continue
        merged.append((idx, kind))
    return merged


def _peak_trough_peak(s: np.ndarray, prominence: float) -> list[tuple[int, int, int, int | None]]:
    """For every peak followed by a trough: (trough before it or 0, peak, trough, next peak or None);
    peaks and troughs have at least `prominence` and alternate."""
    peaks, _ = find_peaks(s, prominence=prominence)  # interior maxima only: a rise must be seen
    # troughs may sit at either end: a final fall of at least `prominence` completes a cycle
    pad = -(s.max() + prominence)
    troughs, _ = find_peaks(np.concatenate([[pad], -s, [pad]]), prominence=prominence)
    events = _alternate(peaks, troughs - 1, s)
    out = []
    for k, (idx, kind) in enumerate(events):
        if kind == "peak" and k + 1 < len(events):
            out.append((events[k - 1][0] if k > 0 else 0, idx, events[k + 1][0],
                        events[k + 2][0] if k + 2 < len(events) else None))
    return out


def smooth(signal: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over `window` samples (edges reflected); window <= 1 returns a copy."""
    s = np.asarray(signal, dtype=np.float64)
    if window <= 1 or len(s) < 2:
        return s.copy()
    half = window // 2
    padded = np.pad(s, (half, window - 1 - half), mode="reflect" if len(s) > half else "edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid")


def detect_cycles(steps: np.ndarray, signal: np.ndarray, prominence: float | None = None,
                  rel_prominence: float | None = 0.2, smooth_window: int = 1) -> list[Cycle]:
    """Focus-dilution cycles of `signal` [N] sampled at `steps` [N] (ascending); see module docstring.

    With `smooth_window` > 1 the signal is first smoothed by a centred moving average (so noise
    blips do not count); reported peak/trough values are those of the smoothed signal.

    Raises ValueError on mismatched lengths, non-finite values, or no threshold given.
    """
    s = np.asarray(signal, dtype=np.float64)
    x = np.asarray(steps, dtype=np.float64)
    if s.shape != x.shape or s.ndim != 1:
        raise ValueError("steps and signal must be 1-D of equal length")
    if not np.all(np.isfinite(s)):
        raise ValueError("signal has non-finite values")
    if len(s) < 3:
        return []
    s = smooth(s, smooth_window)
    if prominence is None:
        if rel_prominence is None:
            raise ValueError("give prominence or rel_prominence")
        prominence = rel_prominence * float(s.max() - s.min())
    if prominence <= 0:
        return []
    return [Cycle(float(x[before]), float(x[idx]), float(x[trough]), float(s[idx]), float(s[trough]))
            for before, idx, trough, _ in _peak_trough_peak(s, prominence)]


def summarize_cycles(cycles: list[Cycle], prominence_used: float | None = None) -> dict:
    """JSON-ready summary: number of cycles, their peak and trough steps, and the cycles."""
    return {"n_cycles": len(cycles), "peak_steps": [c.peak_step for c in cycles],
            "trough_steps": [c.trough_step for c in cycles], "prominence": prominence_used,
            "cycles": [c.to_dict() for c in cycles]}


CYCLE_COLUMNS = ["start_step", "trough_step", "end_step", "period_steps", "prominence", "status"]


def cycle_rows(steps: np.ndarray, signal: np.ndarray, rel_prominence: float = 0.2,
               smooth_window: int = 1, prominence: float | None = None) -> list[dict]:
    """Focus-dilution-recovery cycles of `signal` [N] (high = focused) at `steps` [N], as table rows.

    Same peaks and troughs as `detect_cycles`. A cycle starts at a focus peak, falls to the
    trough after it and recovers at the next peak: status `closed` with period_steps = end_step -
    start_step. A peak whose trough is not followed by a recovery peak inside the run (the run
    ends diluted or still rising) is `open`: end_step is the last step, period_steps NaN, and it
    is not counted. prominence = peak value - trough value (signal units, after smoothing).
    """
    s = smooth(np.asarray(signal, dtype=np.float64), smooth_window)
    x = np.asarray(steps, dtype=np.float64)
    if len(s) < 3 or not np.all(np.isfinite(s)):
        return []
    if prominence is None:
        prominence = rel_prominence * float(s.max() - s.min())
    if prominence <= 0:
        return []
    rows = []
    for _, idx, trough, recovery in _peak_trough_peak(s, prominence):
        closed = recovery is not None
        end = recovery if closed else len(s) - 1
        rows.append({"start_step": float(x[idx]), "trough_step": float(x[trough]), "end_step": float(x[end]),
                     "period_steps": float(x[end] - x[idx]) if closed else float("nan"),
                     "prominence": float(s[idx] - s[trough]), "status": "closed" if closed else "open"})
    return rows
