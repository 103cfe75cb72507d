"""Checkpoint suites from a Hugging Face hub, streamed: one revision on disk while it is measured.

    refs = suite_refs("EleutherAI/pythia-1.4b", RevisionSelector(log_spaced=20))  # nothing downloaded
    store = HubStore(out / "hub")                       # what attnlife downloaded, per revision
    with store.local(refs[0]) as ref:                   # download (resumable), then a local 'hf' ref
        measure(ref)
    # leaving the block evicted exactly the files this download created

Suites. `suite_refs(model, selector)`: MODEL is a local directory of revision folders (each with
a config.json), a directory in the HF cache layout (refs/, snapshots/), or a hub id. Without
names in the selector every *step revision* is taken (`attnlife.series.revisions`): a hub id's
branches and tags from `HfApi.list_repo_refs`, a directory's folder names; a suite without step
revisions is its `main`. Hub refs (kind 'hub', empty path) are resolved only by `HubStore`; with
HF_HUB_OFFLINE=1 they are looked up in the cache at once (a missing one is an error naming it).
The client is the real `huggingface_hub`; its endpoint (HF_ENDPOINT) and cache (HF_HUB_CACHE,
HF_HOME) are read from the environment at call time.

Eviction: attnlife deletes only what it created. Before a revision is fetched, its ledger entry
(OUT/hub/<host>/<repo folder>.json) records which of the revision's cache paths are absent: its snapshot
files and folder, its blobs, their lock files, the tree listing, the repository's folders and the
cache's CACHEDIR.TAG. After the measurement those paths are removed, and so are the revision's
paths that any entry of the ledger found absent (two concurrent fetches share a config blob: the
first may evict it before the second makes it again); a blob still linked from another snapshot,
or a folder still holding files, is kept as an orphan and removed by a later eviction. A killed
sweep leaves its entry behind: the resumed sweep reuses it (the half-fetched files are still
attnlife's) and `evict_done` removes revisions measured before the kill. `keep=True`
(--keep-downloads) records nothing and deletes nothing.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Optional

from attnlife.series.refs import CheckpointRef, SeriesSourceError
from attnlife.series.revisions import RevisionSelector, revision_step, select, step_revisions

# what a measurement reads from a revision: weights, config, tokenizer (for --text)
FETCH_PATTERNS = ["*.json", "*.safetensors", "pytorch_model*.bin", "*.txt", "*.model", "tokenizer*"]
FETCH_TRIES = 3           # snapshot_download tries per revision (see HubStore.fetch)
_LOCAL = threading.Lock()


def hub_cache_dir() -> Path:
    """The HF hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else huggingface_hub's default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_endpoint() -> Optional[str]:
    return os.environ.get("HF_ENDPOINT") or None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("0", "", "false", "no")


def repo_folder(repo_id: str) -> str:
    """models--org--name: the cache folder of a model repository."""
    return "--".join(["models", *repo_id.split("/")])


# ---------------------------------------------------------------------------------------- suites
def _hub_names(repo_id: str) -> list[str]:
    """Branch and tag names of a hub repository (online), or its cached refs (offline)."""
    if hub_offline():
        refs = hub_cache_dir() / repo_folder(repo_id) / "refs"
        return sorted(str(p.relative_to(refs)) for p in refs.rglob("*") if p.is_file()) if refs.is_dir() else []
    from huggingface_hub import HfApi

    try:
        found = HfApi(endpoint=hub_endpoint()).list_repo_refs(repo_id)
    except Exception as err:  # noqa: BLE001 - unknown repo, no network, refused connection
        raise SeriesSourceError(f"cannot list the revisions of {repo_id} on {hub_endpoint() or 'the hub'} "
                                f"({type(err).__name__}); check the id and the connection, or pass a local "
                                f"directory with one subdirectory per revision") from None
    return [r.name for r in found.branches] + [r.name for r in found.tags]


def _local_names(root: Path) -> list[str]:
    if (root / "refs").is_dir() and (root / "snapshots").is_dir():  # the HF cache layout
        return sorted(str(p.relative_to(root / "refs")) for p in (root / "refs").rglob("*") if p.is_file())
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file())


def _step_of(name: str, position: int) -> int:
    step = revision_step(name)
    if step is not None:
        return step
    from attnlife.series.refs import _last_int

    last = _last_int(name)
    return last if last is not None else position


