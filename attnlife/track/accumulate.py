"""Streaming accumulation of attention metrics over chunks of query rows.

An `AttentionAccumulator` is a pattern sink: `acc(layer, first_row, probs[B, H, t, T])`. It keeps
per-head running sums of every registered per-row metric, the layer's mean pairwise head JSD,
and, for cross-layer similarity, the head-averaged rows of a fixed subsample of R query positions
(R = `xlayer_rows`, evenly spaced over 0..T-1, all of them when T <= R). Memory beyond one chunk
is O(L * B * R * T) floats, so T = 4096 never needs a full [B, H, T, T] per layer, let alone all
layers at once. `results()` turns the sums into `MetricRow`s of the run's metric table.
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch

from attnlife.store.metrics_table import MetricRow
from attnlife.track.metrics import (DEFAULT_METRICS, METRIC_REGISTRY, cross_layer_matrices,
                                    entropy_bits, pairwise_head_jsd_bits)

LAYER_LEVEL = -1


def subsample_rows(T: int, n_rows: int) -> torch.Tensor:
    """R evenly spaced query positions in [0, T-1] (all T when T <= n_rows), int64 [R]."""
    if T <= n_rows:
        return torch.arange(T)
    return torch.unique(torch.linspace(0, T - 1, n_rows).round().long())


class AttentionAccumulator:
    """Pattern sink accumulating per-head metrics, head diversity and cross-layer rows."""

    def __init__(self, metrics: Iterable[str] = DEFAULT_METRICS, span_threshold: float = 0.01,
                 xlayer_rows: int = 64, keep_snapshot: bool = False) -> None:
        unknown = [m for m in metrics if m not in METRIC_REGISTRY]
        if unknown:
            raise KeyError(f"unknown attention metrics {unknown}; registered: {sorted(METRIC_REGISTRY)}")
        self.metrics = tuple(metrics)
        self.span_threshold = float(span_threshold)
        self.xlayer_rows = int(xlayer_rows)
        self.keep_snapshot = keep_snapshot
        self._sums: dict[int, torch.Tensor] = {}     # layer -> [M, H] float64 sums over rows
        self._counts: dict[int, torch.Tensor] = {}   # layer -> [M, H] defined rows
        self._jsd: dict[int, list] = {}              # layer -> [sum (tensor), row count]
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
        sums = vals.nansum(dim=(1, 3))                                     # [M, H]
        counts = (~torch.isnan(vals)).sum(dim=(1, 3))
        if layer in self._sums:
            self._sums[layer] += sums
            self._counts[layer] += counts
        else:
            self._sums[layer], self._counts[layer] = sums, counts
        if H > 1:
            acc = self._jsd.setdefault(layer, [0.0, 0])   # tensor sum: no device sync per chunk
            acc[0] = acc[0] + pairwise_head_jsd_bits(p, shared["entropy"]).double().sum()
            acc[1] += B * t
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
        out = {}
        for layer, s in self._sums.items():
            c = self._counts[layer].double()
            mean = torch.where(c > 0, s / c.clamp_min(1), torch.full_like(s, float("nan")))
            out.update({(layer, name): mean[k] for k, name in enumerate(self.metrics)})
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

        Layer level: head_jsd_mean (bits), head_entropy_var (bits^2, population variance of the
        heads' entropy_bits). Pairs: xlayer_jsd (bits), xlayer_cos. Model level: their means over
        pairs, xlayer_jsd_mean / xlayer_cos_mean.
        """
        out: list[MetricRow] = []
        values = self.head_values()
        for (layer, name), v in sorted(values.items()):
            out.extend(MetricRow(layer, h, name, float(x)) for h, x in enumerate(v.tolist()))
            if name == "entropy_bits" and v.numel() > 1:
                out.append(MetricRow(layer, LAYER_LEVEL, "head_entropy_var",
                                     float(v.var(unbiased=False))))
        for layer, (s, c) in sorted(self._jsd.items()):
            out.append(MetricRow(layer, LAYER_LEVEL, "head_jsd_mean", float(s) / max(c, 1)))
        rows = self.layer_rows()
        if rows is not None and rows.size(0) > 1:
            jsd, cos = cross_layer_matrices(rows.double())
            L = rows.size(0)
            pairs = [(a, b) for a in range(L) for b in range(a + 1, L)]
            for a, b in pairs:
                out.append(MetricRow(a, LAYER_LEVEL, "xlayer_jsd", float(jsd[a, b]), layer_b=b))
                out.append(MetricRow(a, LAYER_LEVEL, "xlayer_cos", float(cos[a, b]), layer_b=b))
            out.append(MetricRow(LAYER_LEVEL, LAYER_LEVEL, "xlayer_jsd_mean",
                                 sum(float(jsd[a, b]) for a, b in pairs) / len(pairs)))
            out.append(MetricRow(LAYER_LEVEL, LAYER_LEVEL, "xlayer_cos_mean",
                                 sum(float(cos[a, b]) for a, b in pairs) / len(pairs)))
        return out
