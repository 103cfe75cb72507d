"""Every dashboard payload part compared whole with the stored rows it is cut from (dict equality, so a
renamed key, a dropped column or a wrong split fails): curves with their standard errors and the
smoothed loss, generation metrics and texts, the embedding and its notes, the induction phase, the
type lanes, per-head standard errors, and the payload's own keys."""
from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import attnlife
from attnlife.report import dashboard_data as D
from attnlife.report.data import ReportRun
from attnlife.store.analysis_tables import write_analysis_table
from attnlife.store.metrics_table import MetricWriter
from tests.support.synthetic import write_synthetic_run


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = write_synthetic_run(tmp_path_factory.mktemp("parts") / "run", n_layer=2, n_head=3, n_ckpt=5,
                               pattern_tokens=8)
    write_analysis_table(root, "samples", pd.DataFrame({"step": [10, 20], "text": ["ab\nc", "ba"]}))
    writer = MetricWriter(root)                                    # model-level rows of other kinds
    writer.log(20, "sample_tokens_per_s", 99.0, split="sample")     # a speed, not generation quality
    writer.log(20, "distinct_9", 0.5, split="train")                # another split
    writer.close()
    return root


def _series(m: pd.DataFrame, metric: str, split: str) -> dict:
    rows = m[(m.metric == metric) & (m.split == split) & (m.layer == -1) & (m.head_index == -1)].sort_values("step")
    out = {"step": rows.step.astype(int).tolist(), "value": np.round(rows.value.astype(float), 5).tolist()}
    if np.isfinite(rows.stderr.to_numpy(float)).any():
        out["stderr"] = np.round(rows.stderr.astype(float), 6).tolist()
    return out


def test_curves_are_the_model_level_rows_with_stderr_and_the_smoothed_loss(synthetic: Path) -> None:
    from attnlife.report.figures_training import trailing_mean

    m = attnlife.load_run(synthetic).metrics()
    loss = m[(m.metric == "loss") & (m.split == "train") & (m.layer == -1)].sort_values("step")
    want = {"train_loss": _series(m, "loss", "train"), "val_loss": _series(m, "eval_loss", "val"),
            "probe_loss": _series(m, "probe_loss_nats", "probe"), "lr": _series(m, "lr", "train"),
            "train_loss_smooth": {"step": loss.step.astype(int).tolist(), "value": np.round(
                trailing_mean(loss.step.to_numpy(), loss.value.to_numpy()), 5).tolist()}}
    assert "stderr" in want["probe_loss"] and "stderr" not in want["train_loss"]
    assert D.curves(ReportRun(synthetic)) == want


def test_samples_are_the_generation_rows_of_split_sample_and_the_stored_texts(synthetic: Path) -> None:
    m = attnlife.load_run(synthetic).metrics()
    names = sorted(n for n in m[(m.split == "sample") & (m.layer == -1)].metric.unique()
                   if n.startswith(("distinct_", "repetition_")) or n == "mean_logprob_nats")
    assert names and "sample_tokens_per_s" not in names
    assert D.samples(ReportRun(synthetic)) == {"metrics": {n: _series(m, n, "sample") for n in names},
                                               "texts": [{"step": 10, "text": "ab\nc"}, {"step": 20, "text": "ba"}]}


def test_umap_and_induction_phase_parts_are_the_stored_tables_and_notes(synthetic: Path) -> None:
    run = attnlife.load_run(synthetic)
    a, notes = run.analysis(), run.analysis_summary()["notes"]["embedding"]
    parts = D.analysis_parts(ReportRun(synthetic))
    assert parts["umap"] == {
        "points": a["embedding"][["layer", "head_index", "x", "y", "cluster"]].to_dict("records"),
        "edges": a["embedding_edges"][["src", "dst"]].to_dict("records"),
        "info": {k: notes[k] for k in ("method", "n_neighbors", "explained", "silhouette") if k in notes}}
    assert set(parts["umap"]["info"]) >= {"method", "n_neighbors"}
    ip = a["induction_phase"]
    assert parts["induction_phase"] == ip[["step", "loss_bump"]].astype(object).where(
        ip[["step", "loss_bump"]].notna(), None).to_dict("records")


