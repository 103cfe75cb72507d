"""A Hugging Face Hub on 127.0.0.1: the HTTP endpoints `huggingface_hub` calls to list, resolve and
download a model repository's revisions, served from local suite folders (one subfolder per
revision, as `tests.support.hub_suite.build_suite` writes them).

    with HubServer({"org/pythia-mini": suite_root}) as hub:
        os.environ["HF_ENDPOINT"] = hub.endpoint          # the real client, pointed here
        HfApi().list_repo_refs("org/pythia-mini")           # every revision folder is a branch

Endpoints (as the public Hub answers them; huggingface_hub 2.x):
  GET  /api/models/{repo}/refs                      branches (one per revision folder, plus `main`
                                                    = the last revision), tags, converts
  GET  /api/models/{repo}/revision/{rev}            model info: id, sha (the commit), siblings
  GET  /api/models/{repo}/tree/{rev}[/{path}]       file listing: type, path, size, oid (git blob
                                                    sha1) and, for weights, lfs {oid sha256, size}
  HEAD /{repo}/resolve/{rev}/{path}                 X-Repo-Commit, ETag (git sha1; sha256 for LFS
                                                    files with X-Linked-Etag / X-Linked-Size),
                                                    Content-Length
  GET  /{repo}/resolve/{rev}/{path}                 the bytes (Range: bytes=a- honoured)
Errors carry the Hub's X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound) and 404.
`rev` is a branch name or the 40-hex commit of a revision; commits are sha1 over the repo, the
revision name and its files' names, sizes and mtimes, so they are stable across server restarts.

For tests: `requests` counts requests per (method, revision, file); `on_get(rev, path)` runs before
each file download is sent; `bytes_per_second` throttles file bodies (to kill a sweep mid-download).
Run standalone: `python -m tests.support.hub_server org/name=DIR [...]` prints the endpoint.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".h5", ".msgpack")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
CHUNK = 1 << 20


class _Repo:
    """One repository: revision name -> folder, commits and file hashes (computed once)."""

    def __init__(self, repo_id: str, root: Path) -> None:
        self.repo_id, self.root = repo_id, Path(root)
        self._hashes: dict[Path, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def revisions(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and (p / "config.json").is_file())

    def files(self, rev: str) -> list[str]:
        folder = self.root / rev
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())

    def hashes(self, path: Path) -> tuple[str, str]:
        """(git blob sha1, sha256) of a file, cached by path and mtime."""
        key = path.resolve()
        with self._lock:
            if key in self._hashes:
                return self._hashes[key]
        size = path.stat().st_size
        git, sha = hashlib.sha1(f"blob {size}\0".encode()), hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                git.update(chunk)
                sha.update(chunk)
        with self._lock:
            self._hashes[key] = (git.hexdigest(), sha.hexdigest())
        return self._hashes[key]

    def commit(self, rev: str) -> str:
        h = hashlib.sha1(f"{self.repo_id}\0{rev}".encode())
        for name in self.files(rev):
            st = (self.root / rev / name).stat()
            h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        return h.hexdigest()

    def main(self) -> Optional[str]:
        """`main` points at the last revision (highest step, as on Pythia's repositories)."""
        revs = self.revisions()
        if not revs:
            return None
        steps = [int(m.group(1)) if (m := re.match(r"step(\d+)", r)) else -1 for r in revs]
        return revs[max(range(len(revs)), key=lambda i: (steps[i], revs[i]))]

    def resolve(self, rev: str) -> Optional[str]:
        """Revision folder name for a branch name or a commit; None if unknown."""
        if rev == "main":
            return self.main()
        if rev in self.revisions():
            return rev
        if COMMIT.match(rev):
            for r in self.revisions():
                if self.commit(r) == rev:
                    return r
        return None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a client killed mid-transfer
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class HubServer:
    """A threaded HTTP server on 127.0.0.1 serving `repos` (repo id -> suite folder)."""

    def __init__(self, repos: dict[str, Path], port: int = 0, bytes_per_second: Optional[float] = None,
                 on_get: Optional[Callable[[str, str], None]] = None) -> None:
        self.repos = {rid: _Repo(rid, root) for rid, root in repos.items()}
        self.bytes_per_second = bytes_per_second
        self.on_get = on_get
        self.requests: Counter = Counter()
        self.bytes_sent = 0
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", port), self._handler())
        self._thread: Optional[threading.Thread] = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def downloads(self, rev: Optional[str] = None) -> int:
        """GET requests of files (resolve/) so far, for one revision folder or all."""
        return sum(n for (method, r, _), n in self.requests.items() if method == "GET" and (rev is None or r == rev))

    def _count(self, method: str, rev: str, path: str) -> None:
        with self._lock:
            self.requests[(method, rev, path)] += 1

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                server._route(self, "GET")

            def do_HEAD(self) -> None:
                server._route(self, "HEAD")

        return Handler

    # ------------------------------------------------------------------ routing
    def _route(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        try:
            if path.startswith("/api/models/"):
                self._api(h, path[len("/api/models/"):], query, method)
                return
            m = re.match(r"^/(.+?/[^/]+)/resolve/([^/]+)/(.+)$", path)
            if m:
                self._resolve(h, m.group(1), m.group(2), m.group(3), method)
                return
            self._error(h, 404, "RepoNotFound", f"no route {path}")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _repo_and_rest(self, rest: str) -> tuple[Optional[_Repo], str]:
        for rid, repo in self.repos.items():
            if rest == rid or rest.startswith(rid + "/"):
                return repo, rest[len(rid):].lstrip("/")
        return None, rest

    def _api(self, h, rest: str, query: dict, method: str) -> None:
        repo, tail = self._repo_and_rest(rest)
        if repo is None:
            self._error(h, 404, "RepoNotFound", f"Repository {rest} not found")
            return
        if tail == "refs":
            main = repo.main()
            branches = [{"name": r, "ref": f"refs/heads/{r}", "targetCommit": repo.commit(r)}
                        for r in repo.revisions()]
            if main is not None:
                branches.insert(0, {"name": "main", "ref": "refs/heads/main", "targetCommit": repo.commit(main)})
            self._json(h, {"branches": branches, "converts": [], "tags": [], "pullRequests": []}, method)
            return
        m = re.match(r"^(revision|tree)/([^/]+)(?:/(.*))?$", tail)
        if not m:
            self._error(h, 404, "EntryNotFound", f"no API route {tail}")
            return
        kind, rev_name, sub = m.group(1), m.group(2), m.group(3) or ""
        rev = repo.resolve(rev_name)
        if rev is None:
            self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev_name}")
            return
        self._count("API", rev, kind)
        if kind == "revision":
            files = repo.files(rev)
            self._json(h, {"id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.commit(rev),
                           "private": False, "siblings": [{"rfilename": f} for f in files]}, method)
            return
        entries = []
        for name in repo.files(rev):
            if sub and not name.startswith(sub.rstrip("/") + "/"):
                continue
            p = repo.root / rev / name
            git, sha = repo.hashes(p)
            entry = {"type": "file", "path": name, "size": p.stat().st_size, "oid": git}
            if name.endswith(LFS_SUFFIXES):
                entry["lfs"] = {"oid": sha, "size": p.stat().st_size, "pointerSize": 134}
            entries.append(entry)
        self._json(h, entries, method)

    def _resolve(self, h, repo_id: str, rev_name: str, name: str, method: str) -> None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(h, 404, "RepoNotFound", f"Repository {repo_id} not found")
            return
        rev = repo.resolve(rev_name)
        if rev is None:
            self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev_name}")
            return
        path = repo.root / rev / name
        commit = repo.commit(rev)
        if not path.is_file():
            self._error(h, 404, "EntryNotFound", f"{name} does not exist at {rev_name}", commit)
            return
        self._count(method, rev, name)
        git, sha = repo.hashes(path)
        size = path.stat().st_size
        lfs = name.endswith(LFS_SUFFIXES)
        start = 0
        rng = h.headers.get("Range")
        if method == "GET" and rng and (m := re.match(r"bytes=(\d+)-", rng)):
            start = min(int(m.group(1)), size)
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", commit)
        h.send_header("ETag", f'"{sha if lfs else git}"')
        if lfs:
            h.send_header("X-Linked-Etag", f'"{sha}"')
            h.send_header("X-Linked-Size", str(size))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Type", "application/octet-stream")
        if start:
            h.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        h.send_header("Content-Length", str(size - start))
        h.end_headers()
        if method == "HEAD":
            return
        if self.on_get is not None:
            self.on_get(rev, name)
        with open(path, "rb") as f:
            f.seek(start)
            while chunk := f.read(CHUNK if self.bytes_per_second is None else 1 << 16):
                h.wfile.write(chunk)
                with self._lock:
                    self.bytes_sent += len(chunk)
                if self.bytes_per_second:
                    time.sleep(len(chunk) / self.bytes_per_second)

    # ------------------------------------------------------------------ answers
    @staticmethod
    def _json(h, payload, method: str) -> None:
        body = json.dumps(payload).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(body)

    @staticmethod
    def _error(h, status: int, code: str, message: str, commit: Optional[str] = None) -> None:
        body = json.dumps({"error": message}).encode()
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        if commit:
            h.send_header("X-Repo-Commit", commit)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


def main(argv: list[str]) -> None:
    """`python -m tests.support.hub_server org/name=DIR ... [--port N] [--bps B]`: serve until killed."""
    repos, port, bps = {}, 0, None
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--port":
            port = int(args.pop(0))
        elif a == "--bps":
            bps = float(args.pop(0))
        else:
            rid, _, root = a.partition("=")
            repos[rid] = Path(root)
    server = HubServer(repos, port=port, bytes_per_second=bps).start()
    print(server.endpoint, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
