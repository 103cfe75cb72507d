"""Executors: one task per checkpoint (or grid cell), run by local processes, a Ray cluster or a
SLURM array through submitit.

    executor = make_executor("ray", address="auto")          # or "local" (default), "submitit"
    results = executor.map(fn, [(job,), ...], on_done=bar.update)
    map_checkpoints(tasks, executor, store)                    # per-checkpoint passes, hub-aware

Every task writes its own results into the output folder (Parquet parts, done markers, arrays),
which every worker must see: the local disk, or a filesystem shared by the cluster's nodes. The
store merges the parts on read, so the order tasks finish in does not matter; the driver only
collects small return values (skip lines, outcomes). Registry `EXECUTORS`: name -> class.

  local     `run_in_processes`: here (workers = 1) or spawned processes that die with the sweep
  ray       `ray.init(address=...)` joins a running cluster ("auto", "host:port"); without an
            address a local cluster is started (and shut down afterwards) with `workers` CPUs.
            One remote task per job, `cpus_per_task` CPUs (= torch threads) each; a task whose
            worker process dies is resubmitted up to `max_retries` times (exceptions are not).
  submitit  `submitit.AutoExecutor(folder)`: a SLURM job array when SLURM is there (`sbatch`),
            else local processes (cluster="local"); `options` are `update_parameters` keywords
            (slurm_partition, timeout_min, cpus_per_task, slurm_array_parallelism, ...).
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from attnlife.errors import ConfigError
from attnlife.series.refs import CheckpointRef
from attnlife.series.workers import dying_worker, run_in_processes

OnDone = Optional[Callable[[Any], None]]
MAX_STREAMED = 3   # hub revisions on one machine's disk at once (the streamed sweep's bound)


def call_with_threads(threads: int, fn: Callable, job: tuple) -> Any:
    """fn(*job) with `threads` torch threads: what a remote worker runs."""
    torch.set_num_threads(max(1, int(threads)))
    return fn(*job)


class LocalExecutor:
    """`workers` spawned processes on this machine (1: here, in order)."""

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ConfigError(f"--workers {workers} must be >= 1")
        self.workers = int(workers)

    def map(self, fn: Callable, jobs: list[tuple], on_done: OnDone = None) -> list:
        return run_in_processes(fn, jobs, self.workers, on_done, initializer=dying_worker)


class RayExecutor:
    """One Ray task per job on a running cluster (`address`) or a local one (see module doc)."""

    name = "ray"

    def __init__(self, address: Optional[str] = None, workers: int = 1, cpus_per_task: int = 1,
                 max_retries: int = 3) -> None:
        self.address, self.workers = address, int(workers)
        self.cpus_per_task, self.max_retries = int(cpus_per_task), int(max_retries)

    def map(self, fn: Callable, jobs: list[tuple], on_done: OnDone = None) -> list:
        if not jobs:
            return []
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'attnlife[ray]'") from None
        started = not ray.is_initialized()
        if started:
            kwargs: dict = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                kwargs["address"] = self.address
            else:   # a local cluster: its workers import attnlife from where this process does
                import attnlife

                here = str(Path(attnlife.__file__).resolve().parents[1])
                path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
                kwargs.update(address="local", num_cpus=max(self.workers, self.cpus_per_task),  # a new one,
                              _node_ip_address="127.0.0.1",                  # never another's cluster
                              runtime_env={"env_vars": {"PYTHONPATH": path}})
            ray.init(**kwargs)
        try:
            remote = ray.remote(num_cpus=self.cpus_per_task, max_retries=self.max_retries)(call_with_threads)
            pending = [remote.remote(self.cpus_per_task, fn, job) for job in jobs]
            results = []
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                results.append(ray.get(done[0]))
                if on_done is not None:
                    on_done(results[-1])
            return results
        finally:
            if started:
                ray.shutdown()


class SubmititExecutor:
    """A submitit job array (SLURM, or local processes without it); see the module doc."""

    name = "submitit"

    def __init__(self, folder: str | os.PathLike, cluster: Optional[str] = None, options: Optional[dict] = None,
                 poll_s: float = 1.0) -> None:
        self.folder, self.cluster = str(folder), cluster
        self.options, self.poll_s = dict(options or {}), poll_s

    def map(self, fn: Callable, jobs: list[tuple], on_done: OnDone = None) -> list:
        if not jobs:
            return []
        try:
            import submitit
        except ImportError:
            raise ConfigError("--executor submitit needs submitit: pip install 'attnlife[submitit]'") from None
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        threads = int(self.options.get("cpus_per_task", 1))
        try:
            executor.update_parameters(**self.options)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"--executor-option: {err}; see submitit's AutoExecutor.update_parameters") from None
        submitted = executor.map_array(call_with_threads, [threads] * len(jobs), [fn] * len(jobs), jobs)
        results, pending = [], list(submitted)
        while pending:
            finished = [j for j in pending if j.done()]
            for job in finished:
                pending.remove(job)
                results.append(job.result())
                if on_done is not None:
                    on_done(results[-1])
            if pending and not finished:
                time.sleep(self.poll_s)
        return results


EXECUTORS = {"local": LocalExecutor, "ray": RayExecutor, "submitit": SubmititExecutor}


def parse_options(items: Sequence[str]) -> dict:
    """['slurm_partition=gpu', 'timeout_min=60'] -> {'slurm_partition': 'gpu', 'timeout_min': 60}."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--executor-option {item!r} is not KEY=VALUE (e.g. slurm_partition=gpu)")
        value = value.strip()
        for cast in (int, float):
            with contextlib.suppress(ValueError):
                value = cast(value)
                break
        out[key.strip()] = value
    return out


