"""`attnlife track`: the post-hoc probe pass over our runs, nanoGPT files and HF revisions."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import attnlife
from attnlife.cli import app
from attnlife.model.gpt import GPT, GPTConfig
from attnlife.series.models import load_series_model
from attnlife.series.refs import nanogpt_series, run_series
from attnlife.store.checkpoints import save_checkpoint
from attnlife.store.run_dir import write_run_json
from attnlife.track import probe_pass as P
from attnlife.track.capture import capture_attention
from tests.spectra.test_sweep import CFG, _save_hf

TYPE_SCORES = {"prev_token_score", "local_score", "sink_mass", "self_score", "induction_score"}


def _nanogpt_files(tmp_path, iters=(100, 200)):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CFG))
    paths = []
    for it in iters:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        state = {"_orig_mod." + k: v for k, v in model.state_dict().items()}
        path = tmp_path / f"ckpt_{it}.pt"
        torch.save({"model": state, "model_args": CFG, "iter_num": it}, path)
        paths.append(str(path))
    return paths


def _val_bin(tmp_path, vocab=CFG["vocab_size"], n=4000):
    ids = np.random.default_rng(0).integers(0, vocab, n).astype(np.uint16)
    path = tmp_path / "val.bin"
    ids.tofile(path)
    return path


def test_nanogpt_series_cli_writes_type_scores_with_stderr_and_resumes(tmp_path):
    paths, out = _nanogpt_files(tmp_path), tmp_path / "out"
    args = ["track", "--nanogpt", *paths, "--out", str(out), "--tokens", str(_val_bin(tmp_path)),
            "--sequences", "8", "--quiet"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "2 measured, 0 already done" in r.output
    run = attnlife.load_run(out)
    heads = run.per_head(split="probe")
    assert set(heads["step"]) == {100, 200}
    assert TYPE_SCORES | {"entropy_bits", "span_tokens", "sink_mass"} <= set(heads["metric"])
    assert len(heads[heads.metric == "induction_score"]) == 2 * 2 * 2  # steps x layers x heads
    assert heads["stderr"].notna().all()
    ent = heads[heads.metric == "entropy_bits"]
    assert (ent["stderr"] > 0).all()                                   # 8 different windows: a spread
    model = run.model_level(split="probe")
    assert {"sink_head_share", "induction_loss_drop_nats", "probe_loss_nats"} <= set(model["metric"])
    # the share is cut from the per-head sink_mass rows of its step: heads with sink_mass > 0.3
    sinks = heads[heads.metric == "sink_mass"]
    for step, share in model[model.metric == "sink_head_share"].set_index("step")["value"].items():
        assert share == (sinks[sinks.step == step].value > 0.3).mean()
    assert set(run.cross_layer(split="probe")["metric"]) == {"xlayer_jsd", "xlayer_cos"}
    again = CliRunner().invoke(app, args)
    assert "0 measured, 2 already done" in again.output
    changed = CliRunner().invoke(app, args[:-3] + ["--sequences", "4", "--quiet"])  # new options: redo
    assert "2 measured" in changed.output


def test_probe_values_equal_direct_computation(tmp_path):
    refs = nanogpt_series(_nanogpt_files(tmp_path))
    options = P.ProbeOptions(sequences=4, seq_len=12, repeat_sequences=3)
    tokens = np.fromfile(_val_bin(tmp_path), dtype=np.uint16)
    probe = P.load_or_make_probe_set(tmp_path / "a", tokens, CFG["vocab_size"], CFG["block_size"], options, "t")
    assert probe["ids"].shape == (4, 12) and probe["repeated"].shape == (3, 12)
    assert torch.equal(probe["repeated"][:, :6], probe["repeated"][:, 6:])
    model = load_series_model(refs[1])
    rows = P.measure_checkpoint(model, probe, options)
    with torch.no_grad(), capture_attention(model) as cap:
        cap.forward(probe["ids"])
    a = cap.patterns["blocks.1.attn.pattern"].double()                     # [4, H, 12, 12]
    prev = a[:, :, torch.arange(1, 12), torch.arange(11)]                  # [4, H, 11]
    got = {(r.layer, r.head_index, r.metric): r for r in rows}
    for h in range(2):
        per_seq = prev[:, h].mean(-1)
        assert got[(1, h, "prev_token_score")].value == pytest.approx(float(per_seq.mean()), abs=1e-6)
        assert got[(1, h, "prev_token_score")].stderr == pytest.approx(float(per_seq.std() / 2), abs=1e-6)
    P.run_probe_pass(refs, tmp_path / "a", probe, options, progress=False)   # one process: every ref
    stored = attnlife.load_run(tmp_path / "a").per_head(metric="prev_token_score", split="probe")
    assert set(stored.step) == {100, 200}
    at200 = stored[(stored.step == 200) & (stored.layer == 1)].sort_values("head_index")
    assert at200.value.tolist() == pytest.approx([got[(1, h, "prev_token_score")].value for h in range(2)], abs=1e-7)


def test_parallel_probe_pass_equals_serial(tmp_path):
    """Two worker processes write what one process writes (spawned workers: seconds, so the mutation
    chunk `probe` leaves this test out)."""
    refs = nanogpt_series(_nanogpt_files(tmp_path))
    options = P.ProbeOptions(sequences=4, seq_len=12, repeat_sequences=3)
    tokens = np.fromfile(_val_bin(tmp_path), dtype=np.uint16)
    probe = P.load_or_make_probe_set(tmp_path / "a", tokens, CFG["vocab_size"], CFG["block_size"], options, "t")
    P.run_probe_pass(refs, tmp_path / "a", probe, options, progress=False)
    P.run_probe_pass(refs, tmp_path / "b", probe, options, workers=2, progress=False)
    key = ["step", "split", "layer", "head_index", "layer_b", "metric"]
    serial = attnlife.load_run(tmp_path / "a").metrics().sort_values(key).reset_index(drop=True)
    parallel = attnlife.load_run(tmp_path / "b").metrics().sort_values(key).reset_index(drop=True)
    assert set(serial.step) == {100, 200} and serial.equals(parallel)   # one process measures every ref


def test_run_dir_uses_its_val_split_and_stores_the_probe_set(tmp_path, prepared):
    run = tmp_path / "run"
    torch.manual_seed(0)
    cfg = dict(CFG, vocab_size=65)
    model = GPT(GPTConfig(**cfg))
    write_run_json(run, {"config": {"model": {k: v for k, v in cfg.items() if k != "vocab_size"},
                                    "data": {"data_dir": str(prepared), "dataset": "shakespeare_char"}}})
    for step in (0, 4):
        save_checkpoint(run, step, model.state_dict(), {"step": step})
    assert [r.step for r in run_series(run)] == [0, 4]
    r = CliRunner().invoke(app, ["track", str(run), "--sequences", "4", "--quiet"])
    assert r.exit_code == 0, r.output
    from safetensors import safe_open

    from attnlife.data import load_prepared

    with safe_open(str(run / "probe" / "probe_set.safetensors"), framework="pt") as h:
        ids = h.get_tensor("ids")
        record = json.loads(h.metadata()["record"])
    val = load_prepared(prepared, "shakespeare_char").splits["val"]
    assert record["source"] == "shakespeare_char:val" and ids.shape == (4, 16)
    assert np.array_equal(ids[0].numpy(), np.asarray(val[:16], dtype=np.int64))  # held-out text
    m = attnlife.load_run(run).per_head(metric="entropy_bits", split="probe")
    assert set(m["step"]) == {0, 4}


def test_hf_revisions_local(tmp_path):
    local = tmp_path / "pythia"
    _save_hf(local / "step0", 0)
    _save_hf(local / "step1000", 1)
    ids = tmp_path / "ids.npy"
    np.save(ids, np.random.default_rng(1).integers(0, 13, 500))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["track", "--hf", str(local), "--revisions", "step0,step1000", "--out", str(out),
                                 "--tokens", str(ids), "--sequences", "4", "--quiet"])
    assert r.exit_code == 0, r.output
    heads = attnlife.load_run(out).per_head(metric="induction_score", split="probe")
    assert set(heads["step"]) == {0, 1000} and len(heads) == 2 * 2 * 2


def test_hf_text_is_tokenized_by_the_model_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = "abcdefghijkl "                                             # 13 ids = the model's vocab
    tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token=" "))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")            # one id per character
    model_dir = tmp_path / "tiny"
    _save_hf(model_dir, 0)
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=" ").save_pretrained(model_dir)
    text = tmp_path / "held_out.txt"
    text.write_text("".join(chars[i % 13] for i in np.random.default_rng(2).integers(0, 13, 600)))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["track", "--hf", str(model_dir), "--out", str(out), "--text", str(text),
                                 "--sequences", "4", "--seq-len", "16", "--quiet"])
    assert r.exit_code == 0, r.output
    from safetensors.torch import load_file

    ids = load_file(str(out / "probe" / "probe_set.safetensors"))["ids"]
    assert "".join(chars[i] for i in ids[0].tolist()) == text.read_text()[:16]
    assert len(attnlife.load_run(out).per_head(metric="prev_token_score", split="probe")) == 4


def test_bad_inputs_are_one_line_errors(tmp_path):
    from attnlife.cli import main

    paths = _nanogpt_files(tmp_path)
    for args in (["track", "--nanogpt", *paths, "--out", str(tmp_path / "o")],            # no probe text
                 ["track", "--nanogpt", *paths, "--out", str(tmp_path / "o"), "--text", "x.txt"],
                 ["track", str(tmp_path / "missing")]):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2


def test_probe_set_windows_limits_and_repeats() -> None:
    opts = P.ProbeOptions(sequences=4, seq_len=8, repeat_sequences=3, repeat_half=0, seed=5)
    tokens = np.arange(9) % 7                                     # exactly T + 1 tokens: one window
    probe = P.make_probe_set(tokens, vocab_size=7, context=64, options=opts)
    assert probe["ids"].tolist() == [tokens[:8].tolist()]         # evenly spaced starts collapse to one
    with pytest.raises(P.ProbeSetError, match="^probe text has 8 tokens, fewer than one window of 8; "):
        P.make_probe_set(tokens[:8], 7, 64, opts)
    long = np.arange(200) % 7
    probe = P.make_probe_set(long, 7, 64, opts)
    assert probe["ids"][:, 0].tolist() == [0 % 7, 64 % 7, 127 % 7, 191 % 7]   # starts 0, 64, 127, 191
    assert probe["ids"].dtype == torch.int64 and probe["ids"].shape == (4, 8)
    # repeat half: min(T // 2, 128) = 4, capped by context // 2; the halves repeat
    rep = probe["repeated"]
    assert rep.shape == (3, 8) and torch.equal(rep[:, :4], rep[:, 4:])
    assert torch.equal(rep, P.HT.repeated_random_tokens(3, 4, 7, seed=5))
    assert P.make_probe_set(long, 7, 6, P.ProbeOptions(4, 6, 3, 0, 5))["repeated"].shape == (3, 6)  # T 6: half 3
    assert P.make_probe_set(long, 7, 64, P.ProbeOptions(4, 8, 3, 9, 5))["repeated"].shape == (3, 18)
    assert P.make_probe_set(long, 7, 3, P.ProbeOptions(4, 3, 3, 0, 5))["repeated"].shape == (3, 4)  # >= 2 per half
    assert P.make_probe_set(long, 7, 64, P.ProbeOptions(seq_len=0))["ids"].shape[1] == 64  # 0: the context
    assert P.make_probe_set(np.arange(300) % 7, 7, 1000, P.ProbeOptions(seq_len=0))["ids"].shape[1] == 256
    with pytest.raises(P.ProbeSetError, match=r"hold id 7 >= the model's vocab_size 7; "):
        P.make_probe_set(np.arange(200) % 8, 7, 64, opts)
    assert P.make_probe_set(np.arange(200) % 8, 8, 64, opts)["ids"].max() == 7   # id vocab - 1 is fine


def test_done_markers_match_options_and_probe_digest(tmp_path) -> None:
    from attnlife.series.refs import CheckpointRef

    probe = {"ids": torch.arange(6).view(2, 3), "repeated": torch.ones(1, 4, dtype=torch.int64)}
    key = P.options_key(P.ProbeOptions(), probe)
    assert json.loads(key)["options"] == {"sequences": 16, "seq_len": 0, "repeat_sequences": 16, "repeat_half": 0,
                                          "seed": 0, "span_threshold": 0.01, "query_chunk": 256}
    other = dict(probe, ids=probe["ids"] + 1)
    assert P.options_key(P.ProbeOptions(), other) != key
    assert P.options_key(P.ProbeOptions(seed=1), probe) != key
    ref = CheckpointRef(model="org/name", step=20, kind="run", path=str(tmp_path))
    path = P.done_path(tmp_path, "org/name", 20)
    assert path == tmp_path / "probe" / "done" / "org--name" / "step_0000020.json"
    assert not P.is_done(tmp_path, ref, key)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"key": key, "rows": 3}))
    assert P.is_done(tmp_path, ref, key) and not P.is_done(tmp_path, ref, P.options_key(P.ProbeOptions(seed=1), probe))
    path.write_text("{")
    assert not P.is_done(tmp_path, ref, key)                      # a damaged marker is not done


def test_model_shape_of_ours_and_of_transformers_configs() -> None:
    from types import SimpleNamespace

    assert P.model_shape(GPT(GPTConfig(**CFG))) == (CFG["vocab_size"], CFG["block_size"])

    class HF(torch.nn.Module):
        def __init__(self, **cfg) -> None:
            super().__init__()
            self.config = SimpleNamespace(**cfg)
            self.emb = torch.nn.Embedding(50, 4)

        def get_input_embeddings(self):
            return self.emb

    assert P.model_shape(HF(n_positions=128, max_position_embeddings=64)) == (50, 128)
    assert P.model_shape(HF(max_position_embeddings=64)) == (50, 64)
    assert P.model_shape(HF()) == (50, 2048)


def test_token_files(tmp_path) -> None:
    np.save(tmp_path / "t.npy", np.arange(6).reshape(2, 3))
    assert P.read_token_file(tmp_path / "t.npy").tolist() == [0, 1, 2, 3, 4, 5]
    np.arange(5, dtype=np.uint16).tofile(tmp_path / "t.bin")
    assert P.read_token_file(tmp_path / "t.bin").tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(P.ProbeSetError, match="does not exist; pass a .npy or nanoGPT .bin"):
        P.read_token_file(tmp_path / "none.npy")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(P.ProbeSetError, match="must be .npy or nanoGPT .bin"):
        P.read_token_file(tmp_path / "t.txt")
    with pytest.raises(P.ProbeSetError, match="^text file .* does not exist$"):
        P.tokenize_text(tmp_path / "none.txt", str(tmp_path))
    with pytest.raises(P.ProbeSetError, match="names no dataset"):
        write_run_json(tmp_path / "run", {"config": {}})
        P.run_val_tokens(tmp_path / "run")


def _error_line(args, capsys) -> str:
    """The one `error:` line of a failing CLI call (exit code 2)."""
    from attnlife.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert exc.value.code == 2 and len(err) == 1, err  # (transformers' own loading bars may precede it)
    return err[0]


def test_hf_input_frictions_get_errors_naming_the_fix(tmp_path, capsys):
    """--hf DIR of revision folders without --revisions measures them all (issue 18), so its first
    revision's missing tokenizer is what is named; --text without a tokenizer says
    so (not '0 tokens'); a .bin is read in the dtype of the meta.json beside it, else the error names
    the dtype it assumed."""
    local = tmp_path / "pythia"
    _save_hf(local / "step0", 0)
    _save_hf(local / "step1000", 1)
    text = tmp_path / "held_out.txt"
    text.write_text("some held-out text " * 40)
    line = _error_line(["track", "--hf", str(local), "--out", str(tmp_path / "o"), "--text", str(text)], capsys)
    assert "pythia/step0 holds no tokenizer" in line and "--tokens FILE" in line
    line = _error_line(["track", "--hf", str(local / "step0"), "--out", str(tmp_path / "o"), "--text", str(text)],
                       capsys)
    assert "holds no tokenizer" in line and "--tokens FILE" in line
    ids = np.random.default_rng(0).integers(0, CFG["vocab_size"], 600).astype(np.uint8)  # an attnlife char dataset
    data = tmp_path / "data"
    data.mkdir()
    ids.tofile(data / "val.bin")
    args = ["track", "--hf", str(local), "--revisions", "step0", "--out", str(tmp_path / "o"), "--tokens",
            str(data / "val.bin"), "--sequences", "4", "--seq-len", "16", "--quiet"]
    line = _error_line(args, capsys)  # 600 bytes read as uint16: 300 ids, some >= vocab 13
    assert "another dtype than it was read as (uint16 (nanoGPT's default; no meta.json" in line
    (data / "meta.json").write_text('{"dtype": "uint8"}')
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    from safetensors.torch import load_file

    probe = load_file(str(tmp_path / "o" / "probe" / "probe_set.safetensors"))["ids"]
    assert probe[0].tolist() == ids[:16].tolist()
