"""The attachment snippets of docs/tracking.md run exactly as printed (own loop, HF, Lightning)."""
from __future__ import annotations

import functools
import re
from pathlib import Path
from types import SimpleNamespace

import torch

import attnlife
from tests.track.helpers import gpt_lightning_module, tiny_gpt
from tests.track.test_integrations import TokenDataset

DOC = Path(__file__).resolve().parents[2] / "docs" / "tracking.md"


def snippet(heading: str) -> str:
    """The first ```python block after `## {heading}` in docs/tracking.md."""
    text = DOC.read_text()
    section = text[text.index(f"## {heading}"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def entropy_steps(run: str) -> list[int]:
    m = attnlife.load_run(run).metrics()
    return sorted(m[m.metric == "entropy_bits"]["step"].unique())


def test_own_loop_snippet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tiny_gpt()
    ids = TokenDataset(24, 16, 32, 0).ids
    loader = [(ids[i:i + 4], ids[i:i + 4]) for i in range(0, 24, 4)]
    env = {"model": model, "loader": loader, "optimizer": torch.optim.AdamW(model.parameters(), lr=1e-3)}
    exec(snippet("In your own loop"), env)
    assert entropy_steps("runs/mine") == [0, 1, 2, 4]  # log-spaced early, then every 500
    assert len(attnlife.load_run("runs/mine").model_level(metric="loss")) == 6


def test_hf_snippet(tmp_path, monkeypatch):
    import transformers as tf

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    env = {"model": tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2)),
           "args": tf.TrainingArguments(output_dir="hf", max_steps=2, per_device_train_batch_size=2,
                                        save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True),
           "ds": TokenDataset(8, 16, 32, 0), "Trainer": tf.Trainer}
    exec(snippet("Hugging Face Trainer"), env)
    assert entropy_steps("runs/hf") == [0, 1, 2]


def test_lightning_snippet(tmp_path, monkeypatch):
    import lightning.pytorch as pl

    monkeypatch.chdir(tmp_path)
    quiet = functools.partial(pl.Trainer, accelerator="cpu", logger=False, enable_checkpointing=False,
                              enable_progress_bar=False, enable_model_summary=False)
    env = {"L": SimpleNamespace(Trainer=quiet), "max_steps": 2, "module": gpt_lightning_module(),
           "loader": torch.utils.data.DataLoader(TokenDataset(8, 16, 32, 0), batch_size=2)}
    exec(snippet("Lightning"), env)
    assert entropy_steps("runs/pl") == [0, 1, 2]
