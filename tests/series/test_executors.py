"""Sweeps on Ray and submitit give the serial tables; a task whose worker dies is retried.

Ray: a real cluster started on this machine (`ray start --head --block`, 2 CPUs, its own process
group, stopped and checked gone afterwards), joined with `ray.init(address=...)` through
`--executor ray --ray-address`; submitit: its local executor (subprocesses, no SLURM here).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnlife.measurement import measure_series
from attnlife.series.executors import (CheckpointTask, RayExecutor, SubmititExecutor, make_executor,
                                       map_checkpoints, parse_options)
from attnlife.series.hub import suite_refs
from attnlife.spectra.analyse import SpectraOptions
from attnlife.spectra.sweep import SpectraPass, run_sweep, trajectory_pass
from attnlife.store.run_dir import load_run
from attnlife.track.probe_pass import ProbeOptions, make_probe_set
from tests.support.faults import DieOnce
from tests.support.hub_suite import build_suite

ROOT = Path(__file__).resolve().parents[2]
# a hard limit per test (pytest-timeout, signal method: the test fails and the fixtures' teardown
# still stops the cluster), so a hung Ray or submitit call never holds the machine
pytestmark = pytest.mark.timeout(300)
STEPS = [0, 1, 2, 4]
OPTIONS = SpectraOptions()
PROBE_OPTIONS = ProbeOptions(sequences=4, seq_len=32)


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    return build_suite(tmp_path_factory.mktemp("suite") / "mini", steps=STEPS)


@pytest.fixture(scope="module")
def probe():
    tokens = np.random.default_rng(0).integers(0, 61, 4000)
    return make_probe_set(tokens, 61, 64, PROBE_OPTIONS)


@pytest.fixture(scope="module")
def serial(suite, probe, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial")
    measure_series(suite_refs(str(suite)), out, OPTIONS, probe, PROBE_OPTIONS, progress=False)
    return out


def _equal(a: Path, b: Path, probe_too: bool = True) -> None:
    keys = ["model", "step", "layer", "head_index", "matrix", "stat"]
    pd.testing.assert_frame_equal(load_run(a).spectra().sort_values(keys).reset_index(drop=True),
                                  load_run(b).spectra().sort_values(keys).reset_index(drop=True))
    if probe_too:
        keys = ["step", "split", "layer", "head_index", "layer_b", "metric"]
        pd.testing.assert_frame_equal(load_run(a).metrics().sort_values(keys).reset_index(drop=True),
                                      load_run(b).metrics().sort_values(keys).reset_index(drop=True))


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A 2-CPU Ray cluster on this machine in its own process group, with a token of its own (Ray
    >= 2.59 authenticates local clusters); yields its address. Afterwards every process it started
    (raylet, GCS, workers: these lead sessions of their own) is checked gone."""
    pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    import ray._private.ray_constants as ray_constants
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Ray's token loader keeps the first token this process saw: the user's (~/.ray/auth_token, which
    # a local cluster started earlier in this process wrote), else a fresh one
    home_token = Path.home() / ".ray" / "auth_token"
    token = home_token.read_text().strip() if home_token.is_file() else secrets.token_hex(32)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    # Ray turns --node-ip-address=127.0.0.1 into the machine's routable address unless it runs as a
    # single-machine cluster (the switch Ray uses on macOS/Windows): then the node is 127.0.0.1
    env = {**os.environ, **auth, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    log = open(tmp_path_factory.mktemp("ray") / "head.log", "w")
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                             "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started: dict = {}

    def remember() -> None:   # the cluster's processes so far
        with contextlib.suppress(psutil.NoSuchProcess):
            started.update({p.pid: p for p in psutil.Process(head.pid).children(recursive=True)})

    with pytest.MonkeyPatch.context() as mp:
        for key, value in auth.items():
            mp.setenv(key, value)
        # ... and this process, which imported ray before the switch was set, a 127.0.0.1 node too
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        try:
            yield f"127.0.0.1:{port}", remember
        finally:
            remember()
            os.killpg(head.pid, signal.SIGTERM)
            try:
                head.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait()
            _, alive = psutil.wait_procs(list(started.values()), timeout=10)
            for proc in alive:                       # only processes this cluster started
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
            _, alive = psutil.wait_procs(alive, timeout=10)
            log.close()
            assert not alive, f"Ray processes left behind: {[p.pid for p in alive]}"


def _join(address: str, deadline_s: float = 120.0):
    """ray.init(address) once the head is up (it takes a while on a busy machine), within
    `deadline_s` seconds all attempts together."""
    import ray

    end = time.monotonic() + deadline_s
    while True:
        try:
            ray.init(address=address, log_to_driver=False, _node_ip_address="127.0.0.1")
            return ray
        except (ConnectionError, RuntimeError) as err:
            if time.monotonic() > end:
                raise AssertionError(f"no Ray cluster at {address} after {deadline_s:.0f} s: {err}") from err
            time.sleep(1)


def test_ray_cluster_sweep_equals_serial_and_a_killed_worker_is_retried(ray_cluster, suite, probe, serial,
                                                                          tmp_path):
    ray_cluster, remember = ray_cluster
    ray = _join(ray_cluster)
    try:
        assert ray.cluster_resources()["CPU"] == 2
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}   # on loopback only
        refs = suite_refs(str(suite))
        executor = make_executor("ray", address=ray_cluster)
        summary = measure_series(refs, tmp_path / "ray", OPTIONS, probe, PROBE_OPTIONS, executor=executor,
                                 progress=False)
        assert summary.measured == len(STEPS) and summary.meetings is not None
        _equal(serial, tmp_path / "ray")
        # the task of step 2 SIGKILLs its worker on its first attempt: Ray runs it again
        marker = tmp_path / "killed.pid"
        spectra = DieOnce(SpectraPass(str(tmp_path / "retry"), OPTIONS), str(marker), step=2)
        results = map_checkpoints([CheckpointTask(r, (spectra,)) for r in refs], RayExecutor(address=ray_cluster))
        assert results == [(None,)] * len(STEPS)
        assert marker.is_file() and int(marker.read_text()) != os.getpid()
        trajectory_pass(refs, tmp_path / "retry", OPTIONS)
        _equal(serial, tmp_path / "retry", probe_too=False)
    finally:
        remember()                          # its workers, checked gone after the cluster stops
        ray.shutdown()


def test_submitit_local_array_equals_serial(suite, serial, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    executor = SubmititExecutor(tmp_path / "logs", cluster="local", options={"timeout_min": 10}, poll_s=0.2)
    summary = run_sweep(suite_refs(str(suite)), tmp_path / "sub", OPTIONS, executor=executor, progress=False)
    assert summary.analysed == len(STEPS) and summary.meetings is not None
    _equal(serial, tmp_path / "sub", probe_too=False)
    assert len(list((tmp_path / "logs").glob("*_submitted.pkl"))) >= 1   # submitit's own job files


def test_executor_options_and_bad_names():
    from attnlife.errors import ConfigError

    assert parse_options(["slurm_partition=gpu", "timeout_min=60", "mem_gb=1.5"]) == {
        "slurm_partition": "gpu", "timeout_min": 60, "mem_gb": 1.5}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_options(["gpu"])
    with pytest.raises(ConfigError, match="not one of"):
        make_executor("dask")
    with pytest.raises(ConfigError, match=">= 1"):
        make_executor("local", workers=0)
    ray_ex = make_executor("ray", workers=2, address="auto", options=["cpus_per_task=2", "max_retries=5"])
    assert (ray_ex.address, ray_ex.cpus_per_task, ray_ex.max_retries) == ("auto", 2, 5)
