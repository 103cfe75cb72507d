"""Attention health under `attnlife train`: the issue's unstable run alerts, the default one does not;
--on-alert stop and checkpoint; a callback's requests reach the trainer."""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from attnlife.analysis.health import health_lines, health_note, health_tables
from attnlife.cli import app
from attnlife.config import HealthConfig
from attnlife.errors import TrainingStopped
from attnlife.events import Callback
from attnlife.run import run_training
from attnlife.store.run_dir import list_checkpoints, load_run
from tests.train.conftest import tiny_config

runner = CliRunner()
FAST = ["--set", "train.eval_iters=2", "--set", "track.at_checkpoints=false", "--set", "train.ckpt_log_max=0",
        "--quiet", "--device", "cpu"]
UNSTABLE = ["--lr", "0.03", "--set", "train.warmup_iters=0", "--set", "train.grad_clip=0"]


def train(prepared_dir, out, *extra):
    torch.set_num_threads(1)
    return runner.invoke(app, ["train", "--preset", "cpu", "--dataset", "shakespeare_char", "--data-dir",
                               str(prepared_dir), "--out", str(out), "--max-iters", "100", *FAST, *extra])


def alert_rows(out):
    m = load_run(out).metrics()
    return m[m.metric.str.startswith("alert_")]


@pytest.fixture
def unstable(unstable_health_run):
    """The issue's run (tests/conftest.py): cpu preset, lr 0.03, no warm-up, no clipping, 100 updates."""
    return unstable_health_run


def test_unstable_cpu_run_alerts_entropy_collapse_within_100_steps_and_says_so(unstable):
    out, result = unstable
    assert result.exit_code == 0, result.output
    alerts = alert_rows(out)
    collapse = alerts[alerts.metric == "alert_entropy_collapse"]
    assert len(collapse) >= 4 and (collapse.step < 100).all() and (collapse.split == "train").all()
    assert (collapse.layer >= 0).all() and (collapse.head_index >= 0).all()
    assert (collapse.value < 4.0).all()                          # the entropy it fired on, bits
    lines = [x for x in result.output.splitlines() if x.startswith("attention health: step ")]
    assert any("entropy collapse at L" in x for x in lines)
    first = int(collapse.step.min())
    assert f"attention health: step {first}: entropy collapse at" in result.output
    # one line per kind and step, and a head appears on one line per kind at most
    heads = [h for x in lines if "entropy collapse" in x for h in x.split(" at ", 1)[1].split("; ")[0].split(", ")]
    assert len(heads) == len({h.split(" (")[0] for h in heads}) == collapse[["layer", "head_index"]].drop_duplicates().shape[0]
    assert f"attention health: {len(alerts)} alerts" in result.output


def test_health_tables_of_the_unstable_run(unstable):
    out, _ = unstable
    m = load_run(out).metrics()
    tables = health_tables(m)
    alerts = tables["health_alerts"]
    assert alerts.alerts.sum() == m.metric.str.startswith("alert_").sum()
    assert set(alerts.kind) >= {"entropy_collapse", "logit_growth"}
    note = health_note(tables)
    assert note["first_alert"]["step"] == int(m[m.metric.str.startswith("alert_")].step.min())
    assert health_lines(note)[0].startswith("  attention health: entropy collapse")


@pytest.mark.slow
def test_analyze_relates_the_alerts_to_the_loss(unstable):
    out, _ = unstable
    result = runner.invoke(app, ["analyze", str(out), "--no-sample", "--quiet"])
    assert result.exit_code == 0, result.output
    run = load_run(out)
    tables = run.analysis()
    alerts = tables["health_alerts"]
    m = run.metrics()
    collapsed = m[m.metric == "alert_entropy_collapse"][["layer", "head_index"]].drop_duplicates()
    assert (alerts.kind == "entropy_collapse").sum() == len(collapsed)
    assert alerts.alerts.sum() == m.metric.str.startswith("alert_").sum()
    leads = tables["health_leads"]
    assert set(leads.event_step) == set(tables["health_events"].step)
    assert "  attention health: entropy collapse" in result.output


def test_the_same_model_at_the_default_learning_rate_writes_no_alert(prepared_dir, tmp_path):
    out = tmp_path / "healthy"
    result = train(prepared_dir, out)
    assert result.exit_code == 0, result.output
    assert alert_rows(out).empty
    assert "attention health" not in result.output
    m = load_run(out).metrics()
    assert m.metric.eq("light_lse_max_nats").any()                # the monitor had its signals


