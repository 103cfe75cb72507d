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
    peaks, _ = find_peaks(s, prominence=prominence)  # interior maxima only: a rise must be seen
    # troughs may sit at either end: a final fall of at least `prominence` completes a cycle
    pad = -(s.max() + prominence)
    troughs, _ = find_peaks(np.concatenate([[pad], -s, [pad]]), prominence=prominence)
    events = _alternate(peaks, troughs - 1, s)
    cycles = []
    for k, (idx, kind) in enumerate(events):
        if kind != "peak" or k + 1 >= len(events):
            continue
        trough = events[k + 1][0]
        start = events[k - 1][0] if k > 0 else 0
        cycles.append(Cycle(float(x[start]), float(x[idx]), float(x[trough]), float(s[idx]), float(s[trough])))
    return cycles


def summarize_cycles(cycles: list[Cycle], prominence_used: float | None = None) -> dict:
    """JSON-ready summary: number of cycles, their peak and trough steps, and the cycles."""
    return {"n_cycles": len(cycles), "peak_steps": [c.peak_step for c in cycles],
            "trough_steps": [c.trough_step for c in cycles], "prominence": prominence_used,
            "cycles": [c.to_dict() for c in cycles]}