def suite_refs(model: str, selector: RevisionSelector = RevisionSelector()) -> list[CheckpointRef]:
    """The selected revisions of a suite as refs, ascending by step (module doc); downloads nothing."""
    from attnlife.series.refs import _resolve_hf_revision

    root = Path(model)
    local = root.is_dir()
    names = _local_names(root) if local else _hub_names(model)
    if selector.names:   # named revisions need not be step revisions (main, v1.0, a commit)
        unknown = [n for n in selector.names if names and n not in names and not _is_commit(n)]
        if unknown:
            suite = step_revisions(names)
            shown = ", ".join(n for _, n in suite[:4]) + (", ..." if len(suite) > 4 else "")
            raise SeriesSourceError(f"revision(s) {', '.join(unknown)} not found in {model} "
                                    f"({len(suite)} step revisions: {shown or 'none'})")
        suite = sorted((_step_of(n, i), n) for i, n in enumerate(dict.fromkeys(selector.names)))
        chosen = select(suite, replace(selector, names=()))
    else:
        chosen = select(step_revisions(names) or [(0, "main")], selector)
    steps = [s for s, _ in chosen]
    if len(set(steps)) != len(steps):
        raise SeriesSourceError(f"revisions {[n for _, n in chosen]} of {model} do not have distinct "
                                f"steps; pass step revisions (stepN)")
    name = root.resolve().name if local else model
    refs = []
    for step, rev in chosen:
        if local or hub_offline():
            refs.append(CheckpointRef(name, step, "hf", str(_resolve_hf_revision(model, rev)), {"revision": rev}))
        else:
            refs.append(CheckpointRef(name, step, "hub", "", {"repo": model, "revision": rev}))
    return refs


def _is_commit(name: str) -> bool:
    return len(name) == 40 and all(c in "0123456789abcdef" for c in name)


