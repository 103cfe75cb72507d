"""Streaming accumulation of attention metrics over chunks of query rows.

An `AttentionAccumulator` is a pattern sink: `acc(layer, first_row, probs[B, H, t, T])`. It keeps
per-head, per-sequence running sums of every registered per-row metric and of the layer's mean
pairwise head JSD (so each value gets a standard error across the probe's sequences), and, for
cross-layer similarity, the head-averaged rows of a fixed subsample of R query positions
(R = `xlayer_rows`, evenly spaced over 0..T-1, all of them when T <= R). Memory beyond one chunk
is O(L * B * R * T) floats, so T = 4096 never needs a full [B, H, T, T] per layer, let alone all
layers at once. `results()` turns the sums into `MetricRow`s of the run's metric table.
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch

from attnlife.errors import UnknownMetricError
from attnlife.store.metrics_table import MetricRow
from attnlife.track.metrics import (DEFAULT_METRICS, METRIC_REGISTRY, cross_layer_matrices,
                                    entropy_bits, pairwise_head_jsd_bits)

LAYER_LEVEL = -1


def subsample_rows(T: int, n_rows: int) -> torch.Tensor:
    """R evenly spaced query positions in [0, T-1] (all T when T <= n_rows), int64 [R]."""
    if T <= n_rows:
        return torch.arange(T)
    return torch.unique(torch.linspace(0, T - 1, n_rows).round().long())


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den elementwise, NaN where den == 0."""
    return torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, float("nan")))


