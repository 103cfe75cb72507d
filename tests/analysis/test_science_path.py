"""The science path end to end (slow): a 300-step tracked run of the cpu preset, then `track`,
`spectra` and `analyze`, checked against what issue 17 asks of it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import attnlife
from attnlife.cli import app

runner = CliRunner()


@pytest.mark.slow
def test_300_step_run_has_probe_loss_exact_p_values_the_null_and_cross_layer_claims(
        tmp_path: Path, prepared_data: Path) -> None:
    run_dir = tmp_path / "run300"
    for args in (["train", "--preset", "cpu", "--dataset", "shakespeare_char", "--data-dir", str(prepared_data),
                  "--out", str(run_dir), "--quiet", "--max-iters", "300", "--device", "cpu"],
                 ["track", str(run_dir), "--quiet"],
                 ["spectra", str(run_dir), "--quiet", "--no-elements"],
                 ["analyze", str(run_dir), "--quiet", "--no-sample"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args[0], res.output)
    run = attnlife.load_run(run_dir)
    steps = sorted(s for s, _ in run.checkpoints())
    m = run.metrics()
    loss = m[(m.split == "probe") & (m.metric == "probe_loss_nats")]
    assert sorted(loss.step.unique()) == steps and loss.stderr.gt(0).all()
    corr = run.analysis_table("correlations")
    assert len(corr) and (corr.p > 0).all() and (corr.p >= corr.p_min - 1e-15).all()
    qk = run.spectra()
    qk = qk[(qk.matrix == "qk") & (qk.head_index >= 0)]
    n_heads = 4 * 4
    for stat in ("qk_null_ks", "lambda1_over_null_edge", "qk_alignment_index"):
        per_step = qk[qk.stat == stat].groupby("step").value.apply(lambda v: int(np.isfinite(v).sum()))
        assert sorted(per_step.index) == steps and (per_step == n_heads).all(), stat
    align0 = qk[(qk.stat == "qk_alignment_index") & (qk.step == 0)].value
    assert np.all(np.abs(align0 - 1) < 0.1)
    edge_last = qk[(qk.stat == "lambda1_over_null_edge") & (qk.step == steps[-1])].value
    assert edge_last.max() > 1.0
    claims = run.analysis_table("claims").set_index("claim_id")
    for cid in ("lc_early_jsd", "lc_final_jsd"):
        assert "cross-layer JSD" in claims.loc[cid, "measured"] or claims.loc[cid, "verdict"] == "not applicable"
    assert "cross-layer JSD" in claims.loc["lc_final_jsd", "measured"]
