"""Exemplar heads for the weight-dynamics figures, chosen from the spectra table or given by name.

Automatic choice over the per-head W_QK series (first vs last checkpoint, distinct heads):
  1. largest sigma change: max |ln(sigma_last / sigma_first)|   (sigma = elem_std)
  2. largest KL jump: max over consecutive checkpoints of |KL(t+1) - KL(t)|  (elem_kl_gauss_nats)
  3. largest stable-rank drop: max of stable_rank(first) - min_t stable_rank(t)
  4. the median head: the head whose |ln sigma change| is the median
A statistic that is absent (e.g. KL with `--no-elements`) is skipped. `--heads L0H1,L2H3`
overrides the choice.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from attnlife.errors import AttnlifeError
from attnlife.report.data import MissingData, ReportRun
from attnlife.report.style import head_label

_HEAD = re.compile(r"^L(\d+)H(\d+)$")


class HeadSpecError(AttnlifeError):
    """A `--heads` entry is not of the form L{layer}H{head} or names a head the run lacks."""


@dataclass(frozen=True)
class Exemplar:
    layer: int
    head: int
    reason: str

    @property
    def label(self) -> str:
        return head_label(self.layer, self.head)


def parse_heads(text: str) -> list[tuple[int, int]]:
    """'L0H1,L2H3' -> [(0, 1), (2, 3)]."""
    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        m = _HEAD.match(part)
        if not m:
            raise HeadSpecError(f"--heads entry {part!r} is not like L0H1; write e.g. --heads L0H1,L3H2")
        out.append((int(m.group(1)), int(m.group(2))))
    return out


def _scores(run: ReportRun) -> list[tuple[str, np.ndarray]]:
    """(reason, score [L, H]) per criterion; the head with the largest score is the exemplar."""
    out = []
    _, sigma = run.weight_cube("elem_std")
    change = np.abs(np.log(sigma[-1] / sigma[0]))
    out.append(("largest sigma change", change))
    try:
        _, kl = run.weight_cube("elem_kl_gauss_nats")
        out.append(("largest KL jump", np.nanmax(np.abs(np.diff(kl, axis=0)), axis=0) if len(kl) > 1
                    else np.abs(kl[0])))
    except MissingData:
        pass
    _, rank = run.weight_cube("stable_rank")
    out.append(("largest stable-rank drop", rank[0] - np.nanmin(rank, axis=0)))
    median = np.nanmedian(change)
    out.append(("median head", -np.abs(change - median)))
    return out


def choose_exemplars(run: ReportRun, n: int = 4) -> list[Exemplar]:
    """Up to `n` distinct exemplar heads (see module docstring); `run.heads` overrides."""
    heads = run.heads
    _, sigma = run.weight_cube("elem_std")
    n_layer, n_head = sigma.shape[1:]
    if heads:
        for layer, head in heads:
            if layer >= n_layer or head >= n_head:
                raise HeadSpecError(f"--heads names L{layer}H{head} but the model has {n_layer} layers "
                                    f"x {n_head} heads; pick layer < {n_layer}, head < {n_head}")
        return [Exemplar(layer, head, "chosen") for layer, head in heads]
    chosen: list[Exemplar] = []
    for reason, score in _scores(run):
        order = np.argsort(np.nan_to_num(-score.ravel(), nan=np.inf), kind="stable")
        for flat in order:
            layer, head = divmod(int(flat), n_head)
            if all((e.layer, e.head) != (layer, head) for e in chosen):
                chosen.append(Exemplar(layer, head, reason))
                break
    return chosen[:n]
