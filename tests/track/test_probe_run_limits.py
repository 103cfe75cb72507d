"""The probe pass run over a series, at its edges: every row of one checkpoint against a float64
reference (token loss in nats with its standard error, the induction loss drop, the sink share,
the options that shape them), the pass over a series (the rows of each step on disk, resumed
without measuring anything twice or missing anything, an unreadable checkpoint skipped with its
warning, a rank's share), the executor, workers and hub store it hands the checkpoints to, and its
progress bar. Checkpoints are built directly (no training): every test here is fast.
"""
from __future__ import annotations

import copy
import json
import math
import re
import socket
from dataclasses import replace

import numpy as np
import pytest
import torch

import attnlife
from attnlife.model.gpt import GPT, GPTConfig
from attnlife.series.executors import LocalExecutor
from attnlife.series.models import load_series_model
from attnlife.series.refs import CheckpointRef, nanogpt_series
from attnlife.series.workers import run_in_processes
from attnlife.track import head_types as HT
from attnlife.track import probe_pass as P
from attnlife.track.accumulate import AttentionAccumulator
from attnlife.track.capture import capture_attention
from tests.spectra.test_sweep import CFG
from tests.track.test_probe_pass import _nanogpt_files

MODEL_LEVEL = ("probe_loss_nats", "induction_loss_drop_nats", "sink_head_share")


def _sharp_model() -> GPT:
    """A GPT whose attention is sharp enough that heads differ in kind: on PROBE below, head 0 of
    layer 1 puts 0.44 of its mass on the first token, every other head under 0.2."""
    torch.manual_seed(8)
    model = GPT(GPTConfig(**CFG)).eval()
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight.mul_(100.0)
    return model


def _probe() -> dict[str, torch.Tensor]:
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, CFG["vocab_size"], (4, 12)))
    return {"ids": ids, "repeated": HT.repeated_random_tokens(3, 6, CFG["vocab_size"], seed=0)}


