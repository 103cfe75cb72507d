"""`attnlife prepare` through the real CLI entry point: success output and every bad-input error.

Each bad input must give exit status 2, exactly one stderr line `error: ...` naming problem and
fix, nothing on stdout, and no OUT/<name> (nor temp leftovers) afterwards.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from attnlife.cli import main
from attnlife.data import load_prepared


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def assert_clean_failure(capsys, out_dir: Path, folder: str, argv: list[str], *fragments: str) -> str:
    code, out, err = run_cli(capsys, *argv, "--out", str(out_dir), "--quiet")
    lines = err.strip().splitlines()
    assert code == 2 and out == ""
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not (out_dir / folder).exists()
    assert not out_dir.exists() or list(out_dir.iterdir()) == []
    return lines[0]


def test_prepare_success_summary(capsys, tmp_path: Path, shakespeare_txt: Path):
    code, out, err = run_cli(capsys, "prepare", "shakespeare_char", "--source", str(shakespeare_txt),
                             "--out", str(tmp_path), "--quiet")
    assert code == 0 and err == ""
    assert "train 1,003,854 / val 111,540 tokens, vocab 65, uint8" in out
    assert load_prepared(tmp_path, "shakespeare_char").vocab_size == 65


def test_missing_file(capsys, tmp_path: Path):
    assert_clean_failure(capsys, tmp_path / "o", "shakespeare_char",
                         ["prepare", "shakespeare_char", "--source", str(tmp_path / "nope.txt")],
                         "nope.txt does not exist", "check the --source path")


def test_empty_file(capsys, tmp_path: Path):
    (tmp_path / "empty.txt").write_bytes(b"")
    assert_clean_failure(capsys, tmp_path / "o", "text", ["prepare", "text", "--source", str(tmp_path / "empty.txt")],
                         "empty.txt is empty")


def test_zip_without_member(capsys, tmp_path: Path):
    zpath = tmp_path / "enwik8.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("readme.txt", "not enwik8")
    assert_clean_failure(capsys, tmp_path / "o", "enwik8", ["prepare", "enwik8", "--source", str(zpath)],
                         "does not hold member 'enwik8'", "readme.txt")


def test_corrupt_zip(capsys, tmp_path: Path):
    zpath = tmp_path / "text8.zip"
    zpath.write_bytes(b"PK\x03\x04 definitely not a zip")
    assert_clean_failure(capsys, tmp_path / "o", "text8", ["prepare", "text8", "--source", str(zpath)],
                         "cannot read zip")


def test_text8_alphabet(capsys, tmp_path: Path):
    src = tmp_path / "t8.txt"
    src.write_bytes(b" anarchism originated as a term" * 10 + b" of Abuse")
    line = assert_clean_failure(capsys, tmp_path / "o", "text8", ["prepare", "text8", "--source", str(src)],
                                "byte 0x41 at offset 314", "outside text8's alphabet")
    assert "prepare text" in line


def test_checksum_mismatch(capsys, tmp_path: Path, shakespeare_txt: Path):
    src = tmp_path / "input.txt"
    src.write_bytes(shakespeare_txt.read_bytes().replace(b"Citizen", b"Citizan", 1))
    assert_clean_failure(capsys, tmp_path / "o", "shakespeare_char",
                         ["prepare", "shakespeare_char", "--source", str(src)],
                         "not the canonical shakespeare_char", "attnlife prepare text --source FILE")


@pytest.mark.parametrize("dataset", ["shakespeare_char", "text"])
def test_not_utf8(capsys, tmp_path: Path, dataset: str):
    src = tmp_path / "latin1.txt"
    src.write_bytes("First Citizen: café\n".encode("latin-1"))
    assert_clean_failure(capsys, tmp_path / "o", dataset, ["prepare", dataset, "--source", str(src)],
                         "is not UTF-8 (byte 0xe9 at offset 18)")


def test_unknown_dataset_and_missing_source(capsys, tmp_path: Path):
    assert_clean_failure(capsys, tmp_path / "o", "wiki103", ["prepare", "wiki103"],
                         "unknown dataset 'wiki103'", "shakespeare_char, enwik8, text8, text")
    assert_clean_failure(capsys, tmp_path / "o", "text", ["prepare", "text"], "pass --source FILE")


def test_name_option(capsys, tmp_path: Path, shared_data: Path):
    src = shared_data / "text8" / "text8_head_3010294.txt"
    code, out, _ = run_cli(capsys, "prepare", "text8", "--source", str(src), "--out", str(tmp_path),
                           "--name", "t8", "--quiet")
    assert code == 0 and "(prefix of 100,000,000)" in out
    assert load_prepared(tmp_path, "t8").meta["split_tokens"]["test"] == 150_516
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t8"]


def test_subprocess_entry_point(tmp_path: Path):
    """`python -m attnlife prepare` end to end: exit status 2 and one stderr line, no output."""
    env = {**os.environ, "ATTNLIFE_CACHE": str(tmp_path / "cache")}
    bad = subprocess.run([sys.executable, "-m", "attnlife", "prepare", "enwik8", "--source",
                          str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: source file ")
    assert not (tmp_path / "o").exists()
