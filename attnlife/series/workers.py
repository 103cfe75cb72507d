"""Mapping a pass over a series: the share of each rank, and a pool of spawned processes.

torchrun (or the caller) gives rank r of W; `rank_share` hands it items r, r+W, r+2W, ...;
`run_in_processes` runs one job per item here or in spawned worker processes (started with
`set_threads`, or `dying_worker` so they exit when the parent dies). The distributed executors
(Ray, submitit) sit beside these.
"""
from __future__ import annotations

import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Optional

import torch

from attnlife.errors import ConfigError

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

def rank_share(items: list, rank: int = 0, world_size: int = 1) -> list:
    """The share of rank r of W: items r, r+W, r+2W, ... (torchrun sets RANK / WORLD_SIZE)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} of world size {world_size} is out of range; "
                          f"use 0 <= rank < world size")
    return items[rank::world_size]


def set_threads(threads: int) -> None:
    """Worker initializer: `threads` torch threads."""
    torch.set_num_threads(threads)


def die_with_parent() -> None:
    """Make this (worker) process receive SIGKILL when its parent dies (Linux; no-op elsewhere).

    Closes the race where the parent died before the call: the worker then exits at once.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import multiprocessing

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)


def dying_worker(threads: int) -> None:
    """Worker initializer: die with the parent (`die_with_parent`), then `threads` torch threads."""
    die_with_parent()
    torch.set_num_threads(threads)


def run_in_processes(fn: Callable, jobs: list[tuple], workers: int = 1,
                     on_done: Optional[Callable[[Any], None]] = None,
                     initializer: Callable[[int], None] = dying_worker) -> list:
    """fn(*job) for every job; results in completion order, `on_done(result)` after each.

    workers <= 1 (or a single job) runs here; otherwise in that many spawned processes, each
    started with `initializer(threads)` (torch threads split between them; by default
    `dying_worker`, so no worker, and then no resource tracker, outlives a killed parent). `fn`
    and `initializer` must be importable (module level) for the spawned workers.
    """
    results = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(fn(*job))
            if on_done is not None:
                on_done(results[-1])
        return results
    import multiprocessing as mp

    threads = max(1, torch.get_num_threads() // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=initializer, initargs=(threads,)) as pool:
        for fut in as_completed([pool.submit(fn, *job) for job in jobs]):
            results.append(fut.result())
            if on_done is not None:
                on_done(results[-1])
    return results
