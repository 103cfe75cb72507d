"""Light statistics of Hugging Face models running SDPA equal the eager output_attentions patterns."""
from __future__ import annotations

import math

import pytest
import torch

import attnlife
from attnlife.track import metrics as M

tf = pytest.importorskip("transformers")
from attnlife.track.hf_light import ATTN_NAME, HFLightCallback, HFLightStats  # noqa: E402

V = 50


def build(family: str):
    torch.manual_seed(0)
    if family == "gpt2":
        return tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=V, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                                bos_token_id=0, eos_token_id=0))
    if family == "neox":
        return tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(vocab_size=V, hidden_size=16, num_hidden_layers=2,
                                                      num_attention_heads=2, intermediate_size=32,
                                                      max_position_embeddings=32))
    return tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=V, hidden_size=16, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=2,
                                              intermediate_size=32, max_position_embeddings=32))


def eager_head_values(model, ids, attention_mask=None) -> dict:
    """(layer, head, light metric) -> mean over sequences and rows of the eager patterns (float64)."""
    model.set_attn_implementation("eager")
    with torch.no_grad():
        att = model(input_ids=ids, attention_mask=attention_mask, output_attentions=True).attentions
    out = {}
    for layer, p in enumerate(att):
        p = p.double()
        values = {"light_entropy_bits": M.entropy_bits(p).mean((0, 2)),
                  "light_mean_distance_tokens": M.mean_distance_tokens(p).mean((0, 2)),
                  "light_sink_mass": torch.nanmean(M.sink_mass(p), dim=2).mean(0)}
        out.update({(layer, h, name): float(v[h]) for name, v in values.items() for h in range(p.size(1))})
    return out


@pytest.mark.parametrize("family,heads", [("gpt2", 2), ("neox", 2), ("llama", 4)])
def test_sdpa_output_unchanged_and_stats_equal_eager_patterns(family, heads):
    model = build(family).eval()
    ids = torch.randint(0, V, (4, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model(input_ids=ids).logits
    stats = HFLightStats(model, batch_fraction=0.5)
    assert model.config._attn_implementation == ATTN_NAME
    assert stats.arm(7)
    with torch.no_grad():
        light = model(input_ids=ids).logits
    rows = stats.collect()
    stats.close()
    assert torch.equal(plain, light)                               # the same SDPA call, same output
    assert model.config._attn_implementation == "sdpa"
    got = {(r.layer, r.head_index, r.metric): r.value for r in rows if r.layer >= 0}
    lse = {key: got.pop(key) for key in list(got) if key[2] == "light_lse_max_nats"}
    assert len(lse) == 2 * heads and all(math.isfinite(v) for v in lse.values())
    assert min(lse.values()) > math.log(20) - 1.0               # near-zero logits of a random init
    want = eager_head_values(model, ids[:2])
    assert got.keys() == want.keys() and len(got) == 2 * heads * 3
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-5), key
    assert all(r.stderr == r.stderr for r in rows if r.layer >= 0)  # n = 2: a standard error


def test_padding_mask_reaches_the_statistics():
    model = build("llama").eval()                                  # grouped-query attention
    ids = torch.randint(0, V, (2, 16), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 11:] = 0                                               # right padding on sequence 1
    stats = HFLightStats(model, batch_fraction=1.0)
    with torch.no_grad(), stats.step(0):
        model(input_ids=ids, attention_mask=mask)
    stats.arm(0)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    got = {(r.layer, r.head_index, r.metric): r.value for r in stats.collect() if r.layer >= 0}
    stats.close()
    for key, value in eager_head_values(model, ids, mask).items():
        assert got[key] == pytest.approx(value, abs=1e-5), key


def test_trainer_callback_logs_every_step_with_updates_done_as_step(tmp_path):
    from torch.utils.data import Dataset

    class Repeat(Dataset):
        def __len__(self):
            return 16

        def __getitem__(self, i):
            ids = torch.randint(0, V, (12,), generator=torch.Generator().manual_seed(i))
            return {"input_ids": ids, "labels": ids}

    model = build("gpt2")
    stats = HFLightStats(model, batch_fraction=0.25, every=2, run_dir=tmp_path / "run")
    args = tf.TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=5, per_device_train_batch_size=4,
                                report_to=[], save_strategy="no", logging_strategy="no",
                                use_cpu=True, disable_tqdm=True)
    tf.Trainer(model=model, args=args, train_dataset=Repeat(), callbacks=[HFLightCallback(stats)]).train()
    m = attnlife.load_run(tmp_path / "run").metrics()
    ent = m[m.metric == "light_entropy_bits"]
    assert sorted(ent.step.unique()) == [0, 2, 4] and stats.events == 3
    assert ent.stderr.isna().all()                                 # n = 1 of 4 sequences
    assert model.config._attn_implementation == "sdpa"             # restored at train end
