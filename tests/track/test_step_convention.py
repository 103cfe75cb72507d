"""One step convention: step s = the weights after s optimizer updates, on every path.

Each path (own loop, HF Trainer, Lightning with gradient accumulation, `attnlife train`'s
trainer) is run for real with a tracker that records, for each label it writes, how many
optimizer updates had happened (a global optimizer step hook counts them) and the weights it
measured. The label must equal the update count, each label is measured once, and under
`attnlife train` the weights measured at a checkpoint step equal that checkpoint's weights.
"""
from __future__ import annotations

import pytest
import torch

import attnlife
from torch.optim.optimizer import register_optimizer_step_post_hook

from attnlife.track.tracker import Tracker
from tests.track.helpers import gpt_lightning_module, tiny_gpt
from tests.track.test_integrations import TokenDataset

UPDATES = [0]
WANT = [0, 1, 2, 3, 6]  # every=3 plus the log-spaced 0, 1, 2 (<= every), for 6 updates


@pytest.fixture(autouse=True)
def count_updates():
    def hook(opt, args, kwargs):
        UPDATES[0] += 1

    UPDATES[0] = 0
    handle = register_optimizer_step_post_hook(hook)
    yield
    handle.remove()


class RecordingTracker(Tracker):
    """A real Tracker that also remembers (label, updates so far, weights) per event."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[int, int, dict]] = []

    def track(self, step, model, batch, split="train"):
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.seen.append((step, UPDATES[0], state))
        return super().track(step, model, batch, split)


def labels_match_updates(tracker: RecordingTracker) -> list[int]:
    labels = [s for s, _, _ in tracker.seen]
    assert len(labels) == len(set(labels)), f"a step was measured twice: {labels}"
    assert [(s, u) for s, u, _ in tracker.seen] == [(s, s) for s in labels]
    return labels


def test_own_loop_labels(tmp_path):
    model = tiny_gpt()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = TokenDataset(48, 16, 32, 0).ids
    with RecordingTracker(every=3, run_dir=tmp_path / "run") as tracker:
        for step in range(6):
            x = data[8 * step:8 * step + 8]
            tracker.maybe_track(step, model, x)      # the weights after `step` updates
            model(x, x)[1].backward()
            opt.step()
            opt.zero_grad()
        tracker.maybe_track(6, model, x)             # the final weights
    assert labels_match_updates(tracker) == WANT
    m = attnlife.load_run(tmp_path / "run").metrics()
    assert sorted(m[m.metric == "entropy_bits"]["step"].unique()) == WANT


def test_lightning_with_gradient_accumulation_labels(tmp_path):
    import lightning.pytorch as pl

    from attnlife.integrations.lightning import AttnlifeLightningCallback

    tracker = RecordingTracker(every=3, run_dir=tmp_path / "run")
    loader = torch.utils.data.DataLoader(TokenDataset(96, 16, 32, 0), batch_size=4)
    trainer = pl.Trainer(max_steps=6, accumulate_grad_batches=4, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[AttnlifeLightningCallback(tracker)],
                         default_root_dir=str(tmp_path))
    trainer.fit(gpt_lightning_module(), loader)
    assert UPDATES[0] == 6
    assert labels_match_updates(tracker) == WANT


def test_hf_trainer_with_gradient_accumulation_labels(tmp_path):
    import transformers as tf

    from attnlife.integrations.hf import AttnlifeHFCallback

    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2))
    tracker = RecordingTracker(every=3, run_dir=tmp_path / "run")
    args = tf.TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=6, per_device_train_batch_size=2,
                                gradient_accumulation_steps=2, logging_strategy="no", save_strategy="no",
                                report_to=[], use_cpu=True, disable_tqdm=True)
    tf.Trainer(model=model, args=args, train_dataset=TokenDataset(32, 16, 32, 0),
               callbacks=[AttnlifeHFCallback(tracker)]).train()
    assert UPDATES[0] == 6
    assert labels_match_updates(tracker) == WANT


def test_attnlife_train_labels_and_checkpoint_weights(tmp_path, prepared):
    from attnlife.config import build_config
    from attnlife.run import run_training
    from attnlife.store.checkpoints import load_state_dict

    overrides = ["model.n_layer=2", "model.n_head=2", "model.n_embd=16", "model.block_size=16",
                 "train.batch_size=4", "train.eval_iters=1", "train.eval_interval=3",
                 "train.device=cpu", "train.max_iters=6", "train.lr_decay_iters=6",
                 "train.gradient_accumulation_steps=2", f"data.data_dir={prepared}", "track.every=3"]
    cfg = build_config("cpu", "shakespeare_char", overrides=overrides, out_dir=str(tmp_path / "run"))
    tracker = RecordingTracker(every=3)
    run_training(cfg, [tracker], quiet=True)
    labels = labels_match_updates(tracker)
    run = attnlife.load_run(tmp_path / "run")
    ckpts = dict(run.checkpoints())
    assert sorted(ckpts) == [0, 1, 2, 4, 6] and labels == [0, 1, 2, 3, 4, 6]  # every 3 + checkpoints
    for step, _, state in tracker.seen:
        if step in ckpts:
            saved = load_state_dict(ckpts[step])
            assert all(torch.equal(saved[k], state[k].cpu()) for k in saved), step
    m = run.metrics()
    ev = set(m[m.metric == "eval_loss"]["step"])
    assert ev == {0, 3, 6} and ev <= set(m[m.metric == "entropy_bits"]["step"])  # same weights, same step


def _lr_and_loss_recorder(model):  # noqa: ANN001 - nn.Module
    """Record (updates so far, lr) before every optimizer step and (updates so far, loss) of every
    training forward; returns the two lists and the hook handles."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    lrs, losses = [], []
    pre = register_optimizer_step_pre_hook(lambda opt, a, k: lrs.append((UPDATES[0], opt.param_groups[0]["lr"])))

    def forward_hook(module, args, kwargs, output):  # noqa: ANN001, ANN202
        loss = output.loss if hasattr(output, "loss") else output[1] if isinstance(output, tuple) else None
        if module.training and loss is not None:
            losses.append((UPDATES[0], float(loss.detach())))

    fwd = model.register_forward_hook(forward_hook, with_kwargs=True)
    return lrs, losses, (pre, fwd)


