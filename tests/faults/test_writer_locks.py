"""One writer per folder for every writer verb: a second one is refused with the one line `train`
gives, naming the holder, and changes nothing. Readers of a run being trained: the writer verbs
(track into the run, analyze, claims, report) refuse it the same way while `train` holds it."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnlife.store.atomic import host_name
from attnlife.store.lock import LOCK_FILE
from tests.faults.conftest import cli, subprocess_env, train_args, tree_snapshot

HOLD = ("import sys, time\nfrom contextlib import ExitStack\nfrom attnlife.store.lock import run_lock\n"
        "with ExitStack() as stack:\n"
        "    for d in sys.argv[2:]:\n        stack.enter_context(run_lock(d, sys.argv[1]))\n"
        "    print('held', flush=True)\n    time.sleep(300)\n")


def _hold(verb: str, *dirs: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, verb, *map(str, dirs)], env=subprocess_env(),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


VERBS = {  # verb -> (argv given the workspace, the folder it writes into)
    "train": (lambda w: train_args(w / "data", w / "run", 12), "run"),
    "spectra": (lambda w: ["spectra", str(w / "run"), "--quiet"], "run"),
    "track": (lambda w: ["track", str(w / "run"), "--quiet", "--sequences", "4"], "run"),
    "track --out": (lambda w: ["track", str(w / "run"), "--out", str(w / "probe_out"), "--quiet",
                               "--sequences", "4"], "probe_out"),
    "analyze": (lambda w: ["analyze", str(w / "run"), "--quiet", "--no-sample"], "run"),
    "claims": (lambda w: ["claims", str(w / "run")], "run"),
    "report": (lambda w: ["report", str(w / "run"), "--quiet"], "run"),
    "reproduce": (lambda w: ["reproduce", "--out", str(w / "study"), "--smoke", "--quiet",
                             "--data-dir", str(w / "data")], "study"),
    "theory scan-snap": (lambda w: ["theory", "scan-snap", "--out", str(w / "ss"), "--max-iters", "5",
                                    "--quiet"], "ss"),
    "theory markov": (lambda w: ["theory", "markov", "--out", str(w / "mk"), "--max-iters", "5",
                                 "--quiet"], "mk"),
}


@pytest.mark.parametrize("verb", list(VERBS))
def test_second_writer_of_every_verb_is_refused(workspace: Path, capsys, verb: str) -> None:
    argv, target = VERBS[verb]
    holder = _hold("train", workspace / target)
    try:
        before = tree_snapshot(workspace)
        result = cli(*argv(workspace), capsys=capsys)
        assert result.code == 2 and len(result.error_lines) == 1, result.err[-2000:]
        line = result.error_lines[0]
        assert f"is in use by `attnlife train` (pid {holder.pid} on host {host_name()} since " in line
        assert "wait for it to finish or pass another output directory" in line
        assert result.out == "" and tree_snapshot(workspace) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_analyze_of_several_runs_refuses_if_any_is_held(workspace: Path, tmp_path: Path, capsys) -> None:
    import shutil

    shutil.copytree(workspace / "run", workspace / "run2")
    holder = _hold("report", workspace / "run2")
    try:
        before = tree_snapshot(workspace)
        result = cli("analyze", str(workspace / "run"), str(workspace / "run2"), "--quiet", "--no-sample",
                     capsys=capsys)
        assert result.code == 2 and "is in use by `attnlife report`" in result.err
        assert tree_snapshot(workspace) == before      # the free run was not analysed either
    finally:
        holder.kill()
        holder.wait()
    assert not (workspace / "run" / LOCK_FILE).exists()


SLOW_TRAIN = """
import sys, time
import attnlife.run
from attnlife.events import Callback

class Slow(Callback):
    def on_step_end(self, record):
        time.sleep(0.05)

attnlife.run.default_callbacks = lambda config: [Slow()]
from attnlife.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_readers_refuse_a_run_being_trained(fault_data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_TRAIN, *train_args(fault_data, run, 400)],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "step_0000004").is_dir():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.05)
        for argv in (["analyze", str(run), "--quiet"], ["report", str(run), "--quiet"],
                     ["claims", str(run)], ["track", str(run), "--quiet", "--sequences", "4"]):
            result = cli(*argv, capsys=capsys)
            assert result.code == 2 and len(result.error_lines) == 1, (argv, result.err[-2000:])
            assert f"is in use by `attnlife train` (pid {proc.pid} " in result.err
        assert not (run / "analysis").exists() and not (run / "report").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)


@pytest.mark.slow
def test_two_theory_runs_into_one_out_one_wins(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "attnlife", "theory", "markov", "--out", str(tmp_path / "mk"),
            "--max-iters", "200", "--quiet"]
    procs = [subprocess.Popen(argv, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "is in use by `attnlife theory markov`" in refused and refused.count("\n") == 1