def stderr_of_mean(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Standard error of the mean along `dim` over non-NaN entries: sd (ddof 1) / sqrt(n); NaN if n < 2."""
    ok = ~torch.isnan(x)
    n = ok.sum(dim).double()
    mean = x.nansum(dim) / n.clamp_min(1)
    dev = torch.where(ok, x - mean.unsqueeze(dim), torch.zeros_like(x))
    var = (dev * dev).sum(dim) / (n - 1).clamp_min(1)
    return torch.where(n >= 2, (var / n.clamp_min(1)).sqrt(), torch.full_like(var, float("nan")))


class AttentionAccumulator:
    """Pattern sink accumulating per-head metrics, head diversity and cross-layer rows."""

    def __init__(self, metrics: Iterable[str] = DEFAULT_METRICS, span_threshold: float = 0.01,
                 xlayer_rows: int = 64, keep_snapshot: bool = False) -> None:
        unknown = [m for m in metrics if m not in METRIC_REGISTRY]
        if unknown:
            raise UnknownMetricError(f"unknown attention metrics {unknown}; registered: "
                                     f"{sorted(METRIC_REGISTRY)}; add one with attnlife.track.register_metric")
        self.metrics = tuple(metrics)
        self.span_threshold = float(span_threshold)
        self.xlayer_rows = int(xlayer_rows)
        self.keep_snapshot = keep_snapshot
        self._sums: dict[int, torch.Tensor] = {}     # layer -> [M, B, H] float64 sums over rows
        self._counts: dict[int, torch.Tensor] = {}   # layer -> [M, B, H] defined rows
        self._jsd: dict[int, list] = {}              # layer -> [sums [B] (tensor), row count]
        self._rows: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._snap: dict[int, list[torch.Tensor]] = {}

    def __call__(self, layer: int, first_row: int, probs: torch.Tensor) -> None:
        """Consume one chunk probs [B, H, t, T] whose first query row is `first_row`."""
        p = probs.detach().float()
        B, H, t, T = p.shape
        shared = {"threshold": self.span_threshold, "entropy": entropy_bits(p)}  # [B, H, t] bits
        vals = torch.stack([shared["entropy"] if name == "entropy_bits" else
                            METRIC_REGISTRY[name].fn(p, first_row, **{k: shared[k] for k in
                                                                      METRIC_REGISTRY[name].params})
                            for name in self.metrics]).double()            # [M, B, H, t]
        sums = vals.nansum(dim=3)                                          # [M, B, H]
        counts = (~torch.isnan(vals)).sum(dim=3)
        if layer in self._sums:
            self._sums[layer] += sums
            self._counts[layer] += counts
        else:
            self._sums[layer], self._counts[layer] = sums, counts
        if H > 1:
            acc = self._jsd.setdefault(layer, [0.0, 0])   # tensor sum: no device sync per chunk
            acc[0] = acc[0] + pairwise_head_jsd_bits(p, shared["entropy"]).double().sum(1)  # [B]
            acc[1] += t
        rows = subsample_rows(T, self.xlayer_rows)
        sel = rows[(rows >= first_row) & (rows < first_row + t)]
        if len(sel):
            local = (sel - first_row).to(p.device)
            picked = p.index_select(2, local)                            # [B, H, r, T]
            self._rows.setdefault(layer, []).append((sel, picked.mean(1)))  # [B, r, T]
            if self.keep_snapshot:
                self._snap.setdefault(layer, []).append(picked[0].half().cpu())  # [H, r, T]

    def head_values(self) -> dict[tuple[int, str], torch.Tensor]:
        """(layer, metric) -> per-head mean over defined rows, [H] float64 (NaN if none)."""
        return {key: mean for key, (mean, _) in self.head_stats().items()}

    def head_stats(self) -> dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]:
        """(layer, metric) -> (mean [H], stderr [H]), float64.

        mean = sum of the defined rows' values / their count, pooled over the B sequences;
        stderr = sd(m_b) / sqrt(n) with m_b the per-sequence means over the n sequences that have
        a defined row (sample sd, ddof = 1); NaN when n < 2.
        """
        out = {}
        for layer, s in self._sums.items():
            c = self._counts[layer].double()                               # [M, B, H]
            mean = _ratio(s.sum(1), c.sum(1))                              # [M, H]
            se = stderr_of_mean(_ratio(s, c), dim=1)                              # [M, H]
            out.update({(layer, name): (mean[k], se[k]) for k, name in enumerate(self.metrics)})
        return out

    def layer_rows(self) -> Optional[torch.Tensor]:
        """Head-averaged subsampled rows of every layer, [L, B, R, T], or None if not comparable."""
        if not self._rows:
            return None
        mats = []
        for layer in sorted(self._rows):
            parts = sorted(self._rows[layer], key=lambda item: int(item[0][0]))
            mats.append(torch.cat([m for _, m in parts], dim=1))
        shapes = {m.shape for m in mats}
        return torch.stack(mats) if len(shapes) == 1 else None

    def snapshot(self) -> dict[int, torch.Tensor]:
        """layer -> fp16 [H, R, T] pattern of batch element 0 at the subsampled rows."""
        return {layer: torch.cat(parts, dim=1) for layer, parts in sorted(self._snap.items())}

    def results(self) -> list[MetricRow]:
        """`MetricRow`s: per head, layer-level (head_index=-1), model-level (layer=-1), and
        cross-layer pairs (layer=a, layer_b=b, a < b).

        Standard errors across sequences (stderr) for per-head values, head_jsd_mean and xlayer_jsd;
        NaN for the rest (head_entropy_var and the cosines are not means over sequences).

        Layer level: head_jsd_mean (bits), head_entropy_var (bits^2, population variance of the
        heads' entropy_bits). Pairs: xlayer_jsd (bits), xlayer_cos. Model level: their means over
        pairs, xlayer_jsd_mean / xlayer_cos_mean.
        """
        out: list[MetricRow] = []
        for (layer, name), (v, se) in sorted(self.head_stats().items()):
            out.extend(MetricRow(layer, h, name, float(x), stderr=float(e))
                       for h, (x, e) in enumerate(zip(v.tolist(), se.tolist())))
            if name == "entropy_bits" and v.numel() > 1:
                out.append(MetricRow(layer, LAYER_LEVEL, "head_entropy_var",
                                     float(v.var(unbiased=False))))
        for layer, (s, c) in sorted(self._jsd.items()):
            per_seq = s / max(c, 1)                                        # [B] bits
            out.append(MetricRow(layer, LAYER_LEVEL, "head_jsd_mean", float(per_seq.mean()),
                                 stderr=float(stderr_of_mean(per_seq, dim=0))))
        rows = self.layer_rows()
        if rows is not None and rows.size(0) > 1:
            jsd, cos = cross_layer_matrices(rows.double())
            per_seq = torch.stack([cross_layer_matrices(rows[:, s:s + 1].double())[0]
                                   for s in range(rows.size(1))])                 # [B, L, L]
            jsd_se = stderr_of_mean(per_seq, dim=0)                               # [L, L]
            L = rows.size(0)
            pairs = [(a, b) for a in range(L) for b in range(a + 1, L)]
            for a, b in pairs:
                out.append(MetricRow(a, LAYER_LEVEL, "xlayer_jsd", float(jsd[a, b]), layer_b=b,
                                     stderr=float(jsd_se[a, b])))
                out.append(MetricRow(a, LAYER_LEVEL, "xlayer_cos", float(cos[a, b]), layer_b=b))
            out.append(MetricRow(LAYER_LEVEL, LAYER_LEVEL, "xlayer_jsd_mean",
                                 sum(float(jsd[a, b]) for a, b in pairs) / len(pairs)))
            out.append(MetricRow(LAYER_LEVEL, LAYER_LEVEL, "xlayer_cos_mean",
                                 sum(float(cos[a, b]) for a, b in pairs) / len(pairs)))
        return out
