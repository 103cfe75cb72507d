"""Process pools die with their parent: `track --workers` (like `spectra --workers`, tested in
test_cli_spectra) leaves no worker and no resource tracker behind when it is SIGKILLed."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.conftest import REPO, attnlife_cmd, subprocess_env
from tests.faults.test_cli_spectra import _alive, _children

# imported by every Python process of the test's environment, spawned workers included: a
# checkpoint measurement announces itself, then hangs (the fault injected: a stuck read)
SITECUSTOMIZE = """
import os, time
if os.environ.get("HANG_MEASURE"):
    import attnlife.track.probe_pass as probe_pass

    def hang(*args, **kwargs):
        open(os.path.join(os.environ["HANG_MEASURE"], f"started-{os.getpid()}"), "w").close()
        time.sleep(600)

    probe_pass.measure_checkpoint = hang
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_killed_track_leaves_no_orphaned_workers(workspace: Path) -> None:
    hook = workspace / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    marks = workspace / "marks"
    marks.mkdir()
    env = {**subprocess_env(), "PYTHONPATH": f"{hook}{os.pathsep}{REPO}", "HANG_MEASURE": str(marks)}
    proc = subprocess.Popen(attnlife_cmd("track", str(workspace / "run"), "--out", str(workspace / "out"),
                                         "--sequences", "4", "--workers", "2", "--quiet"),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    everyone: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and len(list(marks.iterdir())) < 2:
            time.sleep(0.2)
        assert len(list(marks.iterdir())) == 2, f"workers never started measuring (exit {proc.poll()}): " \
            f"{proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"
        workers = [int(p.name.split("-")[1]) for p in marks.iterdir()]
        everyone = _children(proc.pid)   # the workers and multiprocessing's resource tracker
        assert set(workers) <= set(everyone) and len(everyone) >= 3, (workers, everyone)
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in everyone):
            time.sleep(0.1)
        assert not any(_alive(p) for p in everyone), [p for p in everyone if _alive(p)]
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in everyone:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.stderr.close()
