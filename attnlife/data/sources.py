"""Find a dataset's source bytes: `--source`, the user cache, `$ATTNLIFE_SOURCES`, then the download.

Order of lookup (the first that exists wins):
1. `source` given by the user: a raw/.txt file or a .zip holding the dataset's member;
2. the user cache `$ATTNLIFE_CACHE/<name>/<file>` (default `~/.cache/attnlife/`), holding only
   verified canonical downloads;
3. `<sources>/<glob>` for each of the spec's `offline_paths` (the ../shared/data layout), where
   <sources> is the `sources_dir` argument (`--sources`), else `$ATTNLIFE_SOURCES`;
4. the canonical URL, streamed into the cache atomically and verified (sha256, else size) first.
"""
from __future__ import annotations

import hashlib
import lzma
import os
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from attnlife.data.registry import DatasetSpec
from attnlife.errors import ChecksumError, DataSourceError
from attnlife.store.atomic import atomic_path

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class SourceBytes:
    """The unpacked source file: its bytes and where they came from.

    kind is "given" (--source), "cache", "sources_dir" ($ATTNLIFE_SOURCES) or "download".
    """

    data: bytes
    path: str
    kind: str
    sha256: str
    archive_sha256: Optional[str] = None


def cache_dir() -> Path:
    """`$ATTNLIFE_CACHE`, else `~/.cache/attnlife`."""
    env = os.environ.get("ATTNLIFE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "attnlife"


def sha256_hex(data: bytes) -> str:
    """sha256 of `data` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def resolve_source(spec: DatasetSpec, source: str | os.PathLike | None = None,
                   quiet: bool = False, sources_dir: str | os.PathLike | None = None) -> SourceBytes:
    """Return the source bytes of `spec` from the first place in the lookup order that has them
    (`sources_dir`: the folder of offline copies, default `$ATTNLIFE_SOURCES`)."""
    if source is not None:
        return read_source_file(spec, Path(source), kind="given")
    if spec.url is None:
        raise DataSourceError(f"dataset {spec.name} has no canonical source; pass --source FILE "
                              f"(a UTF-8 text file)")
    cached = cache_dir() / spec.name / str(spec.cache_name)
    if cached.is_file():
        _verify_download(spec, cached.read_bytes(), str(cached), hint="delete it and rerun")
        return read_source_file(spec, cached, kind="cache")
    offline = _find_offline(spec, sources_dir)
    if offline is not None:
        return read_source_file(spec, offline, kind="sources_dir")
    download(spec, cached, quiet=quiet)
    got = read_source_file(spec, cached, kind="download")
    return SourceBytes(got.data, f"{spec.url} -> {cached}", "download", got.sha256,
                       got.archive_sha256)


def read_source_file(spec: DatasetSpec, path: Path, kind: str) -> SourceBytes:
    """Read a raw file, or the dataset's member of a .zip; reject missing or empty input."""
    if not path.exists():
        raise DataSourceError(f"source file {path} does not exist; check the --source path")
    if not path.is_file():
        raise DataSourceError(f"source {path} is not a file; pass a .txt/raw file or a .zip")
    raw = path.read_bytes()
    if not raw:
        raise DataSourceError(f"source file {path} is empty; pass the {spec.name} text or its .zip")
    if path.suffix.lower() != ".zip":
        return SourceBytes(raw, str(path), kind, sha256_hex(raw))
    data, member = _read_zip_member(spec, path)
    if not data:
        raise DataSourceError(f"member {member} of {path} is empty; pass a complete {spec.name} zip")
    return SourceBytes(data, f"{path}!{member}", kind, sha256_hex(data), sha256_hex(raw))


def _read_zip_member(spec: DatasetSpec, path: Path) -> tuple[bytes, str]:
    """Bytes of the spec's member (exact name or base name); the only file if the spec names none."""
    try:
        with zipfile.ZipFile(path) as zf:
            files = [i.filename for i in zf.infolist() if not i.is_dir()]
            if spec.member is not None:
                names = [n for n in files if n == spec.member or n.rsplit("/", 1)[-1] == spec.member]
                wanted = f"member '{spec.member}'"
            else:
                names = files if len(files) == 1 else []
                wanted = "exactly one file"
            if not names:
                shown = ", ".join(files[:5]) or "nothing"
                raise DataSourceError(f"zip {path} does not hold {wanted} (it holds: {shown}); "
                                      f"pass the canonical {spec.name} zip or the unpacked file")
            return zf.read(names[0]), names[0]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, lzma.LZMAError,
            NotImplementedError, RuntimeError) as err:  # corrupt payload, unknown method, encrypted
        raise DataSourceError(f"cannot read zip {path} ({' '.join(str(err).split()) or type(err).__name__}); "
                              f"download it again or pass the unpacked file") from None


def _find_offline(spec: DatasetSpec, sources_dir: str | os.PathLike | None = None) -> Optional[Path]:
    """First match of the spec's `offline_paths` globs under `sources_dir` (default
    `$ATTNLIFE_SOURCES`), or None."""
    root = sources_dir or os.environ.get("ATTNLIFE_SOURCES")
    if not root:
        return None
    base = Path(root).expanduser()
    for pattern in spec.offline_paths:
        matches = sorted(p for p in base.glob(pattern) if p.is_file())
        if matches:
            return matches[0]
    return None


def download(spec: DatasetSpec, dest: Path, quiet: bool = False) -> Path:
    """Stream `spec.url` to `dest` atomically; verify sha256 (or size) before it lands."""
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(str(spec.url), timeout=60) as response, \
                atomic_path(dest) as tmp, open(tmp, "wb") as out:
            total = response.headers.get("Content-Length") if hasattr(response, "headers") else None
            bar = tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                       desc=f"download {spec.name}", disable=quiet)
            digest, n_bytes = hashlib.sha256(), 0
            with bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    n_bytes += len(chunk)
                    bar.update(len(chunk))
            out.flush()
            _check_digest(spec, digest.hexdigest(), n_bytes, spec.url or "", "check the URL")
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise DataSourceError(f"could not download {spec.url} ({err}); pass --source FILE or set "
                              f"ATTNLIFE_SOURCES to a folder of offline copies") from None
    return dest


def _verify_download(spec: DatasetSpec, data: bytes, where: str, hint: str) -> None:
    _check_digest(spec, sha256_hex(data), len(data), where, hint)


def _check_digest(spec: DatasetSpec, digest: str, n_bytes: int, where: str, hint: str) -> None:
    """Raise ChecksumError unless sha256 (if known) and size (if known) match the canonical file."""
    if spec.download_sha256 is not None and digest != spec.download_sha256:
        raise ChecksumError(f"{where} has sha256 {digest[:12]}..., expected "
                            f"{spec.download_sha256[:12]}... for {spec.name}; {hint}")
    if spec.download_bytes is not None and n_bytes != spec.download_bytes:
        raise ChecksumError(f"{where} has {n_bytes:,} bytes, expected {spec.download_bytes:,} for "
                            f"{spec.name}; {hint}")