# ---------------------------------------------------------------------------------------- store
class HubStore:
    """Fetches hub refs into the HF cache and evicts what it fetched (module doc)."""

    def __init__(self, ledger_dir: str | os.PathLike, keep: bool = False,
                 cache_dir: Optional[str | os.PathLike] = None) -> None:
        # one ledger per machine: tasks on other nodes (Ray, SLURM) fill their own caches
        self.ledger_dir, self.keep = Path(ledger_dir) / socket.gethostname(), keep
        self.cache = Path(cache_dir) if cache_dir else hub_cache_dir()

    # ------------------------------------------------------------------ public
    @contextlib.contextmanager
    def local(self, ref: CheckpointRef) -> Iterator[CheckpointRef]:
        """The ref as a local 'hf' ref while the block runs; a hub ref is fetched first and
        evicted afterwards (also when the block raises), unless `keep`."""
        if ref.kind != "hub":
            yield ref
            return
        local = self.fetch(ref)
        try:
            yield local
        finally:
            self.evict(ref)

    def fetch(self, ref: CheckpointRef, patterns: Optional[list[str]] = None) -> CheckpointRef:
        """Download the revision's files matching `patterns` (default `FETCH_PATTERNS`: weights,
        config, tokenizer) that are not cached yet; return it as a local 'hf' ref."""
        from huggingface_hub import snapshot_download

        repo, rev = ref.config["repo"], ref.config["revision"]
        patterns = patterns or FETCH_PATTERNS
        commit, files = self._listing(repo, rev, patterns)
        if not self.keep:
            self._record(repo, rev, commit, files)
        for attempt in range(FETCH_TRIES):   # a blob evicted between the client's check and its link: again
            try:
                path = Path(snapshot_download(repo, revision=commit, cache_dir=str(self.cache),
                                              endpoint=hub_endpoint(), allow_patterns=patterns))
            except Exception as err:  # noqa: BLE001 - network, disk full, server error
                # another worker's eviction may remove an emptied cache folder (.locks/<repo>, blobs/)
                # between the client's mkdir and its write there: the next try makes it again
                if isinstance(err, FileNotFoundError) and attempt < FETCH_TRIES - 1:
                    continue
                raise SeriesSourceError(f"cannot download revision '{rev}' of {repo} ({type(err).__name__}: "
                                        f"{str(err).splitlines()[0][:160] if str(err) else ''}); rerun the "
                                        f"same command to resume") from None
            if all((path / f).exists() for f, _ in files):
                break
        return replace(ref, kind="hf", path=str(path), config={**ref.config, "commit": commit})

    def evict(self, ref: CheckpointRef) -> None:
        """Remove the files fetching `ref` created (kept blobs still linked elsewhere as orphans)."""
        if self.keep or ref.kind != "hub":
            return
        repo, rev = ref.config["repo"], ref.config["revision"]
        with self._ledger(repo) as ledger:
            entry = ledger["revisions"].pop(rev, None)
            self._remove(repo, self._owned(entry, ledger) + ledger["orphans"], ledger)

    def evict_done(self, repo: str, done: Callable[[str], bool]) -> int:
        """Evict ledger entries whose revision `done(rev)` says is measured (left by a killed
        sweep between its measurement and its eviction); returns how many."""
        if self.keep or not self._ledger_path(repo).is_file():
            return 0
        with self._ledger(repo) as ledger:
            gone = [rev for rev in ledger["revisions"] if done(rev)]
            owned = [p for rev in gone for p in self._owned(ledger["revisions"].pop(rev), ledger)]
            self._remove(repo, owned + ledger["orphans"], ledger)
        return len(gone)

    # ------------------------------------------------------------------ internals
    def _listing(self, repo: str, rev: str, patterns: list[str]) -> tuple[str, list[tuple[str, str]]]:
        """(commit, [(file, blob name)]) of the fetched files of a revision, from the hub."""
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile
        from huggingface_hub.utils import filter_repo_objects

        api = HfApi(endpoint=hub_endpoint())
        try:
            commit = api.repo_info(repo, revision=rev).sha
            tree = [f for f in api.list_repo_tree(repo, revision=commit, recursive=True) if isinstance(f, RepoFile)]
        except Exception as err:  # noqa: BLE001
            raise SeriesSourceError(f"cannot list revision '{rev}' of {repo} ({type(err).__name__}); check the "
                                    f"revision name and the connection, then rerun") from None
        keep = set(filter_repo_objects([f.path for f in tree], allow_patterns=patterns))
        return commit, [(f.path, f.lfs.sha256 if f.lfs is not None else f.blob_id) for f in tree if f.path in keep]

    def _candidates(self, repo: str, commit: str, files: list[tuple[str, str]]) -> list[str]:
        """Cache paths (relative to the cache) that fetching this revision may create, parents first."""
        base = repo_folder(repo)
        paths = ["", "CACHEDIR.TAG", base, f"{base}/blobs", f"{base}/snapshots", f"{base}/snapshots/{commit}",
                 f"{base}/trees", f"{base}/trees/{commit}.json", ".locks", f".locks/{base}"]
        for name, blob in files:
            parts = name.split("/")
            paths += [f"{base}/snapshots/{commit}/{'/'.join(parts[:i])}" for i in range(1, len(parts))]
            paths += [f"{base}/snapshots/{commit}/{name}", f"{base}/blobs/{blob}", f".locks/{base}/{blob}.lock"]
        return list(dict.fromkeys(paths))

    def _record(self, repo: str, rev: str, commit: str, files: list[tuple[str, str]]) -> None:
        with self._ledger(repo) as ledger:
            # merged with an earlier entry (prefetched, a partial fetch, a killed sweep's): what
            # is absent now is made by this fetch, what the entry lists is already attnlife's
            entry = ledger["revisions"].setdefault(rev, {"commit": commit, "owned": [], "candidates": []})
            candidates = self._candidates(repo, commit, files)
            absent = [p for p in candidates if not os.path.lexists(self._abs(p))]
            entry["owned"] = list(dict.fromkeys(entry["owned"] + absent))
            entry["candidates"] = list(dict.fromkeys(entry.get("candidates", []) + candidates))
            ledger["created"] = list(dict.fromkeys(ledger.get("created", []) + absent))

    @staticmethod
    def _owned(entry: Optional[dict], ledger: dict) -> list[str]:
        """A revision's paths attnlife made: absent when it was recorded, or absent when any
        revision of this ledger was recorded (another fetch made it; the one that recorded it as
        absent may already have evicted it, and this fetch then made it again)."""
        if not entry:
            return []
        created = set(ledger.get("created", []))
        return list(dict.fromkeys(entry["owned"] + [p for p in entry.get("candidates", []) if p in created]))

    def _abs(self, rel: str) -> Path:
        return self.cache / rel if rel else self.cache

    def _linked_blobs(self, repo: str) -> set[str]:
        """Names of the blobs some snapshot of the repository links to."""
        snaps = self.cache / repo_folder(repo) / "snapshots"
        linked = set()
        if snaps.is_dir():
            for p in snaps.rglob("*"):
                if p.is_symlink():
                    linked.add(os.path.basename(os.readlink(p)))
        return linked

    def _remove(self, repo: str, owned: list[str], ledger: dict) -> None:
        """Delete owned files (blobs only when unlinked; else orphans), then owned empty folders."""
        base = repo_folder(repo)
        files = [p for p in owned if "/snapshots/" in p and not self._abs(p).is_dir()
                 or p.endswith(".json") and "/trees/" in p]
        for p in files:
            with contextlib.suppress(FileNotFoundError):
                if not self._abs(p).is_dir():
                    self._abs(p).unlink()
        linked = self._linked_blobs(repo)
        orphans = []
        blobs = [p for p in dict.fromkeys(owned) if p.startswith(f"{base}/blobs/")]
        for p in blobs:
            name = p.rsplit("/", 1)[1]
            lock = f".locks/{base}/{name}.lock"
            if name in linked:
                orphans += [p] + ([lock] if lock in owned else [])
                continue
            with _blob_lock(self._abs(lock)):   # the client's own lock: no link is made meanwhile
                if name not in self._linked_blobs(repo):
                    with contextlib.suppress(FileNotFoundError):
                        self._abs(p).unlink()
                    folder = self._abs(p).parent
                    for tmp in folder.glob(f"{name}.*.incomplete") if folder.is_dir() else ():
                        with contextlib.suppress(FileNotFoundError):
                            tmp.unlink()
                else:
                    orphans += [p] + ([lock] if lock in owned else [])
                    continue
            if lock in owned:
                with contextlib.suppress(FileNotFoundError):
                    self._abs(lock).unlink()
        folders = [p for p in owned if p and p not in files and p not in blobs and not p.endswith(".lock")
                   and p != "CACHEDIR.TAG"]
        for p in sorted(dict.fromkeys(folders), key=lambda p: -p.count("/")):
            with contextlib.suppress(OSError):
                self._abs(p).rmdir()
            if self._abs(p).is_dir():
                orphans.append(p)             # still holds another revision's files: later
        if "CACHEDIR.TAG" in owned:           # the client's marker, made for this download
            if any(self._abs(p).exists() for p in (base, f".locks/{base}")):
                orphans.append("CACHEDIR.TAG")
            else:
                with contextlib.suppress(OSError):
                    (self.cache / "CACHEDIR.TAG").unlink()
        if "" in owned:
            with contextlib.suppress(OSError):
                self.cache.rmdir()
            if self.cache.is_dir() and any(p in orphans for p in ("CACHEDIR.TAG", base, ".locks")):
                orphans.append("")
        ledger["orphans"] = list(dict.fromkeys(orphans))

    def _ledger_path(self, repo: str) -> Path:
        return self.ledger_dir / f"{repo_folder(repo)}.json"

    @contextlib.contextmanager
    def _ledger(self, repo: str) -> Iterator[dict]:
        """The repository's ledger under an exclusive lock (threads and processes); written back
        atomically on exit, or removed when it holds nothing."""
        path = self._ledger_path(repo)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _LOCAL, open(path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                ledger = json.loads(path.read_text()) if path.is_file() else {}
                ledger.setdefault("cache", str(self.cache))
                ledger.setdefault("host", socket.gethostname())
                ledger.setdefault("revisions", {})
                ledger.setdefault("orphans", [])
                ledger.setdefault("created", [])
                yield ledger
                if ledger["revisions"] or ledger["orphans"]:   # else settled: forget `created`
                    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                    tmp.write_text(json.dumps(ledger, indent=1))
                    os.replace(tmp, path)
                else:
                    path.unlink(missing_ok=True)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _blob_lock(path: Path) -> Iterator[None]:
    """huggingface_hub's per-blob download lock, when the file exists (else nothing to exclude)."""
    if not path.is_file():
        yield
        return
    from filelock import FileLock

    with FileLock(str(path)):
        yield


def prefetched(refs: list[CheckpointRef], store: HubStore) -> Iterator[CheckpointRef]:
    """Yield `refs` in order while a background thread fetches the next hub ref (one ahead: with
    the one being measured, at most two revisions on disk). Fetch errors surface when that ref's
    own fetch runs (the caller's `store.local`)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="attnlife-prefetch") as pool:
        ahead = None
        for i, ref in enumerate(refs):
            if ahead is not None:
                with contextlib.suppress(Exception):
                    ahead.result()
            nxt = refs[i + 1] if i + 1 < len(refs) else None
            ahead = pool.submit(store.fetch, nxt) if nxt is not None and nxt.kind == "hub" else None
            yield ref
