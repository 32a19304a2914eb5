"""P-Tuning v2 on the mapped Glm model with gradient checkpointing: same loss/gradients, only the prefix trains."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import glmtune  # noqa: E402
from glmtune.errors import GlmtuneError  # noqa: E402
from glmtune.methods.base import enable_gradient_checkpointing  # noqa: E402
from glmtune.models.glm_mapping.prefix import enable_prefix, load_ptuning, prefix_parameters  # noqa: E402

IDS = torch.tensor([[1001, 1003, 857, 163, 812, 253, 966, 2], [0, 0, 0, 1001, 5, 6, 7, 2]])
MASK = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1]])  # left padding


def prefix_model(reference, attn: str, setup: str):
    root = reference / "models" / "chatglm2-tiny"
    model = glmtune.load_model(root, attn_implementation=attn)
    if setup == "official":
        load_ptuning(model, root / "ptuning")
    else:
        torch.manual_seed(3)
        enable_prefix(model, pre_seq_len=3, prefix_projection=True, prefix_hidden_size=16)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in prefix_parameters(model):
        p.requires_grad_(True)
    return model


def loss_and_grads(model, **kwargs):
    model.train()
    torch.manual_seed(0)  # the same prefix dropout mask in every run
    loss = model(input_ids=IDS, attention_mask=MASK, labels=IDS, **kwargs).loss
    loss.backward()
    grads = [p.grad.detach().clone() for p in prefix_parameters(model)]
    model.zero_grad()
    return loss.detach(), grads


@pytest.mark.parametrize("setup", ["official", "projection"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_checkpointing_matches_and_trains_only_the_prefix(reference, attn, setup):
    model = prefix_model(reference, attn, setup)
    with_cache = loss_and_grads(model, use_cache=True)  # the prefix pre-filled into the KV cache
    no_cache = loss_and_grads(model, use_cache=False)  # the prefix via attention kwargs
    enable_gradient_checkpointing(model, frozen_base=True)
    calls = []
    for layer in model.model.layers:
        func = layer._gradient_checkpointing_func
        layer._gradient_checkpointing_func = lambda *a, _f=func, **k: calls.append(1) or _f(*a, **k)
    checkpointed = loss_and_grads(model)
    assert len(calls) == len(model.model.layers)
    for other in (with_cache, no_cache):
        torch.testing.assert_close(checkpointed[0], other[0], atol=1e-6, rtol=0)
        for got, want in zip(checkpointed[1], other[1]):
            assert got.abs().sum() > 0
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)

    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(prefix_parameters(model), lr=0.1)
    model.train()
    model(input_ids=IDS, attention_mask=MASK, labels=IDS).loss.backward()
    opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {k for k in before if k.startswith("prefix_encoder.")}


def test_no_cache_path_reproduces_d_a(reference):
    root = reference / "models" / "chatglm2-tiny"
    model = load_ptuning(glmtune.load_model(root), root / "ptuning")
    loss = json.loads((root / "cases.json").read_text())["cases"]["d.a"]["loss"]
    with np.load(root / "expected.npz") as npz:
        ids, labels, want = (torch.from_numpy(npz[k]) for k in ("d.a.input_ids", "d.a.labels", "d.a.logits"))
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels, use_cache=False)
    assert not {"cache", "past_key_values"} & set(out.keys())  # no KV cache returned
    torch.testing.assert_close(out.logits, want, atol=1e-5, rtol=0)
    assert abs(out.loss.item() - loss) < 1e-5


@pytest.mark.parametrize("checkpointing", [False, True])
def test_an_unwrapped_attention_is_refused(reference, checkpointing):
    model = prefix_model(reference, "sdpa", "official")
    if checkpointing:
        enable_gradient_checkpointing(model, frozen_base=True)
    model.set_attn_implementation("sdpa")  # e.g. set back by hand: the prefix would be dropped
    model.train(checkpointing)
    with pytest.raises(GlmtuneError, match="P-Tuning prefix needs the glmtune_prefix_sdpa"):
        model(input_ids=IDS, labels=IDS)