def test_on_alert_stop_writes_a_checkpoint_then_exits_3_with_one_line(prepared_dir, tmp_path):
    out = tmp_path / "stop"
    result = train(prepared_dir, out, *UNSTABLE, "--on-alert", "stop")
    assert result.exit_code == 3, result.output
    stopped = [x for x in result.output.splitlines() if x.startswith("stopped: ")]
    assert len(stopped) == 1 and "attention-health alert" in stopped[0]
    step = int(stopped[0].split("at step ")[1].split()[0])
    assert step < 100 and step in [s for s, _ in list_checkpoints(out)]
    before = alert_rows(out)
    assert not before.empty and int(before.step.min()) <= step
    # the same command resumes: the heads that fired before the stop do not stop it again
    again = train(prepared_dir, out, *UNSTABLE, "--on-alert", "stop")
    assert again.exit_code in (0, 3), again.output
    if again.exit_code == 3:
        later = [x for x in again.output.splitlines() if x.startswith("stopped: ")][0]
        assert int(later.split("at step ")[1].split()[0]) > step
    after = alert_rows(out)
    key = ["metric", "layer", "head_index", "step"]
    assert not after.duplicated(key).any()
    fired = set(before[key[:3]].itertuples(index=False, name=None))
    rules = HealthConfig()          # a fired unit re-arms only after rearm_after clear reads
    soon = after[(after.step >= step) & (after.step < step + rules.rearm_after + rules.patience - 1)]
    assert not fired & set(soon[key[:3]].itertuples(index=False, name=None))


class Requests(Callback):
    """Asks for a checkpoint after update 2 and a stop after update 5."""

    def on_train_start(self, rec) -> None:  # noqa: ANN001
        self.control = rec.control

    def on_step_end(self, rec) -> None:  # noqa: ANN001
        if rec.step == 2:
            self.control.request_checkpoint("test")
        if rec.step == 5:
            self.control.request_stop("on a test request")


def test_a_callback_asks_for_a_checkpoint_and_a_stop(prepared_dir, tmp_path):
    cfg = tiny_config(prepared_dir, tmp_path / "ctl", 20, "train.ckpt_log_max=0", "train.ckpt_every=0",
                      "track.enabled=false")
    with pytest.raises(TrainingStopped, match="at step 6 on a test request; checkpoint step_0000006"):
        run_training(cfg, [Requests()], quiet=True)
    assert [s for s, _ in list_checkpoints(tmp_path / "ctl")] == [0, 3, 6]
    assert TrainingStopped.exit_code == 3


def test_alert_rows_are_on_disk_before_the_checkpoint_that_covers_them(prepared_dir, tmp_path):
    from attnlife.config import build_config
    from attnlife.run import default_callbacks

    out = tmp_path / "order"
    cfg = build_config("cpu", "shakespeare_char", out_dir=str(out), overrides=[
        f"data.data_dir={prepared_dir}", "train.max_iters=24", "train.lr_decay_iters=24", "train.learning_rate=0.03",
        "train.warmup_iters=0", "train.grad_clip=0", "train.eval_iters=2", "track.at_checkpoints=false",
        "train.ckpt_log_max=0", "train.ckpt_every=6"])
    raised, checked = [], []

    class Check(Callback):          # runs once checkpoint rec.step is renamed into place
        def on_checkpoint(self, rec) -> None:  # noqa: ANN001
            m = load_run(out).metrics()
            rows = m[m.metric.str.startswith("alert_")]
            on_disk = set(zip(rows.metric, rows.layer, rows.head_index, rows.step))
            due = {(a.metric, a.layer, a.head, a.step) for a in raised if a.step < rec.step}
            assert due <= on_disk, (rec.step, due - on_disk)
            checked.append(len(due))

    torch.set_num_threads(1)
    run_training(cfg, [Check()] + default_callbacks(cfg, health_hooks=[lambda a, m: raised.append(a)]), quiet=True)
    assert checked[0] == 0 and max(checked) > 0        # checkpoints 0, 6, ..., 24: alerts were due


def test_on_alert_checkpoint_and_a_hook_that_stops(prepared_dir, tmp_path):
    """`health.on_alert=checkpoint` keeps a checkpoint at the first alert of each kind; a user hook
    asks for the stop (through the monitor) at the first alert dated 12 or later."""
    from attnlife.config import build_config
    from attnlife.run import default_callbacks

    out = tmp_path / "hook"
    cfg = build_config("cpu", "shakespeare_char", out_dir=str(out), overrides=[
        f"data.data_dir={prepared_dir}", "train.max_iters=60", "train.lr_decay_iters=60", "train.learning_rate=0.03",
        "train.warmup_iters=0", "train.grad_clip=0", "train.eval_iters=2", "track.at_checkpoints=false",
        "train.ckpt_log_max=0", "train.ckpt_every=0", "health.on_alert=checkpoint"])
    seen = []

    def hook(alert, monitor) -> None:  # noqa: ANN001
        seen.append(alert)
        if alert.step >= 12:
            monitor.request_stop(f"on my hook's word ({alert.kind} at L{alert.layer}H{alert.head})")

    torch.set_num_threads(1)
    with pytest.raises(TrainingStopped, match="on my hook's word") as stop:
        run_training(cfg, default_callbacks(cfg, health_hooks=[hook]), quiet=True)
    at = int(str(stop.value).split("at step ")[1].split()[0])
    steps = [s for s, _ in list_checkpoints(out)]
    first = min(a.step for a in seen)
    assert steps[0] == 0 and steps[-1] == at and 12 < at < 60
    assert steps[1] == 8 * (first // 8) + 8          # the first alert's checkpoint: the next boundary after its batch
    late = min(a.step for a in seen if a.step >= 12)
    assert late < at <= 8 * (late // 8) + 8
    assert len(steps) <= 2 + len({a.kind for a in seen})   # at most one kept checkpoint per kind
