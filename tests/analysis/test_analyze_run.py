"""End to end: `attnlife analyze` on a short real training run, re-run after it grew, and on
synthetic probe tables (head types) written through the real metric writer."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

import attnlife
from attnlife.explain import analyze_run
from attnlife.cli import app
from attnlife.store.analysis_tables import ANALYSIS_COLUMNS
from attnlife.store.metrics_table import MetricWriter

runner = CliRunner()


def test_analyze_cli_writes_every_table_and_is_idempotent(run_copy: Path) -> None:
    res = runner.invoke(app, ["analyze", str(run_copy), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "phases:" in res.output and "claims:" in res.output
    run = attnlife.load_run(run_copy)
    tables = run.analysis()
    assert set(ANALYSIS_COLUMNS) <= set(tables)
    for name, cols in ANALYSIS_COLUMNS.items():
        assert list(tables[name].columns[:len(cols)]) == cols, name
    assert (run_copy / "analysis" / "claims.csv").is_file() and (run_copy / "analysis" / "claims.md").is_file()
    # generation quality: one sample row set per checkpoint, values in range
    m = run.metrics()
    sample = m[m.split == "sample"]
    steps = [s for s, _ in run.checkpoints()]
    assert sorted(sample.step.unique()) == steps
    # at step 0 the untrained model predicts nearly uniformly over the 65 characters: log prob ~ -ln 65
    logp0 = sample[(sample.metric == "mean_logprob_nats") & (sample.step == 0)].value
    assert len(logp0) == 1 and abs(float(logp0.iloc[0]) + math.log(65)) < 0.25
    assert set(sample[sample.head_index >= 0].metric) >= {"entropy_bits", "span_tokens"}
    # the first generated sequence of every checkpoint, decoded with the run's vocabulary
    from attnlife.track.generation import sample_checkpoint

    texts = run.analysis_table("samples")
    assert texts.step.tolist() == steps
    itos = run.record["dataset"]["meta"]["itos"]
    want = "".join(itos[i] for i in sample_checkpoint(run.checkpoints()[-1][1]).sequences[0])
    assert texts.text.iloc[-1] == want and len(want) > 0
    # integrity: one row per checkpoint, nothing excluded
    integ = run.analysis_table("integrity")
    assert integ.step.tolist() == steps and not integ.excluded.any()
    claims = run.analysis_table("claims")
    assert set(claims.verdict) <= {"holds", "does not hold", "not applicable"} and len(claims) >= 17
    assert (claims.reason.str.len() > 0).all()
    phases = run.analysis_table("phases")
    assert set(phases.scope) == {"model", "L0"} and phases.label.isin(
        ["focusing", "diffusion", "specialisation", "stabilisation", "transition"]).all()
    emb = run.analysis_table("embedding")
    assert len(emb) == 3 and run.analysis_summary()["notes"]["embedding"]["method"].startswith("pca")
    first = {n: t.copy() for n, t in tables.items()}
    # re-run: nothing new to sample, identical tables
    assert analyze_run(run_copy, quiet=True)["notes"]["checkpoints_sampled_now"] == 0
    again = run.analysis()
    for name in ANALYSIS_COLUMNS:
        pd.testing.assert_frame_equal(first[name], again[name], check_dtype=False)


def test_rerun_after_growth_flags_duplicated_checkpoint(run_copy: Path) -> None:
    analyze_run(run_copy, quiet=True)
    ckpts = attnlife.load_run(run_copy).checkpoints()
    last_step, last_dir = ckpts[-1]
    shutil.copytree(last_dir, last_dir.parent / f"step_{last_step + 10:07d}")  # same weights, new name
    summary = analyze_run(run_copy, quiet=True)
    assert summary["notes"]["excluded_steps"] == [last_step + 10]
    integ = attnlife.load_run(run_copy).analysis_table("integrity").set_index("step")
    assert integ.loc[last_step + 10, "duplicate_of"] == last_step and integ.loc[last_step + 10, "excluded"]
    sample = attnlife.load_run(run_copy).metrics().query("split == 'sample'")
    assert last_step + 10 not in set(sample.step)


def test_claims_verb(run_copy: Path) -> None:
    res = runner.invoke(app, ["claims", str(run_copy)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(run_copy / "analysis" / "claims.csv")
    row = table.set_index("claim_id").loc["lc_middle_jsd"]
    assert row.verdict == "not applicable" and "this model has 1 layers" in row.reason


def test_missing_run_is_one_line_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["analyze", str(tmp_path / "nope")])
    assert res.exit_code != 0


def _probe_run(root: Path) -> Path:
    """A run directory with only synthetic split-probe type scores and a val loss."""
    steps = [0, 10, 20, 40, 80, 160, 320]
    induction = {0: [0.0, 0.0, 0.01, 0.02, 0.5, 0.6, 0.62], 1: [0.0] * 7}
    prev = {0: [0.1] * 7, 1: [0.05, 0.2, 0.5, 0.6, 0.7, 0.7, 0.72]}
    with MetricWriter(root) as w:
        for k, s in enumerate(steps):
            for h in (0, 1):
                w.log(s, "induction_score", induction[h][k], split="probe", layer=1, head_index=h)
                w.log(s, "prev_token_score", prev[h][k], split="probe", layer=1, head_index=h)
                w.log(s, "entropy_bits", 3.0 - 0.001 * s + 0.1 * h, split="probe", layer=1, head_index=h)
            w.log(s, "eval_loss", 3.0 - 0.002 * s, split="val")
    (root / "run.json").write_text(json.dumps({"kind": "train"}))
    return root


def test_head_types_from_probe_split(tmp_path: Path) -> None:
    summary = analyze_run(_probe_run(tmp_path / "probe"), quiet=True)
    run = attnlife.load_run(tmp_path / "probe")
    em = run.analysis_table("emergence").set_index(["layer", "head_index", "type"]).emergence_step
    assert em.to_dict() == {(1, 0, "induction"): 80, (1, 1, "previous_token"): 20}
    ip = run.analysis_table("induction_phase").iloc[0]
    assert ip.step == 80 and np.isclose(ip.score_after, 0.5) and np.isclose(ip.loss_before, 3.0 - 0.08)
    types = run.analysis_table("head_types")
    assert types[(types.step == 320) & (types.head_index == 0)].type.item() == "induction"
    assert summary["notes"]["head_types"] == "split probe"
