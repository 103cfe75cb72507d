"""Loss guard and signal catcher at their limits: the warm-up count, the spike factor, the running
mean, the first and the second signal, the handlers put back."""
from __future__ import annotations

import math
import signal
import threading

import pytest
import torch

from attnlife.errors import DivergenceError
from attnlife.train.guards import SIGNALS, LossGuard, SignalCatcher, weights_finite


def _hint() -> str:
    return "lower the learning rate"


def test_non_finite_loss_stops_at_once_with_the_step_and_the_hint() -> None:
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(DivergenceError) as err:
            LossGuard().check(7, bad, _hint)
        assert str(err.value) == f"training diverged at step 7: the loss is {bad}; lower the learning rate"


def test_spikes_are_checked_only_after_warmup_finite_losses() -> None:
    guard = LossGuard(spike_factor=2.0, warmup=3)
    for step, loss in enumerate([1.0, 1.0, 50.0]):                      # the third is still warm-up
        guard.check(step, loss, _hint)
    assert guard.seen == 3
    assert guard.mean == pytest.approx(0.9 * 1.0 + 0.1 * 50.0)          # m = 0.9 m + 0.1 loss
    with pytest.raises(DivergenceError) as err:
        guard.check(3, 2 * guard.mean + 1e-9, _hint)                    # fourth loss: checked
    assert str(err.value) == ("training diverged at step 3: loss 11.8 is more than 2 x its running mean 5.9 "
                              "(train.loss_spike_factor); lower the learning rate")
    assert guard.seen == 3                                               # a refused loss is not averaged in


def test_a_loss_of_exactly_factor_times_the_mean_passes() -> None:
    guard = LossGuard(spike_factor=2.0, warmup=1)
    guard.check(0, 2.0, _hint)
    guard.check(1, 4.0, _hint)                                           # 4 = 2 x 2: not above
    assert guard.mean == pytest.approx(0.9 * 2.0 + 0.1 * 4.0) and guard.seen == 2
    with pytest.raises(DivergenceError):
        guard.check(2, 2.0 * guard.mean * (1 + 1e-12), _hint)


def test_spike_check_is_off_by_default_and_momentum_is_used() -> None:
    guard = LossGuard()
    for step, loss in enumerate([1.0] * 12 + [1e6]):
        guard.check(step, loss, _hint)                                   # factor 0: only non-finite stops
    ema = LossGuard(spike_factor=10.0, warmup=0, momentum=0.5)
    ema.check(0, 4.0, _hint)
    ema.check(1, 8.0, _hint)
    assert ema.mean == 6.0
    with pytest.raises(DivergenceError):
        ema.check(2, 60.1, _hint)                                        # warm-up 0: checked from the second


def test_weights_finite() -> None:
    ok = [torch.zeros(3), torch.ones(2, 2)]
    assert weights_finite(ok) is True
    assert weights_finite(ok + [torch.tensor([1.0, math.nan])]) is False
    assert weights_finite([torch.tensor([-math.inf])]) is False
    assert weights_finite([torch.nn.Parameter(torch.ones(2))]) is True


def test_first_signal_is_recorded_second_one_acts_and_handlers_are_restored() -> None:
    before = {s: signal.getsignal(s) for s in SIGNALS}
    with SignalCatcher() as catcher:
        assert all(signal.getsignal(s) == catcher._handle for s in SIGNALS)
        signal.raise_signal(signal.SIGTERM)
        assert catcher.received == signal.SIGTERM
        signal.raise_signal(signal.SIGINT)                               # another kind: recorded, not acting
        assert catcher.received == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)                           # the same kind twice: stop now
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
    assert {s: signal.getsignal(s) for s in SIGNALS} == before
    assert SIGNALS == (signal.SIGTERM, signal.SIGINT)


def test_second_sigterm_kills_with_the_default_action() -> None:
    import subprocess
    import sys

    with SignalCatcher() as here:                                        # in this process: only recorded
        assert here.received is None                                     # the trainer reads `is not None`
        signal.raise_signal(signal.SIGTERM)
    assert here.received == signal.SIGTERM
    code = ("import signal\n"
            "from attnlife.train.guards import SignalCatcher\n"
            "with SignalCatcher() as c:\n"
            "    signal.raise_signal(signal.SIGTERM)\n"
            "    print('recorded', c.received == signal.SIGTERM, flush=True)\n"
            "    signal.raise_signal(signal.SIGTERM)\n"
            "    print('survived', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGTERM and done.stdout == "recorded True\n"


def test_catcher_is_inactive_off_the_main_thread_or_when_disabled() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with SignalCatcher(enabled=False) as off:
        assert signal.getsignal(signal.SIGTERM) == before and not off.enabled
    got = {}

    def worker() -> None:
        with SignalCatcher() as c:
            got["enabled"] = c.enabled
            got["handler"] = signal.getsignal(signal.SIGTERM)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert got == {"enabled": False, "handler": before}


def test_default_warmup_is_ten_finite_losses_and_a_factor_of_one_is_on() -> None:
    guard = LossGuard(spike_factor=3.0)                                   # default warm-up: 10 losses
    for step in range(10):
        guard.check(step, 1.0 if step < 9 else 3.5, _hint)                # the 10th loss (9 seen) is still warm-up
    with pytest.raises(DivergenceError, match="step 10"):
        guard.check(10, 4.0, _hint)                                       # 10 seen: 4 > 3 x mean 1.25
    at_one = LossGuard(spike_factor=1.0, warmup=1)                        # f = 1: any rise above the mean
    at_one.check(0, 2.0, _hint)
    at_one.check(1, 2.0, _hint)                                           # equal to the mean: not above it
    with pytest.raises(DivergenceError, match="1 x its running mean 2"):
        at_one.check(2, 2.0001, _hint)


def test_a_previous_handler_python_cannot_name_is_restored_as_the_default() -> None:
    """signal.signal returns None for a handler installed outside Python (by C code): the catcher
    puts SIG_DFL back for it (None is not a handler signal.signal accepts)."""
    before, before_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        with SignalCatcher() as catcher:
            catcher._previous[signal.SIGTERM] = None                       # what a C-installed handler reads as
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) == before_int             # a Python handler: put back as it was
        assert catcher.received is None                                  # no signal came: the trainer goes on
    finally:
        signal.signal(signal.SIGTERM, before)