def test_type_lanes_codes_ticks_and_the_mixed_kind_last(synthetic: Path, tmp_path: Path) -> None:
    from attnlife.report.figures_analysis import emerged_heads, lanes_shown

    root = write_synthetic_run(tmp_path / "r", n_layer=2, n_head=2, n_ckpt=4, parts=("analysis",))
    types = attnlife.load_run(root).analysis()["head_types"]
    first = types.step.min()
    drop = (types.layer == 1) & (types.head_index == 1) & (types.step == first)   # a head unlabelled at a step
    mixed = (types.layer == 0) & (types.head_index == 0)
    types = types[~drop].copy()
    types.loc[mixed, "type"] = "mixed"
    write_analysis_table(root, "head_types", types)
    run = ReportRun(root)
    lanes, left_out = lanes_shown(run, types)
    got = D.type_lanes(run)
    kinds = sorted(set(types.type) - {"mixed"}) + ["mixed"]
    steps = sorted(types.step.unique().astype(int).tolist())
    label = {(int(r.layer), int(r.head_index), int(r.step)): kinds.index(r.type) for r in types.itertuples()}
    assert got == {"steps": steps, "lanes": [f"L{a}H{b}" for a, b in lanes], "kinds": kinds,
                   "codes": [[label.get((a, b, s), kinds.index("mixed")) for s in steps] for a, b in lanes],
                   "emergence": [{"lane": lanes.index((a, b)), "step": s, "type": k}
                                 for a, b, k, s in emerged_heads(run) if (a, b) in lanes],
                   "left_out": left_out}
    assert got["codes"][lanes.index((1, 1))][0] == len(kinds) - 1                 # unlabelled: mixed
    assert len(got["emergence"]) == len(emerged_heads(run)) > 0


def test_per_head_stderr_cubes_and_the_payload_keys(synthetic: Path) -> None:
    run = ReportRun(synthetic)
    m = attnlife.load_run(synthetic).metrics()
    payload = D.build_payload(run)
    assert payload["name"] == run.name and payload["dataset"] == run.dataset == "synthetic"
    assert payload["eigen"] == D.eigen(run) and payload["eigen"] is not None
    assert payload["snapshots"] == D.snapshots(run, (2, 3)) and payload["snapshots"] is not None
    heads = m[(m.metric == "entropy_bits") & (m.layer >= 0) & (m.head_index >= 0)]
    split = "probe" if (heads.split == "probe").any() else "train"
    heads = heads[heads.split == split]
    steps = sorted(heads.step.unique())
    se = np.full((len(steps), 2, 3), np.nan)
    for r in heads.itertuples():
        se[steps.index(r.step), r.layer, r.head_index] = r.stderr
    got = np.frombuffer(base64.b64decode(payload["stats"]["entropy_bits"]["stderr"]), dtype="<f4")
    np.testing.assert_array_equal(got, se.astype("<f4").ravel())


def test_head_shape_of_a_run_without_any_shape_is_none(tmp_path: Path) -> None:
    from attnlife.store.run_dir import write_run_json

    write_run_json(tmp_path / "r", {"config": {"data": {"dataset": "x"}}})          # no model section
    assert D.head_shape(ReportRun(tmp_path / "r")) is None
    write_run_json(tmp_path / "s", {"config": {"model": {"n_embd": 8}}})             # a model without layers
    assert D.head_shape(ReportRun(tmp_path / "s")) is None


