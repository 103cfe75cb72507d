"""Fixtures for the tracking tests: tiny-shakespeare prepared once per session."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, shakespeare_txt: Path) -> Path:
    from attnlife.data import prepare_dataset

    out = tmp_path_factory.mktemp("data")
    prepare_dataset("shakespeare_char", out, source=shakespeare_txt, quiet=True)
    return out
