"""P-Tuning v2 on ChatGLM-6B (v1): fresh prefix, training signal, official folder round trip."""

from __future__ import annotations

import json

import pytest
import torch
from chatglm_v1_testutil import PAD, sample, tiny_model

from glmtune.errors import GlmtuneError
from glmtune.models.chatglm_v1.prefix import (
    PREFIX_KEY,
    enable_prefix,
    load_ptuning,
    prefix_parameters,
    save_ptuning,
)


def _batch():
    ids = torch.tensor([sample(5, 4), sample(5, 4, seed=1)])
    labels = ids.clone()
    labels[:, :6] = -100
    return ids, labels


@pytest.mark.parametrize("projection", [False, True])
def test_one_step_changes_only_the_prefix(projection):
    model = enable_prefix(tiny_model(), pre_seq_len=3, prefix_projection=projection, prefix_hidden_size=16)
    model.train()
    for param in model.parameters():
        param.requires_grad_(False)
    for param in prefix_parameters(model):
        param.requires_grad_(True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    ids, labels = _batch()
    model(input_ids=ids, labels=labels).loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith("transformer.prefix_encoder.") for n in changed)
    assert "transformer.prefix_encoder.embedding.weight" in changed


def test_prefix_gradients_with_checkpointing():
    model = enable_prefix(tiny_model(), pre_seq_len=2).train()
    ids, labels = _batch()
    model.transformer.prefix_encoder.dropout.p = 0.0
    model(input_ids=ids, labels=labels).loss.backward()
    plain = model.transformer.prefix_encoder.embedding.weight.grad.clone()
    model.zero_grad()
    model.activation_checkpointing_enable()
    model(input_ids=ids, labels=labels).loss.backward()
    torch.testing.assert_close(model.transformer.prefix_encoder.embedding.weight.grad, plain, atol=1e-6, rtol=1e-5)


def test_save_load_official_layout(tmp_path):
    model = enable_prefix(tiny_model(), pre_seq_len=4)
    folder = save_ptuning(model, tmp_path / "pt")
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    assert list(state) == [PREFIX_KEY]
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["pre_seq_len"] == 4 and config["prefix_projection"] is False
    assert config["model_type"] == "chatglm"
    again = load_ptuning(tiny_model(), folder)
    ids = torch.tensor([sample(5, 3)])
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6, rtol=0)


def test_prefix_generation_cache_matches_full_forward():
    model = enable_prefix(tiny_model(), pre_seq_len=3).eval()
    ids = torch.tensor([[PAD, PAD] + sample(4, 0), sample(6, 0, seed=1)])
    mask = (ids != PAD).long()
    with_cache = model.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False, use_cache=True)
    without = model.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False, use_cache=False)
    assert torch.equal(with_cache, without)


def test_errors_are_clear(tmp_path):
    with pytest.raises(GlmtuneError, match="no P-Tuning prefix"):
        prefix_parameters(tiny_model())
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(GlmtuneError, match="pre_seq_len"):
        load_ptuning(tiny_model(), tmp_path / "x")
    folder = save_ptuning(enable_prefix(tiny_model(), pre_seq_len=2), tmp_path / "pt")
    with pytest.raises(GlmtuneError, match="shape"):
        load_ptuning(tiny_model(hidden_size=64, inner_hidden_size=128), folder)
