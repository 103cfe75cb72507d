"""The download path on real bytes: a local HTTP server on 127.0.0.1 and file:// URLs (no network)."""
from __future__ import annotations

import dataclasses
import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from attnlife.data import DATASETS, cache_dir, load_prepared, prepare_dataset
from attnlife.data.registry import SHAKESPEARE_SHA256
from attnlife.errors import ChecksumError, DataSourceError


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture()
def http_root(tmp_path: Path):
    """(folder served, base URL) of a real HTTP server on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _point_url(monkeypatch, name: str, url: str) -> None:
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], url=url))


def test_http_download_verified_then_cached(http_root, shakespeare_txt: Path, tmp_path: Path, monkeypatch):
    root, base = http_root
    shutil.copy(shakespeare_txt, root / "input.txt")
    _point_url(monkeypatch, "shakespeare_char", f"{base}/input.txt")
    prepare_dataset("shakespeare_char", tmp_path / "a", quiet=True)
    cached = cache_dir() / "shakespeare_char" / "input.txt"
    assert cached.read_bytes() == shakespeare_txt.read_bytes()
    meta = load_prepared(tmp_path / "a", "shakespeare_char").meta
    assert meta["source"]["kind"] == "download" and meta["source"]["sha256"] == SHAKESPEARE_SHA256
    (root / "input.txt").unlink()  # second run must not touch the server
    prepare_dataset("shakespeare_char", tmp_path / "b", quiet=True)
    assert load_prepared(tmp_path / "b", "shakespeare_char").meta["source"]["kind"] == "cache"


def test_http_checksum_mismatch_leaves_nothing(http_root, shakespeare_txt: Path, tmp_path: Path, monkeypatch):
    root, base = http_root
    text = shakespeare_txt.read_bytes()
    (root / "input.txt").write_bytes(text[:-1] + b"?")  # same size, one byte changed
    _point_url(monkeypatch, "shakespeare_char", f"{base}/input.txt")
    with pytest.raises(ChecksumError, match="expected 86c4e6aa9db7"):
        prepare_dataset("shakespeare_char", tmp_path / "out", quiet=True)
    folder = cache_dir() / "shakespeare_char"
    assert not (folder / "input.txt").exists() and list(folder.iterdir()) == []
    assert not (tmp_path / "out" / "shakespeare_char").exists()


def test_file_url_and_corrupt_cache(shakespeare_txt: Path, tmp_path: Path, monkeypatch):
    _point_url(monkeypatch, "shakespeare_char", shakespeare_txt.as_uri())
    prepare_dataset("shakespeare_char", tmp_path, quiet=True)
    cached = cache_dir() / "shakespeare_char" / "input.txt"
    cached.write_bytes(cached.read_bytes()[:1000])
    with pytest.raises(ChecksumError, match="has sha256 .*; delete it and rerun"):
        prepare_dataset("shakespeare_char", tmp_path, quiet=True)


def test_unreachable_url(tmp_path: Path, monkeypatch):
    _point_url(monkeypatch, "shakespeare_char", (tmp_path / "nowhere.txt").as_uri())
    with pytest.raises(DataSourceError, match="could not download .*; pass --source FILE or set ATTNLIFE_SOURCES"):
        prepare_dataset("shakespeare_char", tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


def test_zip_download_size_check(http_root, shared_data: Path, tmp_path: Path, monkeypatch):
    """text8.zip has no confirmed sha256: the archive size is checked instead."""
    import zipfile

    root, base = http_root
    with zipfile.ZipFile(root / "text8.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(shared_data / "text8" / "text8_head_3010294.txt", arcname="text8")
    _point_url(monkeypatch, "text8", f"{base}/text8.zip")
    with pytest.raises(ChecksumError, match="bytes, expected 31,344,016 for text8"):
        prepare_dataset("text8", tmp_path, quiet=True)
    size = (root / "text8.zip").stat().st_size
    monkeypatch.setitem(DATASETS, "text8", dataclasses.replace(DATASETS["text8"], download_bytes=size))
    prepare_dataset("text8", tmp_path, quiet=True)
    meta = load_prepared(tmp_path, "text8").meta
    assert meta["source"]["kind"] == "download" and meta["prefix"] is True
    assert meta["split_tokens"]["train"] == 2_709_264
