"""HF Trainer and Lightning callbacks drive the tracker on tiny real models."""
from __future__ import annotations

import pytest
import torch

import attnlife
from attnlife.track.tracker import Tracker


class TokenDataset(torch.utils.data.Dataset):
    def __init__(self, n: int, T: int, vocab: int, seed: int) -> None:
        self.ids = torch.randint(0, vocab, (n, T), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def test_hf_trainer_callback(tmp_path):
    import transformers as tf

    from attnlife.integrations.hf import AttnlifeHFCallback

    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2))
    run = tmp_path / "run"
    tracker = Tracker(every=2, batch_fraction=0.5, run_dir=run)
    args = tf.TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=5, per_device_train_batch_size=4,
                                per_device_eval_batch_size=4, eval_strategy="steps", eval_steps=5,
                                logging_strategy="no", save_strategy="no", report_to=[], use_cpu=True,
                                disable_tqdm=True)
    trainer = tf.Trainer(model=model, args=args, train_dataset=TokenDataset(32, 16, 32, 0),
                         eval_dataset=TokenDataset(8, 16, 32, 1), callbacks=[AttnlifeHFCallback(tracker)])
    trainer.train()
    m = attnlife.load_run(run).metrics()
    # every 2 plus the log-spaced 0, 1, 2; eval after 5 updates is step 5, like attention
    assert sorted(m[m.metric == "entropy_bits"]["step"].unique()) == [0, 1, 2, 4]
    assert set(m[m.metric == "entropy_bits"]["head_index"]) == {0, 1}
    ev = m[m.metric == "eval_loss"]
    assert list(ev["split"]) == ["val"] and list(ev["step"]) == [5] and ev["value"].iloc[0] > 0
    assert model.config._attn_implementation == "sdpa"


def test_lightning_callback(tmp_path):
    import lightning.pytorch as pl

    from attnlife.integrations.lightning import AttnlifeLightningCallback
    from tests.track.helpers import gpt_lightning_module

    torch.manual_seed(0)
    run = tmp_path / "run"
    tracker = Tracker(every=3, batch_fraction=0.5, run_dir=run)
    loader = torch.utils.data.DataLoader(TokenDataset(24, 16, 32, 0), batch_size=4)
    val = torch.utils.data.DataLoader(TokenDataset(8, 16, 32, 1), batch_size=4)
    trainer = pl.Trainer(max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[AttnlifeLightningCallback(tracker)], default_root_dir=str(tmp_path))
    trainer.fit(gpt_lightning_module(), loader, val)
    m = attnlife.load_run(run).metrics()
    assert sorted(m[m.metric == "entropy_bits"]["step"].unique()) == [0, 1, 2, 3, 6]
    ev = m[m.metric == "eval_loss"]
    assert list(ev["split"]) == ["val"] and list(ev["step"]) == [6]  # after 6 updates
    assert ev["value"].iloc[0] == pytest.approx(float(trainer.callback_metrics["val_loss"]))
