"""CLI and config conventions: -h, --version, --print-config, documented fields, the step budget,
the LR-schedule rescale, the tomli fallback of Python 3.10, corrupt zip payloads."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from dataclasses import fields
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attnlife import __version__
from attnlife.cli import app
from attnlife.config import FIELD_HELP, RunConfig, build_config, iter_fields
from tests.faults.conftest import cli, subprocess_env, tree_snapshot

runner = CliRunner()
VERBS = [["prepare"], ["train"], ["sample"], ["summary"], ["spectra"], ["theory"], ["theory", "markov"],
         ["theory", "scan-snap"]]


@pytest.mark.parametrize("verb", VERBS, ids=[" ".join(v) for v in VERBS])
def test_short_and_long_help_agree(verb: list[str]) -> None:
    short, long = runner.invoke(app, [*verb, "-h"]), runner.invoke(app, [*verb, "--help"])
    assert short.exit_code == 0 and long.exit_code == 0, short.output
    assert short.output == long.output and "Usage:" in short.output


def test_version(capsys) -> None:
    result = cli("--version", capsys=capsys)
    assert result.code == 0 and result.out == f"attnlife {__version__}\n"


def test_train_help_lists_every_field_with_default_and_help() -> None:
    text = runner.invoke(app, ["train", "--help"], terminal_width=200).output
    config = build_config("cpu")
    for name, value in iter_fields(config):
        shown = (str(value).lower() if isinstance(value, bool) else f'"{value}"' if isinstance(value, str)
                 else repr(value))
        assert f"{name} = {shown}" in text, name
    documented = [n for n, _ in iter_fields(RunConfig()) if n in FIELD_HELP]
    assert len(documented) >= 36 and FIELD_HELP["train.beta2"] in text


def test_print_config_round_trips_and_writes_nothing(tmp_path: Path, capsys) -> None:
    before = tree_snapshot(tmp_path)
    result = cli("train", "--out", str(tmp_path / "run"), "--lr", "3e-3", "--set", "model.n_layer=2",
                 "--max-iters", "500", "--print-config", capsys=capsys)
    assert result.code == 0 and result.err == ""
    assert tree_snapshot(tmp_path) == before  # nothing written, not even the run folder
    assert "[train]\n" in result.out and "learning_rate = 0.003\n" in result.out
    saved = tmp_path / "resolved.toml"
    saved.write_text(result.out)
    again = build_config(preset=None, toml_path=saved)
    original = build_config("cpu", overrides=["train.learning_rate=3e-3", "model.n_layer=2", "train.max_iters=500"],
                            out_dir=str(tmp_path / "run"))
    assert again == original


def test_max_iters_rescales_warmup_and_decay() -> None:
    base = build_config("cpu").train
    assert (base.max_iters, base.warmup_iters, base.lr_decay_iters) == (2000, 100, 2000)
    short = build_config("cpu", overrides=["train.max_iters=500"]).train
    assert (short.warmup_iters, short.lr_decay_iters) == (25, 500)
    pinned = build_config("cpu", overrides=["train.max_iters=500", "train.warmup_iters=7"]).train
    assert (pinned.warmup_iters, pinned.lr_decay_iters) == (7, 500)
    paper = build_config("paper", overrides=["train.max_iters=10000"]).train
    assert (paper.warmup_iters, paper.lr_decay_iters) == (200, 10000)
    same = build_config("cpu", overrides=["train.max_iters=2000"]).train
    assert (same.warmup_iters, same.lr_decay_iters) == (100, 2000)


def test_steps_is_a_deprecated_alias_of_max_iters(tmp_path: Path, capsys) -> None:
    result = cli("train", "--out", str(tmp_path / "r"), "--steps", "300", "--print-config", capsys=capsys)
    assert result.code == 0 and "max_iters = 300\n" in result.out and "lr_decay_iters = 300\n" in result.out
    assert result.err == "warning: --steps is deprecated; use --max-iters\n"
    theory = runner.invoke(app, ["theory", "markov", "--help"], terminal_width=200).output
    assert "--max-iters" in theory and "--steps" not in theory  # the alias is hidden


def test_tomllib_falls_back_to_tomli(tmp_path: Path) -> None:
    """Python 3.10 has no tomllib: with it unimportable, attnlife.config parses TOML with tomli."""
    pytest.importorskip("tomli")
    toml = tmp_path / "c.toml"
    toml.write_text("[train]\nmax_iters = 77\nbeta2 = 0.95\n")
    script = ("import sys\nsys.modules['tomllib'] = None  # `import tomllib` now raises ImportError\n"
              "from attnlife import config\n"
              "assert config.tomllib.__name__ == 'tomli', config.tomllib\n"
              f"c = config.build_config('cpu', toml_path={str(toml)!r})\n"
              "print(c.train.max_iters, c.train.beta2)\n"
              f"open({str(tmp_path / 'bad.toml')!r}, 'w').write('[train\\n')\n"
              "try:\n"
              f"    config.build_config('cpu', toml_path={str(tmp_path / 'bad.toml')!r})\n"
              "except config.ConfigError as err:\n    print('error:', err)\n")
    done = subprocess.run([sys.executable, "-c", script], env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == "77 0.95"
    assert second.startswith("error: ") and "is not valid TOML" in second


def _zip(path: Path, method: int, corrupt: slice) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        zf.writestr("text8", b" anarchism originated as a term of abuse" * 500)
    raw = bytearray(path.read_bytes())
    for i in range(corrupt.start, corrupt.stop):
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("method,corrupt", [(zipfile.ZIP_DEFLATED, slice(40, 52)), (zipfile.ZIP_STORED, slice(45, 60)),
                                            (zipfile.ZIP_BZIP2, slice(45, 60)), (zipfile.ZIP_LZMA, slice(45, 60))],
                         ids=["deflate", "stored", "bzip2", "lzma"])
def test_corrupt_zip_payload_is_one_line(tmp_path: Path, capsys, method: int, corrupt: slice) -> None:
    src = _zip(tmp_path / "text8.zip", method, corrupt)
    before = tree_snapshot(tmp_path)
    result = cli("prepare", "text8", "--source", str(src), "--out", str(tmp_path / "o"), "--quiet", capsys=capsys)
    assert result.code == 2 and result.out == "" and result.err.count("\n") == 1, result.err
    assert result.err.startswith(f"error: cannot read zip {src} (") and "download it again" in result.err
    assert tree_snapshot(tmp_path) == before


def test_every_config_section_field_is_reachable() -> None:
    names = {n for n, _ in iter_fields(RunConfig())}
    for section in ("model", "data", "train", "track"):
        for f in fields(getattr(RunConfig(), section)):
            assert f"{section}.{f.name}" in names