def _expected(lrs, losses):  # noqa: ANN001, ANN202
    lr = {u: v for u, v in lrs}
    loss = {}
    for u, v in losses:
        loss.setdefault(u, []).append(v)
    return lr, {u: sum(v) / len(v) for u, v in loss.items()}


def _logged_and_expected(run_dir, lrs, losses, handles):  # noqa: ANN001, ANN202
    """(logged lr, logged loss, recorded lr, recorded mean micro-batch loss), each {step: value}."""
    for h in handles:
        h.remove()
    want_lr, want_loss = _expected(lrs, losses)
    run = attnlife.load_run(run_dir)
    lr = run.model_level("lr").set_index("step")["value"].to_dict()
    loss = run.model_level("loss").set_index("step")["value"].to_dict()
    return lr, loss, want_lr, want_loss


def test_hf_trainer_logs_loss_and_lr_at_the_step_convention(tmp_path):
    import transformers as tf

    from attnlife.integrations.hf import AttnlifeHFCallback

    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2))
    lrs, losses, handles = _lr_and_loss_recorder(model)
    args = tf.TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=6, per_device_train_batch_size=2,
                                gradient_accumulation_steps=2, learning_rate=1e-3, lr_scheduler_type="linear",
                                warmup_steps=2, logging_strategy="steps", logging_steps=1, save_strategy="no",
                                report_to=[], use_cpu=True, disable_tqdm=True)
    with Tracker(every=100, run_dir=tmp_path / "run") as tracker:
        tf.Trainer(model=model, args=args, train_dataset=TokenDataset(32, 16, 32, 0),
                   callbacks=[AttnlifeHFCallback(tracker)]).train()
    lr, loss, want_lr, mean_loss = _logged_and_expected(tmp_path / "run", lrs, losses, handles)
    assert sorted(lr) == sorted(want_lr) == [0, 1, 2, 3, 4, 5]      # no update starts at step 6
    assert len(set(want_lr.values())) > 2                             # warmup then decay: steps differ
    assert lr == pytest.approx(want_lr, rel=1e-6)
    # GPT-2 takes num_items_in_batch: each micro-batch returns its share of the update's token
    # mean, so the update's loss is the sum of its 2 micro-batch losses (all on the weights of s)
    assert sorted(loss) == sorted(mean_loss) == [0, 1, 2, 3, 4, 5]
    assert loss == pytest.approx({u: 2 * v for u, v in mean_loss.items()}, rel=1e-4)
    assert 3.0 < min(loss.values()) < max(loss.values()) < 3.6        # near ln 32 = 3.47 nats at init


def test_lightning_logs_loss_and_lr_at_the_step_convention(tmp_path):
    import lightning.pytorch as pl

    from attnlife.integrations.lightning import AttnlifeLightningCallback

    module = gpt_lightning_module()

    def configure_optimizers():  # noqa: ANN202 - lr halves after every update
        opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, 0.5),
                                                   "interval": "step"}}

    module.configure_optimizers = configure_optimizers
    lrs, losses, handles = _lr_and_loss_recorder(module.gpt)
    loader = torch.utils.data.DataLoader(TokenDataset(96, 16, 32, 0), batch_size=4)
    with Tracker(every=100, run_dir=tmp_path / "run") as tracker:
        pl.Trainer(max_steps=5, accumulate_grad_batches=3, accelerator="cpu", logger=False,
                   enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   callbacks=[AttnlifeLightningCallback(tracker)], default_root_dir=str(tmp_path)).fit(module, loader)
    lr, loss, want_lr, want_loss = _logged_and_expected(tmp_path / "run", lrs, losses, handles)
    assert lr == pytest.approx(want_lr, rel=1e-9) and sorted(lr) == [0, 1, 2, 3, 4]
    assert lr[3] == pytest.approx(1e-3 / 8)
    assert loss == pytest.approx(want_loss, rel=1e-6) and sorted(loss) == [0, 1, 2, 3, 4]
