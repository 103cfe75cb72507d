"""summary.json of an analysis and the few lines `attnlife analyze` prints from it."""
from __future__ import annotations

import math

import pandas as pd

from attnlife.analysis.correlations import CHANGE_KINDS, findings
from attnlife.analysis.health import health_lines


def _clean_number(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def make_summary(run_root: str, tables: dict[str, pd.DataFrame], notes: dict) -> dict:
    """JSON-ready summary: notes, model-level phases, emergences, induction phase, cycle counts,
    the findings among the correlations (associations of changes with p_bh < 0.05, strongest first:
    `correlations.findings`; raw co-trends never), claim verdict counts, table sizes."""
    phases = tables.get("phases", pd.DataFrame())
    model_phases = phases[phases.scope == "model"] if len(phases) else phases
    corr = tables.get("correlations", pd.DataFrame())
    top = findings(corr).head(5)   # findings of an empty table is that table
    tested = corr[corr.kind.isin(CHANGE_KINDS)] if len(corr) else corr
    cycles = tables.get("cycles", pd.DataFrame())
    claims = tables.get("claims", pd.DataFrame())
    induction = tables.get("induction_phase", pd.DataFrame())
    return {
        "run": str(run_root),
        "notes": notes,
        "phases": [{"start_step": int(r.start_step), "end_step": int(r.end_step), "label": r.label,
                    "evidence": r.evidence} for r in model_phases.itertuples()],
        "emergence": [{"layer": int(r.layer), "head_index": int(r.head_index), "type": r.type,
                       "emergence_step": int(r.emergence_step)} for r in tables.get("emergence", pd.DataFrame()).itertuples()],
        "induction_phase": {k: _clean_number(v) for k, v in induction.iloc[0].items()} if len(induction) else None,
        "cycles": {"closed": int((cycles.status == "closed").sum()) if len(cycles) else 0,
                   "open": int((cycles.status == "open").sum()) if len(cycles) else 0},
        "top_correlations": [{"x": r.x, "x_layer": int(r.x_layer), "x_head": int(r.x_head), "y": r.y, "kind": r.kind,
                              "rho": float(r.rho), "p": float(r.p), "p_bh": float(r.p_bh), "n": int(r.n),
                              "p_min": float(r.p_min)} for r in top.itertuples()],
        "correlation_tests": {"changes": int(len(tested)), "total": int(len(corr)),
                              "min_p": float(corr.p.min()) if len(corr) else None},
        "claims": claims.verdict.value_counts().to_dict() if len(claims) else {},
        "tables": {name: int(len(frame)) for name, frame in tables.items()},
    }


def summary_lines(summary: dict) -> list[str]:
    """A short human summary: phases with steps, head types that emerged, strongest correlations, claims."""
    notes = summary.get("notes", {})
    lines = [f"analysis of {summary['run']} (attention from split {notes.get('attention_split')})"]
    if notes.get("excluded_steps"):
        lines.append(f"  excluded checkpoints (duplicate or non-finite weights): {notes['excluded_steps']}")
    if summary["phases"]:
        lines.append("  phases: " + ", ".join(f"{p['label']} {p['start_step']}-{p['end_step']}" for p in summary["phases"]))
    else:
        lines.append(f"  phases: none ({notes.get('phases')})")
    if summary["emergence"]:
        first = sorted(summary["emergence"], key=lambda e: e["emergence_step"])[:8]
        lines.append("  head types emerged: " + ", ".join(
            f"L{e['layer']}H{e['head_index']} {e['type']} @ {e['emergence_step']}" for e in first))
    else:
        lines.append(f"  head types: none emerged ({notes.get('head_types')})")
    if summary["induction_phase"]:
        ip = summary["induction_phase"]
        lines.append(f"  induction phase change at step {int(ip['step'])} (loss bump {ip['loss_bump']} nats)")
    lines.append(f"  cycles: {summary['cycles']['closed']} closed, {summary['cycles']['open']} open (not counted)")
    tests = summary.get("correlation_tests", {})
    if not summary["top_correlations"] and tests.get("changes"):
        lines.append(f"  correlations: no association of changes survives BH (p_bh < 0.05) among "
                     f"{tests['changes']} tests; raw co-trends are not reported")
    for c in summary["top_correlations"][:3]:
        where = "model" if c["x_layer"] < 0 else f"L{c['x_layer']}" + ("" if c["x_head"] < 0 else f"H{c['x_head']}")
        lines.append(f"  {c['kind']}: {c['x']} ({where}) vs {c['y']}: rho {c['rho']:+.2f}, p {c['p']:.2g} "
                     f"(min attainable {c['p_min']:.2g}), p_bh {c['p_bh']:.2g}, n {c['n']}")
    lines.append("  claims: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["claims"].items())))
    if "health" in notes:
        lines += health_lines(notes["health"])
    return lines
