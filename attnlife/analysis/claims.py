"""Published claims next to what this run measured: one row per claim, verdict and reason.

Each claim is a small named function (in `claims_lifecycle`, `claims_dynamics` and
`claims_literature`) whose docstring defines its test; this module runs them all. A claim that raises is reported `not applicable`
with the error as reason rather than stopping the analysis.
"""
from __future__ import annotations

import pandas as pd

from attnlife.analysis import claims_dynamics, claims_lifecycle, claims_literature
from attnlife.analysis.claim_context import NA, ClaimContext

COLUMNS = ["claim_id", "source", "claim", "measured", "verdict", "reason"]


def all_claims() -> list[tuple[str, str, str, object]]:
    """(claim_id, source, claim text, function) for every checked claim."""
    lifecycle = [(cid, claims_lifecycle.SOURCE, text, fn) for cid, text, fn in claims_lifecycle.CLAIMS]
    return lifecycle + list(claims_dynamics.CLAIMS) + list(claims_literature.CLAIMS)


def _theory_run_vs_lm_claim(ctx: ClaimContext, source: str) -> bool:
    """Lifecycle and weight-dynamics claims concern language-model training, not theory runs."""
    return ctx.kind.startswith("theory") and source in (claims_lifecycle.SOURCE, claims_dynamics.WEIGHTS,
                                                         *claims_literature.SOURCES)


def check_claims(ctx: ClaimContext) -> pd.DataFrame:
    """The claims table (COLUMNS) for one run."""
    rows = []
    for cid, source, text, fn in all_claims():
        try:
            res = fn(ctx) if not _theory_run_vs_lm_claim(ctx, source) else {
                "measured": "", "verdict": NA,
                "reason": f"claim is about a transformer trained on text; this run is `{ctx.kind}`"}
        except (KeyError, IndexError, ValueError, ZeroDivisionError) as err:
            res = {"measured": "", "verdict": NA, "reason": f"could not measure: {type(err).__name__}: {err}"}
        rows.append({"claim_id": cid, "source": source, "claim": text, **res})
    return pd.DataFrame(rows, columns=COLUMNS)
