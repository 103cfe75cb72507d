"""Which revisions of a checkpoint suite to measure: step revision names, and selectors over them.

A hub suite names its training checkpoints by branch: Pythia `step143000`, OLMo
`step1000-tokens4B` (OLMo 2: `stage1-step1000-tokens5B`; DeepSpeed: `global_step1000`). `revision_step(name)` reads the step (optimizer updates
done, the project's step convention) from such a name and returns None for anything else (`main`,
`v1.0`, `refs/pr/1`), so `step_revisions(names)` turns a repository's refs into the suite, ordered
by step. Two names of one step are ambiguous and raise `RevisionSelectionError`.

`RevisionSelector` picks a subset, applied in this order:
  names       an explicit list (`--revisions step0,step1000`); every name must exist
  steps       an inclusive step range (lo, hi), either end None (`--steps 1000:143000`)
  every_kth   every k-th revision of what is left, from the first (`--every-kth 4`)
  log_spaced  n revisions as evenly spaced in log(step) as the suite allows (`--log-spaced 12`):
              step 0 when present, then for targets geomspace(smallest positive step, last, n')
              the nearest unused revision in log space; always holds the first and the last
Pure: no I/O. The hub and directory listings that feed it live in `attnlife.series.hub`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional, Sequence

from attnlife.errors import AttnlifeError

STEP_NAME = re.compile(r"^(?:stage\d+-)?(?:global_)?step[-_]?(\d+)(?:-tokens(\d+)([KMBT])?)?$")


class RevisionSelectionError(AttnlifeError):
    """A revision selector names revisions the suite lacks or does not parse."""


def revision_step(name: str) -> Optional[int]:
    """The training step of a step revision name (`step1000`, `step1000-tokens4B`), else None."""
    m = STEP_NAME.match(name.strip())
    return int(m.group(1)) if m else None


def step_revisions(names: Sequence[str]) -> list[tuple[int, str]]:
    """(step, name) of every step revision among `names`, ascending by step; duplicates of a name
    are dropped, two names of one step raise `RevisionSelectionError`."""
    by_step: dict[int, str] = {}
    for name in dict.fromkeys(names):
        step = revision_step(name)
        if step is None:
            continue
        if step in by_step and by_step[step] != name:
            raise RevisionSelectionError(f"revisions '{by_step[step]}' and '{name}' both hold step {step}; "
                                         f"pick one with --revisions")
        by_step[step] = name
    return sorted(by_step.items())


@dataclass(frozen=True)
class RevisionSelector:
    """A subset of a suite (see the module doc); the default selects everything."""

    names: tuple[str, ...] = ()
    steps: tuple[Optional[int], Optional[int]] = (None, None)
    every_kth: int = 1
    log_spaced: int = 0

    def __post_init__(self) -> None:
        if self.every_kth < 1:
            raise RevisionSelectionError(f"--every-kth {self.every_kth} must be >= 1")
        if self.log_spaced < 0 or self.log_spaced == 1:
            raise RevisionSelectionError(f"--log-spaced {self.log_spaced} must be >= 2 (first and last)")
        lo, hi = self.steps
        if lo is not None and hi is not None and lo > hi:
            raise RevisionSelectionError(f"--steps {lo}:{hi} is empty; give LO:HI with LO <= HI")

    @property
    def selects_all(self) -> bool:
        return self == RevisionSelector()


def parse_step_range(text: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    """'1000:143000' -> (1000, 143000); '1000:' / ':5000' leave an end open; None -> (None, None)."""
    if not text:
        return None, None
    lo, sep, hi = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return (int(lo) if lo.strip() else None, int(hi) if hi.strip() else None)
    except ValueError:
        raise RevisionSelectionError(f"--steps {text!r} is not a step range; use LO:HI, e.g. 1000:143000 "
                                     f"(either end may be left out)") from None


def select(suite: Sequence[tuple[int, str]], selector: RevisionSelector) -> list[tuple[int, str]]:
    """The (step, name) pairs of `suite` (ascending by step) that `selector` keeps, ascending."""
    chosen = list(suite)
    if selector.names:
        have = {name: step for step, name in chosen}
        missing = [n for n in selector.names if n not in have]
        if missing:
            shown = ", ".join(name for _, name in chosen[:4]) + (", ..." if len(chosen) > 4 else "")
            raise RevisionSelectionError(f"revision(s) {', '.join(missing)} not in the suite "
                                         f"({len(chosen)} step revisions: {shown or 'none'})")
        wanted = set(selector.names)
        chosen = [(s, n) for s, n in chosen if n in wanted]
    lo, hi = selector.steps
    chosen = [(s, n) for s, n in chosen if (lo is None or s >= lo) and (hi is None or s <= hi)]
    chosen = chosen[::selector.every_kth]
    if selector.log_spaced:
        chosen = log_spaced(chosen, selector.log_spaced)
    return chosen


def log_spaced(suite: Sequence[tuple[int, str]], n: int) -> list[tuple[int, str]]:
    """n of `suite` (ascending) as evenly spaced in log(step) as possible (module doc), ascending."""
    if n >= len(suite):
        return list(suite)
    picked: set[int] = set()
    start = 0
    if suite[0][0] == 0:
        picked.add(0)
        start = 1
    positive = list(range(start, len(suite)))
    logs = [math.log(suite[i][0]) for i in positive]
    k = n - len(picked)
    lo, hi = logs[0], logs[-1]
    targets = [lo + (hi - lo) * t / (k - 1) for t in range(k)] if k > 1 else [hi]
    for target in targets:
        free = [j for j in range(len(positive)) if positive[j] not in picked]
        j = min(free, key=lambda j: (abs(logs[j] - target), j))
        picked.add(positive[j])
    return [suite[i] for i in sorted(picked)]
