"""A tracked training process killed with SIGKILL keeps its flushed parts; resuming adds no duplicates."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import attnlife
from attnlife.store.part_table import METRICS_SCHEMA, read_table

LOOP = Path(__file__).with_name("loop.py")
KEY = ["step", "split", "layer", "head_index", "layer_b", "metric"]


def test_sigkill_mid_training_then_resume(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(LOOP.parents[2]), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(LOOP), str(run), "40", "0.05"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(list((run / "metrics").glob("part-*.parquet"))) >= 3 and list((run / "checkpoints").glob("step_*")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    killed = attnlife.load_run(run).metrics()  # readable, no half-written part
    assert len(killed) > 0 and killed["step"].max() < 39
    flushed_steps = set(killed["step"])

    done = subprocess.run([sys.executable, str(LOOP), str(run), "40"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    final = attnlife.load_run(run).metrics()
    assert not final.duplicated(KEY).any()
    assert flushed_steps <= set(final["step"])  # nothing flushed before the kill was lost
    ent = final[final.metric == "entropy_bits"]
    assert set(ent["step"]) == set(range(40))  # resume re-tracks the steps after the checkpoint
    assert (ent.groupby("step").size() == 4).all()
    raw = read_table(run / "metrics", METRICS_SCHEMA, dedupe=False)
    assert len(raw) >= len(final)  # re-logged steps after the checkpoint are deduped on read