def _decode(entry: dict, n_layer: int, n_head: int) -> np.ndarray:
    """uint8 frames [S, L, H, t, t] of a snapshots entry (lower-triangle packing unpacked)."""
    raw = np.frombuffer(base64.b64decode(entry["values"]), dtype=np.uint8)
    t, s = entry["t"], len(entry["steps"])
    if entry["packing"] == "full":
        return raw.reshape(s, n_layer, n_head, t, t)
    frames = np.zeros((s, n_layer, n_head, t, t), dtype=np.uint8)
    rows, cols = np.tril_indices(t)
    frames[..., rows, cols] = raw.reshape(s, n_layer, n_head, -1)
    return frames


def test_pooled_and_non_causal_snapshots_are_the_stored_patterns(tmp_path: Path, monkeypatch) -> None:
    import torch

    from attnlife.store.snapshots import SnapshotStore

    root = write_synthetic_run(tmp_path / "r", n_layer=1, n_head=2, parts=())
    g = torch.Generator().manual_seed(0)
    full = torch.softmax(torch.randn(1, 2, 6, 6, generator=g), dim=-1)          # attends ahead: not causal
    store = SnapshotStore(root)
    for step in (0, 5):
        store.write_many(step, {0: full[0] * (1 + step / 10)})                   # step 5: values above 1
    run = ReportRun(root)
    entry = D.snapshots(run, (1, 2))
    assert (entry["packing"], entry["t"], entry["pool"], entry["tokens"]) == ("full", 6, 1, 6)
    got = _decode(entry, 1, 2)
    for i, step in enumerate((0, 5)):
        p = store.read("layer0", step).float().numpy()
        np.testing.assert_array_equal(got[i, 0], np.round(np.clip(p, 0, 1) * 255).astype(np.uint8))
    assert got[1].max() == 255                                                    # clipped at 1
    monkeypatch.setattr(D, "MAX_PATTERN_TOKENS", 4)                               # 6 tokens pooled 2 x 2
    pooled = D.snapshots(run, (1, 2))
    assert (pooled["t"], pooled["pool"], pooled["tokens"]) == (3, 2, 6)
    p = store.read("layer0", 0).float().numpy()
    blocks = p.reshape(2, 3, 2, 3, 2).mean(axis=(-3, -1))                          # 2 x 2 block means
    np.testing.assert_array_equal(_decode(pooled, 1, 2)[0, 0], np.round(np.clip(blocks, 0, 1) * 255).astype(np.uint8))
    odd = np.arange(2 * 5 * 5, dtype=np.float32).reshape(2, 5, 5)                # 5 pooled by 2: zero padding
    padded = np.zeros((2, 6, 6), dtype=np.float32)
    padded[:, :5, :5] = odd
    np.testing.assert_allclose(D.pooled(odd, 2), padded.reshape(2, 3, 2, 3, 2).mean(axis=(-3, -1)), rtol=1e-6)
    assert D.pooled(odd, 1) is odd


def test_head_shape_reads_the_spectra_then_the_attention_rows_before_the_record(tmp_path: Path) -> None:
    from attnlife.store.run_dir import write_run_json

    for parts in (("spectra",), ("metrics",)):
        root = write_synthetic_run(tmp_path / parts[0], n_layer=2, n_head=3, n_ckpt=5, parts=parts)
        write_run_json(root, {"config": {"model": {"n_layer": 9, "n_head": 9}}})   # a record that disagrees
        assert tuple(D.head_shape(ReportRun(root))) == (2, 3), parts


def test_snapshot_budget_one_byte_short_of_three_steps_keeps_two(synthetic: Path, monkeypatch) -> None:
    run = ReportRun(synthetic)
    steps = attnlife.load_run(synthetic).snapshots().steps("layer0")
    per_step = 2 * 3 * 8 * 9 // 2                                          # lower triangles (with the diagonal)
    monkeypatch.setattr(D, "PATTERN_BUDGET_BYTES", 3 * per_step - 1)
    assert D.snapshots(run, (2, 3))["steps"] == [steps[0], steps[-1]]
    monkeypatch.setattr(D, "PATTERN_BUDGET_BYTES", 3 * per_step)
    assert len(D.snapshots(run, (2, 3))["steps"]) == 3


