"""Hub suites streamed at bounded disk: the real huggingface_hub client against a Hub on 127.0.0.1
(tests.support.hub_server), serving a suite in Pythia's layout (tests.support.hub_suite).

Checked: every step revision is found and measured in step order, at most 3 revisions' weights are
on disk at any moment (sampled by a watcher thread and at every file the server sends), the cache
is left exactly as it was (a revision the user had cached before stays, bit for bit), results equal
a run over the local directory of the same revisions, and a sweep SIGKILLed mid-download resumes,
downloading no revision it had finished again.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from attnlife.cli import app
from attnlife.series.hub import HubStore, suite_refs
from attnlife.series.revisions import RevisionSelector
from attnlife.store.run_dir import load_run
from tests.support.hub_server import HubServer
from tests.support.hub_suite import build_suite

REPO = "org/pythia-mini"
STEPS = [0, 1, 2, 4, 8, 16, 32]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    return build_suite(tmp_path_factory.mktemp("suite") / "pythia-mini", steps=STEPS)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "ids.npy"
    np.save(path, np.random.default_rng(0).integers(0, 61, 4000).astype(np.int64))
    return path


def _weights_on_disk(cache: Path) -> int:
    """Revisions whose weights are in the cache: snapshot folders holding a weight file."""
    return sum(1 for d in cache.glob("models--*/snapshots/*") if any(d.glob("*.safetensors")))


def _tree(cache: Path) -> dict:
    return {str(p.relative_to(cache)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(cache.rglob("*"))} if cache.exists() else {}


class Watcher:
    """Samples the number of revisions with weights on disk every few ms until stopped."""

    def __init__(self, cache: Path) -> None:
        self.cache, self.peak, self._stop = cache, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _weights_on_disk(self.cache))
            time.sleep(0.003)

    def __enter__(self) -> "Watcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def hub_env(monkeypatch, tmp_path, suite):
    cache = tmp_path / "hf-cache"
    peaks = []
    server = HubServer({REPO: suite}, on_get=lambda rev, path: peaks.append(_weights_on_disk(cache))).start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server, cache, peaks
    server.stop()


def _comparable(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frame = frame.drop(columns=[c for c in ("model",) if c in frame]).sort_values(keys).reset_index(drop=True)
    return frame


def _invoke(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)


def test_suite_discovery_and_selectors_over_the_hub(hub_env, suite):
    server, cache, _ = hub_env
    refs = suite_refs(REPO)
    assert [r.step for r in refs] == STEPS and {r.kind for r in refs} == {"hub"}
    assert [r.config["revision"] for r in suite_refs(REPO, RevisionSelector(steps=(2, 8)))] == ["step2", "step4", "step8"]
    assert [r.step for r in suite_refs(REPO, RevisionSelector(log_spaced=5))] == [0, 1, 4, 8, 32]
    assert [r.step for r in suite_refs(str(suite), RevisionSelector(every_kth=3))] == [0, 4, 32]
    assert server.downloads() == 0 and not cache.exists()        # listing downloads nothing


@pytest.mark.parametrize("verb", ["measure", "spectra", "track"])
def test_streamed_sweep_bounded_disk_leaves_cache_as_it_was_and_equals_local(verb, hub_env, suite, tokens, tmp_path):
    server, cache, peaks = hub_env
    # the user's cache before: an unrelated file and revision step4, downloaded by the user
    (cache / "notes.txt").parent.mkdir(parents=True)
    (cache / "notes.txt").write_text("mine")
    HubStore(tmp_path / "user-ledger", keep=True).fetch(suite_refs(REPO, RevisionSelector(names=("step4",)))[0])
    before = _tree(cache)
    served, earlier = server.downloads(), dict(server.requests)
    probe = ["--tokens", str(tokens), "--sequences", "4", "--seq-len", "32"] if verb != "spectra" else []
    with Watcher(cache) as watch:
        _invoke([verb, "--hf", REPO, "--out", str(tmp_path / "hub"), "--quiet", *probe])
    assert watch.peak <= 3 and max(peaks) <= 3, (watch.peak, peaks)
    assert watch.peak >= 2                      # the next revision was fetched while one was measured
    assert _tree(cache) == before               # nothing attnlife downloaded is left, nothing else touched
    weight_gets = {rev for (m, rev, path), n in server.requests.items()
                   if m == "GET" and path.endswith(".safetensors") and n > earlier.get((m, rev, path), 0)}
    assert weight_gets == {f"step{s}" for s in STEPS if s != 4}        # step4 was read from the cache
    assert server.downloads() > served
    _invoke([verb, "--hf", str(suite), "--out", str(tmp_path / "local"), "--quiet", *probe])
    hub, local = load_run(tmp_path / "hub"), load_run(tmp_path / "local")
    if verb != "track":
        keys = ["step", "layer", "head_index", "matrix", "stat"]
        a, b = _comparable(hub.spectra(), keys), _comparable(local.spectra(), keys)
        assert sorted(set(a.step)) == STEPS
        pd.testing.assert_frame_equal(a, b)
    if verb != "spectra":
        keys = ["step", "split", "layer", "head_index", "layer_b", "metric"]
        a, b = _comparable(hub.metrics(), keys), _comparable(local.metrics(), keys)
        assert sorted(set(a.step)) == STEPS and set(a.split) == {"probe"}
        pd.testing.assert_frame_equal(a, b)
    assert not list((tmp_path / "hub" / "hub").rglob("*.json"))          # the ledger is settled


def test_keep_downloads_keeps_them(hub_env, tmp_path):
    server, cache, _ = hub_env
    _invoke(["spectra", "--hf", REPO, "--steps", "8:", "--keep-downloads", "--out", str(tmp_path / "o"), "--quiet"])
    assert _weights_on_disk(cache) == 3


KILL_AT = "step8"


def test_sigkill_mid_download_resumes_downloading_only_unfinished_revisions(suite, tokens, tmp_path):
    """The sweep is SIGKILLed the moment it asks for step8's weights (step4 being measured, or
    done); the rerun downloads no revision that was measured before the kill, each unfinished one
    at most once, and leaves the cache empty and a table equal to the local run."""
    cache, out = tmp_path / "hf-cache", tmp_path / "out"
    proc: list = []
    killed = threading.Event()

    def kill_on(rev: str, path: str) -> None:
        if rev == KILL_AT and path.endswith(".safetensors") and not killed.is_set():
            killed.set()
            os.kill(proc[0].pid, signal.SIGKILL)
            time.sleep(0.2)

    with HubServer({REPO: suite}, on_get=kill_on, bytes_per_second=4e6) as server:
        env = {**os.environ, "HF_ENDPOINT": server.endpoint, "HF_HUB_CACHE": str(cache),
               "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        env.pop("HF_HUB_OFFLINE", None)
        cmd = [sys.executable, "-m", "attnlife", "measure", "--hf", REPO, "--out", str(out), "--quiet",
               "--tokens", str(tokens), "--sequences", "4", "--seq-len", "32"]
        proc.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        proc[0].communicate(timeout=180)
        assert proc[0].returncode == -signal.SIGKILL
        done = {p.stem for p in (out / "probe" / "done").rglob("*.json")}
        finished = {f"step{int(name.split('_')[1])}" for name in done}
        assert finished and KILL_AT not in finished
        before_kill = {f"step{s}" for s in STEPS if s < int(KILL_AT[4:])}
        if before_kill - finished:                                    # one was being measured at the kill:
            assert _weights_on_disk(cache) >= 1                       # its files are still there
        first = dict(server.requests)
        proc[0] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        outs = proc[0].communicate(timeout=180)
        assert proc[0].returncode == 0, outs[1][-2000:]
        again = {rev: n - first.get(("GET", rev, p), 0) for (m, rev, p), n in server.requests.items()
                 if m == "GET" and p.endswith(".safetensors")}
    print(f"finished before the kill: {sorted(finished)}; weight downloads after: {again}")
    assert all(again.get(rev, 0) == 0 for rev in finished), again
    assert all(n <= 1 for n in again.values()), again
    assert not cache.exists()              # the cache did not exist before: nothing of it is left
    local = tmp_path / "local"
    _invoke(["measure", "--hf", str(suite), "--out", str(local), "--quiet", "--tokens", str(tokens),
             "--sequences", "4", "--seq-len", "32"])
    keys = ["step", "layer", "head_index", "matrix", "stat"]
    pd.testing.assert_frame_equal(_comparable(load_run(out).spectra(), keys), _comparable(load_run(local).spectra(), keys))


def test_fp16_weights_are_upcast_before_any_statistic(tmp_path):
    """Weights of 1e-4 stored in fp16: every product W_Q^T W_K underflows in fp16 (< 6e-8), so the
    spectrum is only right if the weights are upcast first; compared with float64 from the file."""
    import transformers
    from safetensors.torch import load_file, save_file

    root = build_suite(tmp_path / "tiny16", steps=[0])
    path = root / "step0" / "model.safetensors"
    state = load_file(str(path))
    state = {k: (v.float() * 1e-3).half() if "query_key_value.weight" in k else v for k, v in state.items()}
    save_file(state, str(path), metadata={"format": "pt"})
    _invoke(["spectra", "--hf", str(root), "--out", str(tmp_path / "o"), "--quiet"])
    table = load_run(tmp_path / "o").spectra()
    cfg = transformers.GPTNeoXConfig.from_pretrained(root / "step0")
    H, K, D = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads, cfg.hidden_size
    w = state["gpt_neox.layers.0.attention.query_key_value.weight"].double().reshape(H, 3, K, D)
    want = torch.linalg.svdvals(w[0, 0].T @ w[0, 1])[0].item() ** 2
    assert (w[0, 0].T.half() @ w[0, 1].half()).abs().max() == 0    # in fp16 it is all zeros
    got = table[(table.layer == 0) & (table.head_index == 0) & (table.stat == "lambda_1") & (table.matrix == "qk")]
    assert got.value.iloc[0] == pytest.approx(want, rel=1e-6) and want > 0


def test_two_local_workers_stream_at_bounded_disk_and_more_than_three_are_refused(hub_env, tmp_path):
    server, cache, peaks = hub_env
    with Watcher(cache) as watch:
        _invoke(["spectra", "--hf", REPO, "--workers", "2", "--out", str(tmp_path / "w2"), "--quiet"])
    assert watch.peak <= 3 and max(peaks) <= 3 and not cache.exists(), list(_tree(cache))
    assert sorted(set(load_run(tmp_path / "w2").spectra().step)) == STEPS
    from attnlife.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["spectra", "--hf", REPO, "--workers", "4", "--out", str(tmp_path / "w4"), "--quiet"])
    assert exc.value.code == 2 and not cache.exists()


def test_a_cache_folder_removed_under_a_download_is_fetched_again_then_evicted_clean(hub_env, tmp_path, monkeypatch):
    """Two workers share the cache: one's eviction can rmdir an emptied .locks/<repo> folder between
    the other's mkdir and its lock file (seen once in CI: FileNotFoundError). The fetch tries again,
    gets every file, and its eviction leaves the cache as it found it; a folder that keeps vanishing
    ends, after FETCH_TRIES tries, in the one-line SeriesSourceError."""
    import huggingface_hub

    from attnlife.series import hub as H
    from attnlife.series.refs import SeriesSourceError

    server, cache, _ = hub_env
    real, calls = huggingface_hub.snapshot_download, []

    def racing(*args, **kwargs):
        calls.append(kwargs["revision"])
        if len(calls) == 1 or fail_always:
            raise FileNotFoundError(2, "No such file or directory", str(cache / ".locks" / "models--org--pythia-mini" / "x.lock"))
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", racing)
    fail_always = False
    store, ref = HubStore(tmp_path / "ledger"), suite_refs(REPO, RevisionSelector(names=("step4",)))[0]
    local = store.fetch(ref)
    assert len(calls) == 2 and (Path(local.path) / "model.safetensors").is_file()
    store.evict(ref)
    assert not cache.exists() or _tree(cache) == {}

    fail_always, calls[:] = True, []
    with pytest.raises(SeriesSourceError) as err:
        store.fetch(ref)
    assert len(calls) == H.FETCH_TRIES == 3
    assert str(err.value).startswith("cannot download revision 'step4' of org/pythia-mini (FileNotFoundError: ")
    assert str(err.value).endswith("); rerun the same command to resume")
