"""Training phases: change points on attention trajectories and a label per segment (pure).

Input: the sampled step axis s_1 < ... < s_n and a few named series over it (entropy, span, head
diversity, cross-layer JSD, val loss). Detection works on the sample index 0..n-1, i.e. on the
axis the data is sampled on (log-spaced early checkpoints stay log-spaced); steps are reported.

Change points: every series is standardised (z = (x - mean) / std; a constant series is all zeros)
and the d standardised series are fitted jointly by a continuous piecewise-linear model
(`ruptures.Pelt`, cost "clinear", at least `min_size` samples per segment). Penalty rule (BIC):

    pen = 3 (d + 1) * sigma^2 * ln(n),   sigma^2 = mean over series of max(noise_i, noise_floor)^2

where noise_i = 1.4826 * MAD(second differences of z_i) / sqrt(6) (the noise of a locally linear
series) and noise_floor = 0.1 (changes smaller than a tenth of a series' standard deviation are
not phases). Each new segment costs one location plus d slope changes, BIC's (params) * sigma^2
* ln n, tripled because the location is searched over all n samples (without the factor, pure
noise is cut into pieces). Adjacent segments that get the same label are then merged (a phase
is a maximal run of one label) and the merged segment is labelled again.

Labels, from the change of each series over a segment measured by a least-squares line
(delta = fitted end - fitted start, in the series' own units): a series *moved* if
|delta| >= `tol` * (its range over the run) and |delta| >= 3 * (standard error of delta). Then

- `focusing`: entropy moved down (attention concentrating);
- `diffusion`: entropy moved up (attention spreading);
- `specialisation`: head diversity (`head_jsd_mean`, `head_entropy_var`) or cross-layer JSD moved up;
- `stabilisation`: no series moved;
- `transition`: something moved that fits none of the above (e.g. only span or loss).

When several apply, the one with the largest |delta| / range wins. Nothing forces three phases:
a run without change points is one segment, labelled by the same rule.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

ENTROPY_SERIES = ("entropy_bits",)
SPECIALISATION_SERIES = ("head_jsd_mean", "head_entropy_var", "xlayer_jsd")
NOISE_FLOOR = 0.1
LABELS = ("focusing", "diffusion", "specialisation", "stabilisation", "transition")


@dataclass(frozen=True)
class Segment:
    """One phase: sample indices [start, end] inclusive, steps, label, per-series deltas."""

    start: int
    end: int
    start_step: int
    end_step: int
    label: str
    slopes: dict
    evidence: str


def standardise(values: np.ndarray) -> np.ndarray:
    """(x - mean) / std per column of [n, d]; a column with std 0 becomes zeros."""
    x = np.asarray(values, dtype=np.float64)
    std = x.std(axis=0)
    return np.where(std > 0, (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0), 0.0)


def noise_sigma(z: np.ndarray) -> np.ndarray:
    """Per-column noise of locally linear series [n, d]: 1.4826 MAD(second diffs) / sqrt(6)."""
    if len(z) < 3:
        return np.zeros(z.shape[1])
    d2 = np.diff(z, n=2, axis=0)
    mad = np.median(np.abs(d2 - np.median(d2, axis=0)), axis=0)
    return 1.4826 * mad / np.sqrt(6.0)


def bic_penalty(z: np.ndarray, noise_floor: float = NOISE_FLOOR) -> float:
    """pen = 3 (d + 1) sigma^2 ln n for standardised series z [n, d] (module docstring)."""
    n, d = z.shape
    sigma2 = float(np.mean(np.maximum(noise_sigma(z), noise_floor) ** 2))
    return 3.0 * (d + 1) * sigma2 * np.log(max(n, 2))


def change_points(values: np.ndarray, min_size: int = 3, penalty: float | None = None) -> list[int]:
    """Segment end indices (exclusive, the last is n) of series [n, d] by PELT on "clinear"."""
    import ruptures as rpt

    z = standardise(np.atleast_2d(np.asarray(values, dtype=np.float64).T).T)
    n = len(z)
    if n < 2 * min_size or not np.any(z):
        return [n]
    pen = bic_penalty(z) if penalty is None else penalty
    return [int(b) for b in rpt.Pelt(model="clinear", min_size=min_size, jump=1).fit(z).predict(pen=pen)]


def segment_delta(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Change of a least-squares line over the segment and its standard error: (delta, se).

    delta = b (x_end - x_start) for y ~ a + b x; se = se(b) |x_end - x_start|; se = inf for < 3 points.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return 0.0, np.inf
    xc = x - x.mean()
    sxx = float(xc @ xc)
    b = float(xc @ (y - y.mean())) / sxx
    width = float(x[-1] - x[0])
    if len(x) < 3:
        return b * width, np.inf
    resid = y - y.mean() - b * xc
    se_b = np.sqrt(float(resid @ resid) / (len(x) - 2) / sxx)
    return b * width, se_b * width


def label_segment(deltas: dict[str, tuple[float, float]], ranges: dict[str, float],
                  tol: float = 0.2) -> tuple[str, list[str]]:
    """(label, moved series as "name down/up") from {series: (delta, se)} and run ranges."""
    moved: dict[str, float] = {}
    for name, (delta, se) in deltas.items():
        rng = ranges.get(name, 0.0)
        if rng > 0 and abs(delta) >= tol * rng and abs(delta) >= 3 * se:
            moved[name] = delta / rng
    candidates: dict[str, float] = {}
    for name, rel in moved.items():
        base = name.split("@")[0]
        if base in ENTROPY_SERIES:
            key = "focusing" if rel < 0 else "diffusion"
        elif base in SPECIALISATION_SERIES and rel > 0:
            key = "specialisation"
        else:
            key = "transition"
        candidates[key] = max(candidates.get(key, 0.0), abs(rel))
    evidence = [f"{n} {'down' if r < 0 else 'up'} {abs(r):.2f} of range" for n, r in sorted(moved.items())]
    if not moved:
        return "stabilisation", evidence
    named = {k: v for k, v in candidates.items() if k != "transition"}
    return (max(named, key=named.get) if named else "transition"), evidence


def detect_phases(steps: np.ndarray, series: dict[str, np.ndarray], min_size: int = 3,
                  tol: float = 0.2, penalty: float | None = None) -> list[Segment]:
    """Phases of the named series [n] over `steps` [n] (ascending): change points + labels.

    Series with NaN are dropped; deltas are measured against the sample index (the detection axis).
    """
    steps = np.asarray(steps)
    clean = {k: np.asarray(v, dtype=np.float64) for k, v in series.items()
             if len(v) == len(steps) and np.all(np.isfinite(v))}
    if not clean or len(steps) == 0:
        return []
    names = sorted(clean)
    matrix = np.column_stack([clean[k] for k in names])
    ends = change_points(matrix, min_size=min_size, penalty=penalty)
    ranges = {k: float(np.ptp(clean[k])) for k in names}
    bounds = list(zip([0] + ends[:-1], ends))
    segments = [_segment(steps, clean, ranges, a, b, tol) for a, b in bounds]
    merged = True
    while merged and len(segments) > 1:
        merged = False
        for i in range(len(segments) - 1):
            if segments[i].label == segments[i + 1].label:
                joined = _segment(steps, clean, ranges, segments[i].start, segments[i + 1].end + 1, tol)
                segments[i:i + 2] = [joined]
                merged = True
                break
    return segments


def _segment(steps: np.ndarray, clean: dict[str, np.ndarray], ranges: dict[str, float],
             start: int, end: int, tol: float) -> Segment:
    """The labelled Segment over sample indices [start, end) (end exclusive)."""
    idx = np.arange(start, end, dtype=np.float64)
    deltas = {k: segment_delta(idx, v[start:end]) for k, v in clean.items()}
    label, evidence = label_segment(deltas, ranges, tol)
    slopes = {k: round(d, 6) for k, (d, _) in deltas.items()}
    return Segment(start, end - 1, int(steps[start]), int(steps[end - 1]), label, slopes,
                   "; ".join(evidence) if evidence else "no series moved")


def phase_rows(scope: str, layer: int, segments: list[Segment]) -> list[dict]:
    """Rows of the `phases` table (scope, layer, segment, start_step, end_step, label, slopes, evidence)."""
    return [{"scope": scope, "layer": layer, "segment": i, "start_step": s.start_step,
             "end_step": s.end_step, "label": s.label, "slopes": json.dumps(s.slopes, sort_keys=True),
             "evidence": s.evidence} for i, s in enumerate(segments)]