def _reference(model: GPT, ids: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """(next-token loss [B, T-1] nats, layer -> probabilities [B, H, T, T]) of a float64 copy."""
    ref = copy.deepcopy(model).double()
    with torch.no_grad(), capture_attention(ref) as cap:
        logits = cap.forward(ids)[0]
    assert logits.dtype == torch.float64
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    loss = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    return loss, {layer: cap.patterns[f"blocks.{layer}.attn.pattern"] for layer in range(CFG["n_layer"])}


def _stderr(x: torch.Tensor) -> float:
    return float(x.std(unbiased=True) / math.sqrt(len(x)))


def _span_ref(a: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per-head mean over all defined rows of all sequences of mean |i - j| over keys j <= i with
    a_ij > threshold (a row with none is left out): [B, H, T, T] -> [H]."""
    T = a.size(-1)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    keep = (a > threshold) & (j <= i)
    count = keep.sum(-1).double()
    total = (keep.double() * (i - j).abs().double()).sum(-1)
    ok = count > 0
    return torch.where(ok, total / count.clamp_min(1), torch.zeros_like(total)).sum((0, 2)) / ok.sum((0, 2))


def test_one_checkpoints_rows_equal_a_float64_reference() -> None:
    model, probe = _sharp_model(), _probe()
    options = P.ProbeOptions(span_threshold=0.2, query_chunk=5)
    rows = P.measure_checkpoint(model, probe, options)
    got = {(r.layer, r.head_index, r.metric): r for r in rows}
    assert len(got) == len(rows)                                             # one row per key
    # model-level rows are model level: layer -1, head -1, and nothing else carries their names
    assert [(r.layer, r.head_index, r.layer_b) for r in rows if r.metric in MODEL_LEVEL] == [(-1, -1, -1)] * 3

    loss, patterns = _reference(model, probe["ids"])                        # [4, 11]
    per_seq = loss.mean(1)
    probe_loss = got[(-1, -1, "probe_loss_nats")]
    assert probe_loss.value == pytest.approx(float(per_seq.mean()), rel=1e-6)
    assert probe_loss.stderr == pytest.approx(_stderr(per_seq), rel=1e-4)
    assert _stderr(per_seq) > 1e-3                                           # the windows differ

    rep_loss, rep_patterns = _reference(model, probe["repeated"])            # [3, 11], h = 6
    drops = rep_loss[:, :5].mean(1) - rep_loss[:, 6:].mean(1)                # tokens 1..5 vs 7..11
    drop = got[(-1, -1, "induction_loss_drop_nats")]
    assert drop.value == pytest.approx(float(drops.mean()), rel=1e-5, abs=1e-6)
    assert drop.stderr == pytest.approx(_stderr(drops), rel=1e-4)
    assert _stderr(drops) > 1e-3

    sinks = torch.stack([patterns[layer][:, :, 1:, 0].mean((0, 2)) for layer in range(2)])  # [L, H]
    for layer in range(2):
        for h in range(2):
            assert got[(layer, h, "sink_mass")].value == pytest.approx(float(sinks[layer, h]), abs=1e-6)
    assert float(sinks[1, 0]) > 0.4 and float(sinks.flatten()[[0, 1, 3]].max()) < 0.2   # head 0 decides
    assert got[(-1, -1, "sink_head_share")].value == 0.25                    # 1 head of 4 above 0.3

    for layer in range(2):                                                   # span at threshold 0.2
        want = _span_ref(patterns[layer], 0.2)
        assert not torch.allclose(want, _span_ref(patterns[layer], 0.01))    # the option matters
        for h in range(2):
            assert got[(layer, h, "span_tokens")].value == pytest.approx(float(want[h]), abs=1e-6)
        # induction score: a_{i, i-5} on rows i >= 6 of the repeated sequences
        rep = rep_patterns[layer]
        ind = torch.stack([rep[:, :, i, i - 5] for i in range(6, 12)], -1).mean((0, 2))
        for h in range(2):
            assert got[(layer, h, "induction_score")].value == pytest.approx(float(ind[h]), abs=1e-6)


def test_query_chunk_bounds_the_rows_of_every_sink_call_and_changes_no_value(monkeypatch) -> None:
    model, probe = _sharp_model(), _probe()
    calls: list[tuple[tuple[str, ...], int, int, int]] = []

    class Recording(AttentionAccumulator):
        def __call__(self, layer: int, first_row: int, probs: torch.Tensor) -> None:
            calls.append((self.metrics, layer, first_row, probs.size(2)))
            super().__call__(layer, first_row, probs)

    monkeypatch.setattr(P, "AttentionAccumulator", Recording)
    chunked = P.measure_checkpoint(model, probe, P.ProbeOptions(query_chunk=5))
    for metrics in {c[0] for c in calls}:                 # the probe text's and the repeats' sinks
        for layer in range(2):
            assert [(r, t) for m, l, r, t in calls if m == metrics and l == layer] == [(0, 5), (5, 5), (10, 2)]
    assert len({c[0] for c in calls}) == 2
    calls.clear()
    whole = P.measure_checkpoint(model, probe, P.ProbeOptions())        # 256 rows: one call per layer
    assert sorted((l, r, t) for _, l, r, t in calls) == [(0, 0, 12), (0, 0, 12), (1, 0, 12), (1, 0, 12)]
    assert [(r.layer, r.head_index, r.metric) for r in chunked] == [(r.layer, r.head_index, r.metric) for r in whole]
    for a, b in zip(chunked, whole):
        assert a.value == pytest.approx(b.value, rel=1e-5, abs=1e-6, nan_ok=True)   # float32 per chunk


def test_token_loss_is_nats_per_position_and_feeds_the_sink_in_chunks() -> None:
    model, ids = _sharp_model(), _probe()["ids"]
    seen: list[tuple[int, int, int]] = []
    loss = P._token_loss(model, ids, lambda layer, first, probs: seen.append((layer, first, probs.size(2))), 4)
    assert loss.shape == (4, 11) and loss.dtype == torch.float32
    want, _ = _reference(model, ids)
    assert torch.allclose(loss.double(), want, rtol=1e-5, atol=1e-6)
    assert seen == [(0, 0, 4), (0, 4, 4), (0, 8, 4), (1, 0, 4), (1, 4, 4), (1, 8, 4)]


def test_logits_of_a_tuple_and_of_a_model_output_that_carries_a_loss() -> None:
    from transformers.modeling_outputs import CausalLMOutputWithPast

    logits, loss = torch.randn(2, 3, 5), torch.tensor(1.5)
    assert P._logits((logits, None)) is logits
    assert P._logits(CausalLMOutputWithPast(loss=loss, logits=logits)) is logits   # its [0] is the loss


def _rows_by_step(out) -> dict[int, list[tuple]]:
    frame = attnlife.load_run(out).metrics()
    frame = frame[frame.split == "probe"]
    out_rows: dict[int, list[tuple]] = {}
    for r in frame.sort_values(["layer", "head_index", "layer_b", "metric"]).itertuples():
        out_rows.setdefault(int(r.step), []).append((r.layer, r.head_index, r.layer_b, r.metric, r.value, r.stderr))
    return out_rows


def _expected(ref: CheckpointRef, probe: dict, options: P.ProbeOptions) -> list[tuple]:
    rows = P.measure_checkpoint(load_series_model(ref), probe, options)
    return sorted((r.layer, r.head_index, r.layer_b, r.metric, r.value, r.stderr) for r in rows)


def _same(stored: list[tuple], want: list[tuple]) -> bool:
    stored = sorted(stored, key=lambda r: r[:4])
    return [r[:4] for r in stored] == [r[:4] for r in want] and all(
        (math.isnan(a[4]) and math.isnan(b[4]) or a[4] == b[4]) and
        (math.isnan(a[5]) and math.isnan(b[5]) or a[5] == b[5]) for a, b in zip(stored, want))


OPTIONS = P.ProbeOptions(sequences=3, seq_len=8, repeat_sequences=2)


@pytest.fixture
def series(tmp_path):
    refs = nanogpt_series(_nanogpt_files(tmp_path, iters=(100, 200, 300)))
    tokens = np.random.default_rng(0).integers(0, CFG["vocab_size"], 200)
    probe = P.make_probe_set(tokens, CFG["vocab_size"], CFG["block_size"], OPTIONS)
    return refs, probe


def test_a_series_writes_each_steps_rows_once_and_resumes_from_its_markers(tmp_path, series, monkeypatch) -> None:
    refs, probe = series
    out = tmp_path / "out"
    key = P.options_key(OPTIONS, probe)
    loads: list[int] = []
    real_load = P.load_series_model
    monkeypatch.setattr(P, "load_series_model", lambda ref: loads.append(ref.step) or real_load(ref))
    # a pass stopped after two checkpoints, then the whole series: the third is measured, no other
    assert P.run_probe_pass(refs[:2], out, probe, OPTIONS, progress=False) == P.ProbeSummary(2, 0, ())
    assert P.run_probe_pass(refs, out, probe, OPTIONS, progress=False) == P.ProbeSummary(1, 2, ())
    assert loads == [100, 200, 300]                                        # each read once, in order
    stored = _rows_by_step(out)
    assert sorted(stored) == [100, 200, 300]
    for ref in refs:
        want = _expected(ref, probe, OPTIONS)
        assert _same(stored[ref.step], want)                              # no row twice, none missing
        marker = json.loads(P.done_path(out, "nanogpt", ref.step).read_text())
        assert marker == {"key": key, "rows": len(want)}
    assert stored[100] != stored[300]                                      # the steps' own values
    # nothing to do: every checkpoint skipped, nothing read (force defaults to off)
    assert P.run_probe_pass(refs, out, probe, OPTIONS, progress=False) == P.ProbeSummary(0, 3, ())
    assert loads == [100, 200, 300]
    again = _rows_by_step(out)
    assert sorted(again) == [100, 200, 300]
    assert all(_same(again[ref.step], _expected(ref, probe, OPTIONS)) for ref in refs)
    assert P.run_probe_pass(refs, out, probe, OPTIONS, progress=False, force=True) == P.ProbeSummary(3, 0, ())
    assert loads == [100, 200, 300] * 2


def test_an_unreadable_checkpoint_is_skipped_with_a_warning_and_tried_again(tmp_path, series, capsys) -> None:
    refs, probe = series
    bad = tmp_path / "ckpt_200_damaged.pt"
    bad.write_bytes(b"not a   checkpoint")
    refs = [refs[0], replace(refs[1], path=str(bad)), refs[2]]
    out = tmp_path / "out"
    line = (f"skipped nanogpt step 200: cannot read {bad} as a nanoGPT ckpt.pt (RuntimeError); "
            f"expected torch.save({{'model': ..., 'model_args': ...}})")
    summary = P.run_probe_pass(refs, out, probe, OPTIONS, progress=False)
    assert summary == P.ProbeSummary(measured=2, skipped=0, failed=(line,))
    captured = capsys.readouterr()
    assert captured.err == f"warning: {line}\n" and captured.out == ""    # no bar: progress off
    assert sorted(_rows_by_step(out)) == [100, 300]
    assert not P.done_path(out, "nanogpt", 200).exists()
    again = P.run_probe_pass(refs, out, probe, OPTIONS, progress=False)   # not done: read again
    assert again == P.ProbeSummary(measured=0, skipped=2, failed=(line,))


def test_an_error_message_spread_over_lines_is_one_warning_line(tmp_path, series, monkeypatch) -> None:
    from attnlife.errors import CheckpointError

    refs, probe = series

    def broken(ref):
        raise CheckpointError("weights of\n  the file\tdo not fit")

    monkeypatch.setattr(P, "load_series_model", broken)
    skipped = P._measure_or_skip(refs[0], str(tmp_path), probe, OPTIONS, "k")
    assert skipped == "skipped nanogpt step 100: weights of the file do not fit"
    with pytest.raises(P.ProbeSetError) as err:
        P.first_readable_model(refs[:2])
    assert str(err.value) == ("none of the 2 checkpoints could be read (first: nanogpt step 100: weights of the "
                              "file do not fit)")


def test_first_readable_model_skips_unreadable_ones_and_names_an_empty_series(tmp_path, series) -> None:
    refs, _ = series
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"x")
    model = P.first_readable_model([replace(refs[0], path=str(bad)), refs[1], refs[2]])
    want = load_series_model(refs[1]).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
    with pytest.raises(P.ProbeSetError) as err:
        P.first_readable_model([])
    assert str(err.value) == "none of the 0 checkpoints could be read"


def test_a_rank_measures_its_share_of_the_series(tmp_path, series) -> None:
    refs, probe = series
    out = tmp_path / "out"
    summary = P.run_probe_pass(refs, out, probe, OPTIONS, rank=1, world_size=2, progress=False)
    assert summary == P.ProbeSummary(1, 0, ())
    assert sorted(_rows_by_step(out)) == [200]                            # rank 1 of 2: checkpoints 1, 3, ...


def test_the_progress_bar_counts_checkpoints_on_stderr(tmp_path, series, capsys) -> None:
    refs, probe = series
    P.run_probe_pass(refs[:2], tmp_path / "out", probe, OPTIONS)           # progress on by default
    captured = capsys.readouterr()
    final = captured.err.replace("\r", "\n").strip().splitlines()[-1]
    assert re.fullmatch(r"probe: 100%\|[^|]*\| 2/2 \[[^\]]*(\?|[0-9.]+)ckpt/s\]", final), captured.err
    assert captured.out == ""
    P.run_probe_pass(refs[:2], tmp_path / "again", probe, OPTIONS, progress=False)
    assert capsys.readouterr().err == ""


class Recorder:
    """An executor that records the tasks it is given and reports each as measured."""

    def __init__(self) -> None:
        self.tasks: list = []
        self.reported = 0

    def map(self, fn, jobs, on_done=None):  # noqa: ANN001
        results = []
        for (task,) in jobs:
            self.tasks.append(task)
            results.append((None,))
            if on_done is not None:
                on_done(results[-1])
                self.reported += 1
        return results


def test_checkpoints_go_to_the_given_executor_with_the_hub_store_for_hub_revisions(tmp_path, series) -> None:
    """Hub revisions carry the hub store to their task (it fetches and evicts them); local ones do
    not; and before the pass, the store evicts what a killed pass left: revisions already measured
    and revisions outside the series, never one still to measure."""
    refs, probe = series
    out, cache = tmp_path / "out", tmp_path / "cache"
    store = (str(tmp_path / "hub"), False, str(cache))
    hub = [CheckpointRef("org/m", s, "hub", "", {"repo": "org/m", "revision": f"step{s}"}) for s in (1, 2)]
    key = P.options_key(OPTIONS, probe)
    P.done_path(out, "org/m", 1).parent.mkdir(parents=True)
    P.done_path(out, "org/m", 1).write_text(json.dumps({"key": key, "rows": 1}))   # step1 measured
    ledger, revisions = tmp_path / "hub" / socket.gethostname() / "models--org--m.json", {}
    for rev in ("step1", "step2", "step9"):                                # step9: not in the series
        snap = cache / "models--org--m" / "snapshots" / f"c-{rev}"
        snap.mkdir(parents=True)
        (snap / "model.safetensors").write_bytes(b"w")
        rel = f"models--org--m/snapshots/c-{rev}"
        revisions[rev] = {"commit": f"c-{rev}", "owned": [rel, f"{rel}/model.safetensors"], "candidates": []}
    ledger.parent.mkdir(parents=True)
    ledger.write_text(json.dumps({"cache": str(cache), "host": socket.gethostname(), "revisions": revisions,
                                  "orphans": [], "created": []}))
    executor = Recorder()
    summary = P.run_probe_pass([refs[0], *hub], out, probe, OPTIONS, progress=False, executor=executor, store=store)
    assert summary == P.ProbeSummary(measured=2, skipped=1, failed=())
    assert [(t.ref, t.store) for t in executor.tasks] == [(refs[0], None), (hub[1], store)]
    assert all(len(t.passes) == 1 and isinstance(t.passes[0], P.ProbePass) and t.passes[0].key == key
               for t in executor.tasks)
    assert executor.reported == 2
    left = sorted(p.name for p in (cache / "models--org--m" / "snapshots").iterdir())
    assert left == ["c-step2"]                                             # the pending one stays
    assert list(json.loads(ledger.read_text())["revisions"]) == ["step2"]


def test_the_default_executor_is_local_with_the_workers_asked_for(tmp_path, series, monkeypatch) -> None:
    refs, probe = series
    made: list[int] = []

    class Here(LocalExecutor):
        def __init__(self, workers: int = 1) -> None:
            super().__init__(workers)
            made.append(workers)

        def map(self, fn, jobs, on_done=None):  # noqa: ANN001
            return run_in_processes(fn, jobs, 1, on_done)                  # here, whatever was asked

    monkeypatch.setattr(P, "LocalExecutor", Here)
    assert P.run_probe_pass(refs[:1], tmp_path / "a", probe, OPTIONS, progress=False) == P.ProbeSummary(1, 0, ())
    assert P.run_probe_pass(refs[:1], tmp_path / "b", probe, OPTIONS, workers=3, progress=False).measured == 1
    assert made == [1, 3]