def make_executor(name: str = "local", workers: int = 1, address: Optional[str] = None,
                  folder: Optional[str | os.PathLike] = None, options: Sequence[str] = ()) -> Any:
    """The executor a verb's --executor / --workers / --ray-address / --executor-option name."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r} is not one of {sorted(EXECUTORS)}")
    if workers < 1:
        raise ConfigError(f"--workers {workers} must be >= 1")
    opts = parse_options(options)
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(address=address, workers=workers, cpus_per_task=int(opts.get("cpus_per_task", 1)),
                           max_retries=int(opts.get("max_retries", 3)))
    if folder is None:
        raise ConfigError("--executor submitit needs a folder for its logs (the verb passes OUT/submitit)")
    cluster = opts.pop("cluster", None)
    return SubmititExecutor(folder, cluster=cluster, options=opts)


# ------------------------------------------------------------------------------- checkpoint tasks
@dataclass(frozen=True)
class CheckpointTask:
    """The passes to run on one checkpoint; `store` = (ledger dir, keep, cache dir) of the hub
    store that fetches and evicts a 'hub' ref (None for local refs). Picklable."""

    ref: CheckpointRef
    passes: tuple
    store: Optional[tuple] = None


def run_task(task: CheckpointTask) -> tuple:
    """Fetch the checkpoint if it is a hub revision, run every pass on it, evict: pass results."""
    from attnlife.series.hub import HubStore

    store = HubStore(*task.store) if task.store is not None else None
    with store.local(task.ref) if store is not None else contextlib.nullcontext(task.ref) as ref:
        return tuple(p(ref) for p in task.passes)


def map_checkpoints(tasks: list[CheckpointTask], executor: Any = None, on_done: OnDone = None) -> list:
    """Run every task on `executor` (default: here, in order). Streamed hub revisions run here in
    order with the next one fetched in the background (`hub.prefetched`: two on disk); a local
    pool may run at most `MAX_STREAMED` of them at once."""
    from attnlife.series.hub import HubStore, prefetched

    executor = executor or LocalExecutor(1)
    streamed = [t for t in tasks if t.ref.kind == "hub"]
    if isinstance(executor, LocalExecutor) and streamed and executor.workers > MAX_STREAMED:
        raise ConfigError(f"--workers {executor.workers} would hold {executor.workers} hub revisions on disk "
                          f"at once; streamed suites allow at most {MAX_STREAMED}: use --workers "
                          f"{MAX_STREAMED} or fewer")
    if isinstance(executor, LocalExecutor) and executor.workers == 1 and streamed:
        store = HubStore(*streamed[0].store)
        results = []
        for task, _ in zip(tasks, prefetched([t.ref for t in tasks], store)):
            results.append(run_task(task))
            if on_done is not None:
                on_done(results[-1])
        return results
    return executor.map(run_task, [(t,) for t in tasks], on_done)


def evict_leftovers(store: Optional[tuple], refs: list[CheckpointRef], mine: list[CheckpointRef],
                    todo: list[CheckpointRef]) -> int:
    """Evict hub revisions a killed sweep left on disk that no task of this sweep will measure:
    this rank's revisions that are done, and revisions outside the series (a changed selection).
    Another rank's pending revisions are left alone. Returns how many were evicted."""
    if store is None:
        return 0
    from attnlife.series.hub import HubStore

    hub = HubStore(*store)
    busy = {r.config["revision"] for r in todo if r.kind == "hub"}
    ours = {r.config["revision"] for r in mine if r.kind == "hub"}
    every = {r.config["revision"] for r in refs if r.kind == "hub"}
    return sum(hub.evict_done(repo, lambda rev: rev not in busy and (rev in ours or rev not in every))
               for repo in sorted({r.config["repo"] for r in refs if r.kind == "hub"}))
