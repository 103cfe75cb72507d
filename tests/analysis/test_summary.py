"""summary.json and the lines `attnlife analyze` prints: each field cut from the table it summarises."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from attnlife.analysis.correlations import finish
from attnlife.analysis.cycles import cycle_rows
from attnlife.analysis.head_types import induction_phase
from attnlife.analysis.summary import make_summary, summary_lines


def _corr(x: str, layer: int, head: int, rho: float, p: float, kind: str = "steps_resid") -> dict:
    return {"x": x, "x_layer": layer, "x_head": head, "y": "val_loss", "kind": kind, "rho": rho, "p": p, "n": 9,
            "p_min": 2 / 362880, "method": "exact"}


def _tables() -> dict[str, pd.DataFrame]:
    phases = pd.DataFrame([
        {"scope": "model", "layer": -1, "segment": 0, "start_step": 0, "end_step": 400, "label": "focusing",
         "slopes": "{}", "evidence": "entropy_bits down 0.80 of range"},
        {"scope": "L0", "layer": 0, "segment": 0, "start_step": 0, "end_step": 2000, "label": "transition",
         "slopes": "{}", "evidence": "span_tokens up 0.50 of range"},
        {"scope": "model", "layer": -1, "segment": 1, "start_step": 500, "end_step": 2000, "label": "stabilisation",
         "slopes": "{}", "evidence": "no series moved"}])
    emergence = pd.DataFrame([{"layer": 1, "head_index": 2, "type": "induction", "emergence_step": 900,
                               "threshold": 0.3},
                              {"layer": 0, "head_index": 0, "type": "previous_token", "emergence_step": 300,
                               "threshold": 0.4}])
    steps = np.array([0, 100, 200, 300])
    ip = induction_phase(steps, np.array([0.0, 0.05, 0.6, 0.62]), pd.Series([3.0, 2.5, 2.25, 2.0], index=steps))
    t = np.arange(0, 260, 1.0)
    cycles = pd.DataFrame(cycle_rows(t, np.cos(2 * np.pi * t / 100), rel_prominence=0.5))
    # p = 0.001 .. 0.006: with m = 6 every BH-adjusted p is 0.006 (< 0.05); the seventh is not strong
    rows = [_corr(f"m{i}", -1 if i % 2 else i, -1 if i < 4 else 1, 0.9 - 0.05 * i, 0.001 * (i + 1))
            for i in range(6)] + [_corr("weak", -1, -1, 0.99, 0.5, kind="steps_raw")]
    claims = pd.DataFrame({"claim_id": ["a", "b", "c", "d"],
                           "verdict": ["holds", "does not hold", "holds", "not applicable"]})
    return {"phases": phases, "emergence": emergence, "induction_phase": pd.DataFrame([ip]), "cycles": cycles,
            "correlations": finish(rows), "claims": claims}


def test_summary_cuts_each_field_from_its_table() -> None:
    tables = _tables()
    s = make_summary("runs/x", tables, {"attention_split": "probe"})
    assert s["run"] == "runs/x" and s["notes"] == {"attention_split": "probe"}
    assert s["phases"] == [{"start_step": 0, "end_step": 400, "label": "focusing",
                            "evidence": "entropy_bits down 0.80 of range"},
                           {"start_step": 500, "end_step": 2000, "label": "stabilisation",
                            "evidence": "no series moved"}]                  # model scope only
    assert s["emergence"] == [{"layer": 1, "head_index": 2, "type": "induction", "emergence_step": 900},
                              {"layer": 0, "head_index": 0, "type": "previous_token", "emergence_step": 300}]
    assert s["induction_phase"] == {"step": 200, "step_before": 100, "score_before": 0.05, "score_after": 0.6,
                                    "loss_before": 2.5, "loss_after": 2.25, "loss_bump": 0.0}
    assert s["cycles"] == {"closed": 1, "open": 1}
    # associations of changes with p_bh < 0.05, at most five, in the table's |rho| order; the raw
    # co-trend "weak" (rho 0.99, the largest) never qualifies
    corr = tables["correlations"]
    want = corr[(corr.p_bh < 0.05) & (corr.kind == "steps_resid")].head(5)
    assert [c["x"] for c in s["top_correlations"]] == want.x.tolist() == ["m0", "m1", "m2", "m3", "m4"]
    assert s["top_correlations"][4] == {"x": "m4", "x_layer": 4, "x_head": 1, "y": "val_loss", "kind": "steps_resid",
                                        "rho": float(want.rho.iloc[4]), "p": 0.005, "p_bh": float(want.p_bh.iloc[4]),
                                        "n": 9, "p_min": 2 / 362880}
    assert s["correlation_tests"] == {"changes": 6, "total": 7, "min_p": 0.001}
    assert s["claims"] == {"holds": 2, "does not hold": 1, "not applicable": 1}
    assert s["tables"] == {"phases": 3, "emergence": 2, "induction_phase": 1, "cycles": 2, "correlations": 7,
                           "claims": 4}


def test_summary_reports_no_correlation_when_none_survives_and_cleans_nan() -> None:
    corr = finish([_corr("a", -1, -1, 0.5, 0.05), _corr("b", 0, -1, -0.7, 0.2)])  # p_bh exactly 0.05: not < 0.05
    ip = pd.DataFrame([{"step": 300, "step_before": 200, "loss_before": math.nan, "loss_bump": None}])
    s = make_summary("r", {"correlations": corr, "induction_phase": ip}, {})
    assert s["top_correlations"] == [] and s["correlation_tests"]["changes"] == 2
    assert "  correlations: no association of changes survives BH (p_bh < 0.05) among 2 tests; raw co-trends " \
        "are not reported" in summary_lines(s)
    assert s["induction_phase"] == {"step": 300.0, "step_before": 200.0, "loss_before": None, "loss_bump": None}
    open_only = pd.DataFrame([{"status": "open"}, {"status": "open"}, {"status": "closed"}])
    assert make_summary("r", {"cycles": open_only}, {})["cycles"] == {"closed": 1, "open": 2}


def test_empty_analysis() -> None:
    empty = {name: pd.DataFrame() for name in ("phases", "correlations", "cycles", "claims", "induction_phase")}
    s = make_summary("r", empty, {"phases": "too few steps"})
    assert s == {"run": "r", "notes": {"phases": "too few steps"}, "phases": [], "emergence": [],
                 "induction_phase": None, "cycles": {"closed": 0, "open": 0}, "top_correlations": [],
                 "correlation_tests": {"changes": 0, "total": 0, "min_p": None}, "claims": {},
                 "tables": {"phases": 0, "correlations": 0, "cycles": 0, "claims": 0, "induction_phase": 0}}
    assert make_summary("r", {}, {})["tables"] == {}


def test_summary_lines_full() -> None:
    s = make_summary("runs/x", _tables(), {"attention_split": "probe", "excluded_steps": [300, 400]})
    s["emergence"] += [{"layer": 3, "head_index": h, "type": "local", "emergence_step": 1000 + h} for h in range(8)]
    lines = summary_lines(s)
    top = s["top_correlations"]
    assert lines == [
        "analysis of runs/x (attention from split probe)",
        "  excluded checkpoints (duplicate or non-finite weights): [300, 400]",
        "  phases: focusing 0-400, stabilisation 500-2000",
        "  head types emerged: L0H0 previous_token @ 300, L1H2 induction @ 900, L3H0 local @ 1000, "
        "L3H1 local @ 1001, L3H2 local @ 1002, L3H3 local @ 1003, L3H4 local @ 1004, L3H5 local @ 1005",
        "  induction phase change at step 200 (loss bump 0.0 nats)",
        "  cycles: 1 closed, 1 open (not counted)",
        f"  steps_resid: m0 (L0) vs val_loss: rho +0.90, p 0.001 (min attainable 5.5e-06), p_bh {top[0]['p_bh']:.2g}, n 9",
        f"  steps_resid: m1 (model) vs val_loss: rho +0.85, p 0.002 (min attainable 5.5e-06), p_bh {top[1]['p_bh']:.2g}, n 9",
        f"  steps_resid: m2 (L2) vs val_loss: rho +0.80, p 0.003 (min attainable 5.5e-06), p_bh {top[2]['p_bh']:.2g}, n 9",
        "  claims: does not hold 1, holds 2, not applicable 1"]
    s["top_correlations"][0].update(x_layer=4, x_head=1, rho=-0.5)
    assert summary_lines(s)[6].startswith("  steps_resid: m0 (L4H1) vs val_loss: rho -0.50, p 0.001 ")


def test_summary_lines_when_nothing_was_found() -> None:
    s = make_summary("r", {}, {"attention_split": None, "phases": "fewer than 6 steps",
                               "head_types": "no type scores"})
    assert summary_lines(s) == ["analysis of r (attention from split None)",
                                "  phases: none (fewer than 6 steps)",
                                "  head types: none emerged (no type scores)",
                                "  cycles: 0 closed, 0 open (not counted)",
                                "  claims: "]


def test_strong_means_bh_p_below_0_05_and_lines_name_head_zero() -> None:
    corr = finish([_corr("big", -1, -1, 0.9, 0.5), _corr("edge", 1, 0, 0.3, 0.025),   # p_bh: 0.5 and exactly 0.05
                   _corr("head", 1, 0, 0.2, 0.001, kind="head_weights_resid")])
    s = make_summary("r", {"correlations": corr}, {})
    assert [c["x"] for c in s["top_correlations"]] == ["head"]               # only p_bh < 0.05 reports
    assert summary_lines({k: v for k, v in s.items() if k != "notes"})[0] == "analysis of r (attention from split None)"
    assert summary_lines(s)[-2].startswith("  head_weights_resid: head (L1H0) vs val_loss:")


def test_summary_lines_end_with_the_health_note() -> None:
    notes = {"attention_split": "probe", "phases": "none", "head_types": "none",
             "health": {"alerts": {}, "loss_events": [{"event": "loss spike", "step": 300}]}}
    lines = summary_lines(make_summary("r", {}, notes))
    assert lines == ["analysis of r (attention from split probe)", "  phases: none (none)",
                     "  head types: none emerged (none)", "  cycles: 0 closed, 0 open (not counted)", "  claims: ",
                     "  attention health: no alerts (loss events: loss spike at 300)"]
    alert = {"alerts": {"sink_collapse": 2}, "units": {"sink_collapse": 1},
             "first_alert": {"kind": "sink_collapse", "step": 200, "layer": 1, "head_index": 0},
             "earliest_alert_before": [{"event": "loss spike", "event_step": 300, "alert_kind": "sink_collapse",
                                        "lead_steps": 100}],
             "loss_events": [{"event": "loss spike", "step": 300}, {"event": "plateau", "step": 900}]}
    lines = summary_lines(make_summary("r", {}, {**notes, "health": alert}))
    assert lines[4:] == ["  claims: ", "  attention health: sink collapse 2 (1 units); first: sink collapse at step 200 "
                                       "(L1 H0)",
                         "    loss spike at step 300: preceded by sink collapse 100 steps earlier",
                         "    plateau at step 900: no alert before it"]
    # no health note (a run analysed without one): no health line
    assert not any("health" in line for line in summary_lines(make_summary("r", {}, {"attention_split": "probe"})))


def test_summary_lines_of_a_summary_without_correlation_tests() -> None:
    """`correlation_tests` is optional to summary_lines, as `notes` is: without it, no BH line."""
    s = make_summary("r", {}, {"attention_split": "probe"})
    del s["correlation_tests"]
    assert summary_lines(s) == ["analysis of r (attention from split probe)", "  phases: none (None)",
                                "  head types: none emerged (None)", "  cycles: 0 closed, 0 open (not counted)",
                                "  claims: "]
