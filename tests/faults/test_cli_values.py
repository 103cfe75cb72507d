"""Non-finite and out-of-range values: one `error:` line, exit 2, nothing written, nothing changed.

Every case goes through the real console entry point (`attnlife.cli.main`); the check runs before
any output folder is created, so the workspace tree must be identical afterwards.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.faults.conftest import cli, train_args, tree_snapshot

BAD_TRAIN = [  # (arguments, fragment of the error line)
    (["--lr", "nan"], "train.learning_rate = nan is not a finite number"),
    (["--lr", "inf"], "train.learning_rate = inf is not a finite number"),
    (["--lr", "-1e-3"], "train.learning_rate = -0.001 must be > 0"),
    (["--lr", "0"], "train.learning_rate = 0.0 must be > 0"),
    (["--set", "train.beta2=2"], "train.beta2 = 2.0 must be in [0, 1)"),
    (["--set", "train.beta1=-0.1"], "train.beta1 = -0.1 must be in [0, 1)"),
    (["--set", "train.beta2=1"], "train.beta2 = 1.0 must be in [0, 1)"),
    (["--set", "model.dropout=1"], "model.dropout = 1.0 must be in [0, 1)"),
    (["--set", "model.dropout=-0.5"], "model.dropout = -0.5 must be in [0, 1)"),
    (["--set", "model.dropout=nan"], "model.dropout = nan is not a finite number"),
    (["--set", "train.weight_decay=-0.1"], "train.weight_decay = -0.1 must be >= 0"),
    (["--set", "train.min_lr=-inf"], "train.min_lr = -inf is not a finite number"),
    (["--set", "train.grad_clip=nan"], "train.grad_clip = nan is not a finite number"),
    (["--batch-size", "0"], "train.batch_size = 0 must be >= 1"),
    (["--batch-size", "-4"], "train.batch_size = -4 must be >= 1"),
    (["--max-iters", "-1"], "train.max_iters = -1 must be >= 0"),
    (["--set", "model.n_layer=0"], "model.n_layer = 0 must be >= 1"),
    (["--set", "model.n_embd=-16"], "model.n_embd = -16 must be >= 1"),
    (["--set", "model.block_size=0"], "model.block_size = 0 must be >= 1"),
    (["--set", "model.n_head=3"], "model.n_embd = 16 is not divisible by model.n_head = 3"),
    (["--set", "train.gradient_accumulation_steps=0"], "train.gradient_accumulation_steps = 0 must be >= 1"),
    (["--set", "train.eval_interval=0"], "train.eval_interval = 0 must be >= 1"),
    (["--set", "train.ckpt_every=-5"], "train.ckpt_every = -5 must be >= 0"),
    (["--seed", "-1"], "train.seed = -1 must be >= 0"),
    (["--track-fraction", "0"], "track.batch_fraction = 0.0 must be in (0, 1]"),
    (["--track-fraction", "1.5"], "track.batch_fraction = 1.5 must be in (0, 1]"),
    (["--track-every", "0"], "track.every = 0 must be >= 1"),
    (["--set", "track.span_threshold=nan"], "track.span_threshold = nan is not a finite number"),
    (["--max-iters", "10", "--steps", "20"], "--steps 20 contradicts --max-iters 10"),
]


@pytest.mark.parametrize("extra,fragment", BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_bad_training_value_is_one_line_and_writes_nothing(tmp_path: Path, fault_data: Path, capsys,
                                                           extra: list[str], fragment: str) -> None:
    before = tree_snapshot(tmp_path)
    result = cli(*train_args(fault_data, tmp_path / "run", 5), *extra, capsys=capsys)
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and result.err.startswith("error: "), result.err
    assert fragment in result.err, result.err
    assert not (tmp_path / "run").exists()
    assert tree_snapshot(tmp_path) == before


def test_bad_toml_values_and_syntax(tmp_path: Path, fault_data: Path, capsys) -> None:
    cases = [("[train]\nbeta2 = nan\n", "train.beta2 = nan is not a finite number"),
             ("[train]\nweight_decay = inf\n", "train.weight_decay = inf is not a finite number"),
             ("[train\nbeta2 = 0.9\n", "is not valid TOML"),
             ("[model]\nn_layer = 'two'\n", "model.n_layer = 'two' is not a valid int")]
    for i, (text, fragment) in enumerate(cases):
        toml = tmp_path / f"c{i}.toml"
        toml.write_text(text)
        before = tree_snapshot(tmp_path)
        result = cli(*train_args(fault_data, tmp_path / "run", 5), "--config", str(toml), capsys=capsys)
        assert result.code == 2 and result.err.count("\n") == 1 and fragment in result.err, result.err
        assert tree_snapshot(tmp_path) == before
    latin = tmp_path / "latin.toml"
    latin.write_bytes("# caf\xe9\n".encode("latin-1"))
    result = cli(*train_args(fault_data, tmp_path / "run", 5), "--config", str(latin), capsys=capsys)
    assert result.code == 2 and "is not UTF-8 text (byte 5)" in result.err


BAD_SAMPLE = [
    (["--temperature", "nan"], "--temperature nan must be a finite number >= 0 (0 = greedy)"),
    (["--temperature", "inf"], "--temperature inf must be a finite number >= 0"),
    (["--temperature", "-0.5"], "--temperature -0.5 must be a finite number >= 0"),
    (["--top-k", "0"], "--top-k 0 must be >= 1"),
    (["--top-k", "-3"], "--top-k -3 must be >= 1"),
    (["--tokens", "0"], "--tokens 0 must be >= 1"),
]


@pytest.mark.parametrize("extra,fragment", BAD_SAMPLE, ids=[" ".join(a) for a, _ in BAD_SAMPLE])
def test_bad_sampling_value_is_one_line(workspace: Path, capsys, extra: list[str], fragment: str) -> None:
    before = tree_snapshot(workspace)
    result = cli("sample", str(workspace / "run"), *extra, capsys=capsys)
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and fragment in result.err, result.err
    assert tree_snapshot(workspace) == before


def test_greedy_temperature_zero_still_samples(workspace: Path, capsys) -> None:
    result = cli("sample", str(workspace / "run"), "--temperature", "0", "--tokens", "5", "--top-k", "1",
                 capsys=capsys)
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1].endswith("tokens/s (5 tokens from step 8, KV cache, timed after a 5-token warm-up)")


def test_tiny_temperature_is_greedy_not_an_overflow(workspace: Path, capsys) -> None:
    tiny = cli("sample", str(workspace / "run"), "--temperature", "1e-45", "--tokens", "12", capsys=capsys)
    greedy = cli("sample", str(workspace / "run"), "--temperature", "0", "--tokens", "12", capsys=capsys)
    assert tiny.code == 0 and greedy.code == 0, tiny.err
    assert tiny.out.splitlines()[:-1] == greedy.out.splitlines()[:-1]   # same text, speed aside


def test_block_size_one_samples_with_the_cache(fault_data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert cli(*train_args(fault_data, run, 2, "model.block_size=1"), capsys=capsys).code == 0
    cached = cli("sample", str(run), "--temperature", "0", "--tokens", "6", capsys=capsys)
    plain = cli("sample", str(run), "--temperature", "0", "--tokens", "6", "--no-cache", capsys=capsys)
    assert cached.code == 0 and plain.code == 0, cached.err[-2000:]
    assert cached.out.splitlines()[0] == plain.out.splitlines()[0]


@pytest.mark.parametrize("ids, fragment", [(np.linspace(0.1, 0.9, 500), "holds float64 values, not integer"),
                                           (np.ones(500, dtype=bool), "holds bool values"),
                                           (-np.arange(500), "negative token id")])
def test_token_ids_must_be_integers(workspace: Path, capsys, ids, fragment) -> None:
    np.save(workspace / "ids.npy", ids)
    before = tree_snapshot(workspace)
    result = cli("track", str(workspace / "run"), "--tokens", str(workspace / "ids.npy"), "--quiet", capsys=capsys)
    assert result.code == 2 and len(result.error_lines) == 1 and fragment in result.err, result.err[-2000:]
    assert tree_snapshot(workspace) == before


def test_toml_section_given_as_a_value(tmp_path: Path, fault_data: Path, capsys) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("train = 5\n")
    result = cli(*train_args(fault_data, tmp_path / "run", 5), "--config", str(toml), capsys=capsys)
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert "train = 5 is a value, but train is a section; write it as a table: [train]" in result.err
    assert "unknown" not in result.err and not (tmp_path / "run").exists()


def test_resume_with_a_smaller_max_iters_is_refused(workspace: Path, capsys) -> None:
    before = tree_snapshot(workspace)
    result = cli(*train_args(workspace / "data", workspace / "run", 4), capsys=capsys)
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert "holds checkpoints up to step 8, beyond --max-iters 4; pass --max-iters >= 8" in result.err
    assert tree_snapshot(workspace) == before
    assert cli(*train_args(workspace / "data", workspace / "run", 8), capsys=capsys).code == 0  # 8 = done


def test_too_short_val_split_leaves_no_run_directory(tmp_path: Path, shakespeare_txt: Path, capsys) -> None:
    from attnlife.data import prepare_dataset

    (tmp_path / "short.txt").write_text(shakespeare_txt.read_text()[:400])   # val: 40 tokens
    prepare_dataset("text", tmp_path / "data", source=tmp_path / "short.txt", quiet=True,
                    dataset_name="shakespeare_char")
    before = tree_snapshot(tmp_path)
    result = cli(*train_args(tmp_path / "data", tmp_path / "run", 5, "model.block_size=48"), capsys=capsys)
    assert result.code == 2 and len(result.error_lines) == 1, result.err[-2000:]
    assert "the val split of shakespeare_char has 40 tokens, fewer than model.block_size + 1 = 49" in result.err
    assert tree_snapshot(tmp_path) == before and not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["theory", "scan-snap", "--max-iters", "0"], "must be >= 1"),
    (["theory", "markov", "--max-iters", "0"], "--steps, --batch-size"),
    (["reproduce", "--smoke", "--seeds", "0"], "--seeds 0 must be >= 1"),
])
def test_zero_is_refused_not_replaced_by_a_default(tmp_path: Path, capsys, argv, fragment) -> None:
    result = cli(*argv, "--out", str(tmp_path / "out"), "--quiet", capsys=capsys)
    assert result.code == 2 and len(result.error_lines) == 1 and fragment in result.err, result.err[-2000:]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.parquet"))


@pytest.mark.parametrize("argv, fragment", [
    (["theory", "scan-snap", "--n-distinct", "0"], "--n-distinct must be >= 1 and --n-common >= 0"),
    (["theory", "markov", "--zipf", "nan"], "--zipf nan must be a finite number >= 0"),
    (["theory", "markov", "--lr", "nan"], "--lr, --init-std and --attn-init-std must be finite numbers > 0"),
    (["theory", "markov", "--vocab-size", "100000", "--n-train-seqs", "4"], "out of memory (tried to allocate"),
])
def test_theory_values_are_one_line(tmp_path: Path, capsys, argv, fragment) -> None:
    before = tree_snapshot(tmp_path)
    result = cli(*argv, "--out", str(tmp_path / "out"), "--max-iters", "5", "--quiet", capsys=capsys)
    assert result.code == 2 and len(result.error_lines) == 1 and fragment in result.err, result.err[-2000:]
    assert tree_snapshot(tmp_path) == before


def test_report_heads_outside_the_model_are_one_line(tmp_path: Path, capsys) -> None:
    from tests.support.synthetic import write_synthetic_run

    run = write_synthetic_run(tmp_path / "s", parts=("metrics", "snapshots"))
    result = cli("report", str(run), "--heads", "L9H9", "--quiet", capsys=capsys)
    assert result.code == 2 and len(result.error_lines) == 1, result.err[-2000:]
    assert "--heads names L9H9 but the model has 2 layers x 3 heads" in result.err
