"""Fixtures for data tests: isolated cache/sources env, the real prefixes prepared once."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No test reads the user's cache or a sources folder unless it sets one itself."""
    monkeypatch.setenv("ATTNLIFE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ATTNLIFE_SOURCES", raising=False)


@pytest.fixture(scope="session")
def prepared_real(tmp_path_factory, shared_data: Path) -> Path:
    """shakespeare_char, enwik8 (prefix) and text8 (prefix) prepared from the shared files."""
    from attnlife.data import prepare_dataset

    out = tmp_path_factory.mktemp("prepared")
    prepare_dataset("shakespeare_char", out, source=shared_data / "shakespeare" / "input.txt", quiet=True)
    prepare_dataset("enwik8", out, source=shared_data / "enwik8" / "enwik8_head_4154400", quiet=True)
    prepare_dataset("text8", out, source=shared_data / "text8" / "text8_head_3010294.txt", quiet=True)
    return out
