"""Shared fixtures: where the offline copies of the real datasets live."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """../shared/data beside the repository, or $ATTNLIFE_SHARED_DATA."""
    return Path(os.environ.get("ATTNLIFE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_root()
    if not (root / "shakespeare" / "input.txt").is_file():
        pytest.fail(f"real datasets not found under {root}; set ATTNLIFE_SHARED_DATA")
    return root


@pytest.fixture(scope="session")
def shakespeare_txt(shared_data: Path) -> Path:
    return shared_data / "shakespeare" / "input.txt"