def test_parts_of_a_run_with_less_stored(tmp_path: Path) -> None:
    """Steps travel as JSON integers, stderr at 6 decimals; an embedding without edges or notes, and
    a lane without a label at a step when no head is 'mixed' (code -1)."""
    from attnlife.store.analysis_tables import write_summary

    root = write_synthetic_run(tmp_path / "r", n_layer=2, n_head=2, n_ckpt=5, parts=("metrics", "analysis"))
    writer = MetricWriter(root)
    writer.log(7, "probe_loss_nats", 2.5, split="probe", stderr=0.123456789)
    writer.close()
    curve = D.curves(ReportRun(root))["probe_loss"]
    assert all(type(s) is int for s in curve["step"])
    assert curve["stderr"][curve["step"].index(7)] == 0.123457
    write_summary(root, {"run": str(root)})                                 # analysed before notes existed
    types = attnlife.load_run(root).analysis()["head_types"]
    types = types[types.type != "mixed"]
    counts = types.groupby(["layer", "head_index"]).size()
    la, hb = counts[counts >= 2].index[0]                                  # a head labelled at 2+ steps
    mine = types[(types.layer == la) & (types.head_index == hb)].step
    others = set(types[(types.layer != la) | (types.head_index != hb)].step)
    gone = int(next(st for st in sorted(mine) if st in others))            # a step other heads keep
    types = types[~((types.layer == la) & (types.head_index == hb) & (types.step == gone))]
    write_analysis_table(root, "head_types", types)
    (root / "analysis" / "embedding_edges.parquet").unlink()
    parts = D.analysis_parts(ReportRun(root))
    assert parts["umap"]["edges"] == [] and parts["umap"]["info"] == {}
    lanes = parts["types"]
    row = lanes["codes"][lanes["lanes"].index(f"L{la}H{hb}")]
    assert "mixed" not in lanes["kinds"] and row[lanes["steps"].index(gone)] == -1
    write_summary(root, {"run": str(root), "notes": {"other": 1}})           # notes without an embedding entry
    assert D.analysis_parts(ReportRun(root))["umap"]["info"] == {}
    assert D.pooled(np.ones((1, 3, 3), dtype=np.float32), 2).dtype == np.float32


def test_curve_steps_are_ints_in_the_payload(synthetic: Path) -> None:
    curves = D.curves(ReportRun(synthetic))
    assert all(type(s) is int for key in curves for s in curves[key]["step"])


def _bare_with_emergence(root: Path, heads: list[tuple[int, int, str, int]]) -> ReportRun:
    """A run with nothing stored but an emergence table of `heads` (layer, head, type, step)."""
    write_synthetic_run(root, n_layer=4, n_head=3, parts=())
    write_analysis_table(root, "emergence", pd.DataFrame({
        "layer": [h[0] for h in heads], "head_index": [h[1] for h in heads], "type": [h[2] for h in heads],
        "emergence_step": [h[3] for h in heads], "threshold": 0.4, "probe_loss_nats": 2.0}))
    return ReportRun(root)


