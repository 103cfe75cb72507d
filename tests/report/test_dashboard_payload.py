"""Every dashboard payload part against the stored table it is cut from (read here through the store,
not through the report's readers): decoded cubes equal the per-head tables, step by step and head by
head; analysis parts equal the analysis tables; thinning and byte budgets at their limits."""
from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import attnlife
from attnlife.report import dashboard_data as D
from attnlife.report.data import ReportRun
from tests.support.synthetic import write_synthetic_run


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return write_synthetic_run(tmp_path_factory.mktemp("dash") / "run", n_layer=2, n_head=3, n_ckpt=6,
                               pattern_tokens=8)


def _f32(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


def _cube(frame: pd.DataFrame, n_layer: int, n_head: int) -> tuple[list[int], np.ndarray]:
    """steps, values [S, L, H] from tidy per-head rows, by hand."""
    steps = sorted(frame.step.unique())
    out = np.full((len(steps), n_layer, n_head), np.nan)
    for r in frame.itertuples():
        out[steps.index(r.step), r.layer, r.head_index] = r.value
    return [int(s) for s in steps], out


def test_b64_is_little_endian_float32_in_c_order() -> None:
    x = np.array([[1.5, -2.0], [3.25, 1e-3]])
    raw = base64.b64decode(D.b64_f32(x))
    assert raw == np.array([1.5, -2.0, 3.25, 1e-3], dtype="<f4").tobytes()
    assert D.b64_f32(np.asfortranarray(x)) == D.b64_f32(x)


def test_payload_cubes_equal_the_stored_per_head_tables(synthetic: Path) -> None:
    run = attnlife.load_run(synthetic)
    payload = D.build_payload(ReportRun(synthetic))
    assert (payload["n_layer"], payload["n_head"]) == (2, 3)
    m = run.metrics()
    heads = m[(m.layer >= 0) & (m.head_index >= 0) & (m.layer_b < 0)]
    for metric in ("entropy_bits", "span_tokens", "sink_mass"):
        entry = payload["stats"][metric]
        steps, want = _cube(heads[heads.metric == metric], 2, 3)
        assert entry["steps"] == steps and entry["source"] == "attention"
        assert entry["unit"] == D.ATTENTION_UNITS[metric]
        np.testing.assert_array_equal(_f32(entry["values"]), want.astype("<f4").ravel())   # step, layer, head
    assert payload["stats"]["prev_token_score"]["unit"] == "score"
    spectra = run.spectra()
    qk = spectra[(spectra.matrix == "qk") & (spectra.head_index >= 0)]
    for stat in sorted(set(qk.stat) & set(D.WEIGHT_STATS)):
        entry = payload["stats"][stat]
        steps, want = _cube(qk[qk.stat == stat], 2, 3)
        assert entry["steps"] == steps and entry["source"] == "weights" and entry["unit"] == D.WEIGHT_STATS[stat]
        np.testing.assert_array_equal(_f32(entry["values"]), want.astype("<f4").ravel())
    assert "stable_rank" in payload["stats"]


def test_eigen_payload_keeps_the_leading_lambdas(synthetic: Path) -> None:
    run = ReportRun(synthetic)
    steps, lam = run.array_series("qk.lambda")
    entry = D.eigen(run)
    k = min(D.MAX_EIGEN, lam.shape[-1])
    assert entry["steps"] == [int(s) for s in steps] and entry["k"] == k
    np.testing.assert_array_equal(_f32(entry["values"]), lam[..., :k].astype("<f4").ravel())


def test_snapshots_are_the_stored_patterns_as_bytes(synthetic: Path) -> None:
    run = ReportRun(synthetic)
    store = attnlife.load_run(synthetic).snapshots()
    entry = D.snapshots(run, (2, 3))
    steps = store.steps("layer0")
    assert entry["steps"] == [int(s) for s in steps] and entry["t"] == 8 and entry["packing"] == "lower"
    packed = np.frombuffer(base64.b64decode(entry["values"]), dtype=np.uint8).reshape(len(steps), 2, 3, 8 * 9 // 2)
    frames = np.zeros((len(steps), 2, 3, 8, 8), dtype=np.uint8)
    frames[..., np.tril_indices(8)[0], np.tril_indices(8)[1]] = packed  # causal: the lower triangle travels
    for i, step in enumerate(steps):
        for layer in (0, 1):
            want = np.round(np.clip(store.read(f"layer{layer}", step).float().numpy(), 0, 1) * 255)
            np.testing.assert_array_equal(frames[i, layer], want.astype(np.uint8))
    assert D.snapshots(run, (3, 3)) is None                             # a layer without patterns: none


def test_snapshot_steps_are_thinned_evenly_to_the_byte_budget(synthetic: Path, monkeypatch) -> None:
    run = ReportRun(synthetic)
    steps = attnlife.load_run(synthetic).snapshots().steps("layer0")
    per_step = 2 * 3 * 8 * 9 // 2                                      # lower triangles of 8 x 8
    monkeypatch.setattr(D, "PATTERN_BUDGET_BYTES", 3 * per_step)        # room for exactly three steps
    entry = D.snapshots(run, (2, 3))
    want = [steps[i] for i in sorted({int(round(x)) for x in np.linspace(0, len(steps) - 1, 3)})]
    assert entry["steps"] == want and want[0] == steps[0] and want[-1] == steps[-1]
    monkeypatch.setattr(D, "PATTERN_BUDGET_BYTES", 1)                   # less than one step: first and last
    assert D.snapshots(run, (2, 3))["steps"] == [steps[0], steps[-1]]
    monkeypatch.setattr(D, "MAX_PATTERN_TOKENS", 5)                     # 8 positions pooled 2 x 2, never cropped
    pooled = D.snapshots(run, (2, 3))
    assert (pooled["t"], pooled["pool"], pooled["tokens"]) == (4, 2, 8)


def test_curves_and_samples_equal_the_model_level_rows(synthetic: Path) -> None:
    run = ReportRun(synthetic)
    m = attnlife.load_run(synthetic).metrics()
    got = D.curves(run)
    for key, metric, split in (("train_loss", "loss", "train"), ("val_loss", "eval_loss", "val"), ("lr", "lr", "train")):
        rows = m[(m.metric == metric) & (m.split == split) & (m.layer == -1)].sort_values("step")
        assert got[key] == {"step": rows.step.astype(int).tolist(), "value": np.round(rows.value, 5).tolist()}
    s = D.samples(run)
    rows = m[(m.split == "sample") & (m.layer == -1)]
    assert sorted(s["metrics"]) == sorted(rows.metric.unique())
    d2 = rows[rows.metric == "distinct_2"].sort_values("step")
    assert s["metrics"]["distinct_2"] == {"step": d2.step.astype(int).tolist(), "value": np.round(d2.value, 5).tolist()}


def test_analysis_parts_are_the_stored_tables(synthetic: Path) -> None:
    run = ReportRun(synthetic)
    a = attnlife.load_run(synthetic).analysis()
    parts = D.analysis_parts(run)
    phases = a["phases"]
    assert parts["phases"] == phases[["scope", "layer", "start_step", "end_step", "label"]].to_dict("records")
    emb = a["embedding"]
    assert parts["umap"]["points"] == emb[["layer", "head_index", "x", "y", "cluster"]].to_dict("records")
    assert parts["umap"]["edges"] == a["embedding_edges"][["src", "dst"]].to_dict("records")
    types = a["head_types"]
    lanes = parts["types"]
    assert lanes["steps"] == sorted(types.step.unique().astype(int).tolist())
    assert sorted(lanes["kinds"]) == sorted(types.type.unique())
    for r in types.itertuples():  # every stored label is the lane's code at that step
        row = lanes["lanes"].index(f"L{r.layer}H{r.head_index}")
        assert lanes["kinds"][lanes["codes"][row][lanes["steps"].index(int(r.step))]] == r.type
    for name, cols in (("emergence", ["layer", "head_index", "type", "emergence_step"]),
                       ("claims", ["claim_id", "source", "claim", "measured", "verdict", "reason"])):
        if name in a:
            assert parts[name] == a[name][cols].to_dict("records"), name


def test_records_turn_nan_into_null_and_skip_missing_columns() -> None:
    frame = pd.DataFrame({"step": [1, 2], "loss_bump": [0.5, np.nan], "other": [1, 2]})
    assert D._records(frame, ["step", "loss_bump", "absent"]) == [{"step": 1, "loss_bump": 0.5},
                                                                 {"step": 2, "loss_bump": None}]


def test_head_shape_falls_back_from_spectra_to_attention_to_the_record(tmp_path: Path) -> None:
    only_metrics = write_synthetic_run(tmp_path / "m", n_layer=3, n_head=2, parts=("metrics",))
    assert tuple(D.head_shape(ReportRun(only_metrics))) == (3, 2)
    bare = write_synthetic_run(tmp_path / "b", n_layer=4, n_head=5, parts=())
    assert D.head_shape(ReportRun(bare)) == (4, 5)
    payload = D.build_payload(ReportRun(bare))
    assert payload["n_layer"] == 4 and payload["stats"] == {} and payload["eigen"] is None
    assert payload["snapshots"] is None and payload["curves"] == {} and payload["samples"] == {"metrics": {}}


def _with_emergence(run_dir: Path, copy: Path, layer: list, head_index: list, types: list, steps: list,
                    loss: list) -> Path:
    """A copy of `run_dir` at `copy` whose emergence table holds the given rows (threshold 0.4)."""
    import shutil

    from attnlife.store.analysis_tables import write_analysis_table

    shutil.copytree(run_dir, copy)
    write_analysis_table(copy, "emergence", pd.DataFrame({
        "layer": layer, "head_index": head_index, "type": types, "emergence_step": steps, "threshold": 0.4,
        "probe_loss_nats": loss}))
    return copy


def _reordered_emergence(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of `run_dir` whose emergence table has L1H2 (previous token) first, then L0H1 (sink)."""
    return _with_emergence(run_dir, tmp_path / "reordered", [0, 1, 0], [1, 2, 2],
                           ["sink", "previous_token", "previous_token"], [60, 20, 90], [2.0, 2.5, 1.9])


def test_snapshots_open_on_the_heads_that_emerged_earliest_of_each_type_first(synthetic: Path, tmp_path: Path) -> None:
    copy = _reordered_emergence(synthetic, tmp_path)
    entry = D.snapshots(ReportRun(copy), (2, 3))
    table = attnlife.load_run(copy).analysis()["emergence"].sort_values("emergence_step")
    first = table.iloc[0]
    assert (entry["heads"][0]["layer"], entry["heads"][0]["head"]) == (int(first.layer), int(first.head_index)) == (1, 2)
    # earliest of each type first (L1H2 previous token, L0H1 sink), then the second previous-token head
    assert [(h["layer"], h["head"]) for h in entry["heads"]] == [(1, 2), (0, 1), (0, 2)]
    assert entry["heads"][0]["note"] == "previous_token from step 20"
    assert entry["heads"][2]["note"] == "previous_token from step 90"
    assert "emerged as a type" in entry["rule"]
    chosen = D.snapshots(ReportRun(copy, heads=[(0, 0)]), (2, 3))       # --heads wins
    assert chosen["heads"] == [{"layer": 0, "head": 0, "note": "chosen"}] and "--heads" in chosen["rule"]


def test_snapshots_without_emergence_say_so(synthetic: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "none"
    shutil.copytree(synthetic, copy)
    (copy / "analysis" / "emergence.parquet").unlink()
    entry = D.snapshots(ReportRun(copy), (2, 3))
    assert [(h["layer"], h["head"]) for h in entry["heads"]] == [(0, 0), (1, 0)]
    assert "no head type emerged" in entry["rule"]


def test_light_tier_rows_stay_out_of_the_attention_cubes(tmp_path: Path) -> None:
    run_dir = write_synthetic_run(tmp_path / "h", n_layer=2, n_head=3, parts=("metrics", "health"), n_light=7)
    m = attnlife.load_run(run_dir).metrics()
    assert (m.metric == "light_entropy_bits").sum() > 0
    stats = D.stats(ReportRun(run_dir), (2, 3))
    assert "entropy_bits" in stats and not [k for k in stats if k.startswith("light_")]


def test_health_signals_thinned_to_the_value_budget_keep_every_alert_step(tmp_path: Path, monkeypatch) -> None:
    from attnlife.report import dashboard_health as DH

    run_dir = write_synthetic_run(tmp_path / "h", n_layer=8, n_head=9, last_step=400,
                                  parts=("metrics", "analysis", "health"), n_light=60)
    m = attnlife.load_run(run_dir).metrics()
    light = m[(m.metric == "light_entropy_bits") & (m.split == "train")]
    alerts = m[m.metric.str.startswith("alert_")]
    all_steps = sorted(light.step.unique())
    assert DH.max_steps(16) == DH.MAX_STEPS == 2000 and DH.max_steps(384) == 666   # Pythia-1.4B: 384 heads
    monkeypatch.setattr(DH, "MAX_SIGNAL_VALUES", 72 * 10)               # 72 heads: 10 steps
    assert DH.max_steps(72) == 10 and DH.max_steps(1) == 720 and DH.max_steps(10**6) == 2
    got = DH.health_payload(ReportRun(run_dir), (8, 9))
    even = {all_steps[i] for i in np.linspace(0, len(all_steps) - 1, 10).round().astype(int)}
    assert set(got["steps"]) == even | set(alerts.step.astype(int))
    steps, want = _cube(light[light.step.isin(got["steps"])], 8, 9)
    assert steps == got["steps"]
    np.testing.assert_array_equal(_f32(got["signals"]["light_entropy_bits"]["values"]), want.astype("<f4").ravel())
    stored = alerts.sort_values(["step", "metric", "layer", "head_index"])
    assert [(a["step"], a["kind"], a["layer"], a["head_index"]) for a in got["alerts"]] == [
        (int(r.step), r.metric[len("alert_"):], int(r.layer), int(r.head_index)) for r in stored.itertuples()]
    assert got["events"] == [{"step": 200, "event": "spike", "loss": 2.5}]


def test_health_events_say_whether_the_run_was_analysed(tmp_path: Path) -> None:
    from attnlife.report import dashboard_health as DH
    from attnlife.store.analysis_tables import write_analysis_table

    run_dir = write_synthetic_run(tmp_path / "h", n_layer=2, n_head=2, parts=("metrics", "health"), n_light=5)
    assert DH.health_payload(ReportRun(run_dir), (2, 2))["events"] == [{"step": 100, "event": "spike", "loss": 2.5}]
    write_analysis_table(run_dir, "health_events", pd.DataFrame({"step": [], "event": [], "loss": []}))
    assert DH.health_payload(ReportRun(run_dir), (2, 2))["events"] == []          # analysed, none found
    (run_dir / "analysis" / "health_events.parquet").unlink()
    assert DH.health_payload(ReportRun(run_dir), (2, 2))["events"] is None        # not analysed


def test_a_head_that_took_two_types_is_named_with_both(synthetic: Path, tmp_path: Path) -> None:
    copy = _with_emergence(synthetic, tmp_path / "two", [0, 0, 1], [2, 2, 0], ["local", "previous_token", "sink"],
                           [50, 50, 80], [2.0, 2.0, 1.9])
    entry = D.snapshots(ReportRun(copy), (2, 3))
    assert entry["heads"][0] == {"layer": 0, "head": 2, "note": "local from step 50, previous_token from step 50"}
    assert entry["heads"][1] == {"layer": 1, "head": 0, "note": "sink from step 80"}