def test_snapshot_choice_opens_on_at_most_eight_heads_and_says_which_rule(tmp_path: Path) -> None:
    """Ten heads emerged (one type each, steps 10..100): the section opens on the eight earliest, the
    rule in words; a run without emergences opens on head 0 of layers spread over the depth."""
    emerged = [(i // 3, i % 3, "previous_token" if i % 2 else "sink", 10 * (i + 1)) for i in range(10)]
    got = D.snapshot_choice(_bare_with_emergence(tmp_path / "ten", emerged), (4, 3))
    assert [(h["layer"], h["head"]) for h in got["heads"]] == [(0, 0), (0, 1)] + [(i // 3, i % 3) for i in range(2, 8)]
    assert got["heads"][7] == {"layer": 2, "head": 1, "note": "previous_token from step 80"}
    assert got["rule"] == ("heads that emerged as a type (analysis/emergence), the earliest of each type first, "
                           "as in the attention_snapshots figure")
    none = D.snapshot_choice(ReportRun(write_synthetic_run(tmp_path / "none", n_layer=4, n_head=3, parts=())), (4, 3))
    assert none["heads"][0] == {"layer": 0, "head": 0, "note": "no head type emerged"}
    assert none["rule"] == ("heads spread over the depth (head 0 of each layer shown; no head type emerged in "
                            "analysis/emergence)")
    chosen = D.snapshot_choice(ReportRun(tmp_path / "none", heads=[(3, 2)]), (4, 3))
    assert chosen == {"heads": [{"layer": 3, "head": 2, "note": "chosen"}], "rule": "heads chosen with --heads"}


def _patterns_run(root: Path, steps: tuple[int, ...], pattern) -> tuple[ReportRun, Path]:  # noqa: ANN001
    """A 1 x 2 run whose snapshots (every one a keyframe) hold `pattern(step)` [2, 4, 4] at `steps`."""
    from attnlife.store.snapshots import SnapshotStore

    write_synthetic_run(root, n_layer=1, n_head=2, parts=())
    store = SnapshotStore(root, keyframe_every=1)
    for step in steps:
        store.write_many(step, {0: pattern(step)})
    return ReportRun(root), store.root / "layer0"


def test_a_damaged_snapshot_step_is_left_out_and_the_later_steps_still_shown(tmp_path: Path) -> None:
    import torch

    from attnlife.store.damage import DamagedFileWarning

    causal = torch.tril(torch.full((2, 4, 4), 0.25))
    run, folder = _patterns_run(tmp_path / "r", (0, 5, 10), lambda step: causal)
    files = sorted(folder.glob("*.npz"))
    files[1].write_bytes(files[1].read_bytes()[:40])                        # step 5 damaged
    with pytest.warns(DamagedFileWarning, match="step_0000005"):
        entry = D.snapshots(run, (1, 2))
    assert entry["steps"] == [0, 10] and entry["packing"] == "lower"
    np.testing.assert_array_equal(_decode(entry, 1, 2)[1, 0], np.round(causal.numpy() * 255).astype(np.uint8))
    for path in files:                                                      # no step readable: no section
        path.write_bytes(path.read_bytes()[:40])
    with pytest.warns(DamagedFileWarning):
        assert D.snapshots(run, (1, 2)) is None


def test_snapshot_values_below_zero_are_clipped_to_zero_not_wrapped(tmp_path: Path) -> None:
    import torch

    pattern = torch.tensor([[0.5, 0.0], [-0.02, 1.0]]).expand(2, 2, 2).clone()   # a foreign writer's rounding
    run, _ = _patterns_run(tmp_path / "r", (0,), lambda step: pattern)
    got = _decode(D.snapshots(run, (1, 2)), 1, 2)[0, 0, 1]                  # step 0, layer 0, head 1
    assert got.tolist() == [[128, 0], [0, 255]]


def test_type_lanes_of_more_heads_than_all_lanes_follow_the_figure(synthetic: Path, monkeypatch) -> None:
    """Beyond ALL_LANES_UP_TO heads the lanes are the figure's (emerged heads first); steps are JSON ints."""
    from attnlife.report import figures_analysis as FA

    run = ReportRun(synthetic)
    types = attnlife.load_run(synthetic).analysis()["head_types"]
    monkeypatch.setattr(FA, "ALL_LANES_UP_TO", 2)
    lanes, left_out = FA.lanes_shown(run, types)
    got = D.type_lanes(run)
    order = list(dict.fromkeys((a, b) for a, b, _, _ in FA.emerged_heads(run)))
    assert lanes[:len(order)] == order and order
    assert got["lanes"] == [f"L{a}H{b}" for a, b in lanes] and got["left_out"] == left_out
    assert got["steps"] == sorted(int(s) for s in types.step.unique())
    assert all(type(s) is int for s in got["steps"])
