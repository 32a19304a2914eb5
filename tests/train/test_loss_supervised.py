"""The default training loss (labelled positions only, chunked vocabulary projection) equals the full-logits
loss, with the same gradients, for every ChatGLM generation and every way of training it."""

from __future__ import annotations

import pytest
import torch
from loss_models import apply_method, examples, family_model, padded

from glmtune.train.loss import chunked_causal_lm_loss

CASES = [(f, m) for f in ("chatglm", "chatglm2", "chatglm3", "glm4") for m in ("full", "freeze", "lora", "ptuning")
         if not (f == "glm4" and m == "ptuning")]  # GLM-4 has no P-Tuning v2


@pytest.mark.parametrize(("family", "method"), CASES)
def test_supervised_loss_equals_full_logits_loss(reference, family, method):
    model, tokenizer = family_model(reference, family)
    model = apply_method(model, family, method)
    batch = padded(model, tokenizer, examples(model, tokenizer))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert params
    ref = model(**batch).loss  # transformers' / the v1 module's loss over all logits
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in params.items()}
    model.zero_grad()
    loss, outputs = chunked_causal_lm_loss(model, batch, chunk=5)
    assert outputs.logits.shape[1] == 0  # no position's logits were computed by the model itself
    loss.backward()
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    for name, param in params.items():
        torch.testing.assert_close(param.grad, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    assert any(float(g.abs().sum()) > 0 for g in ref_grads.values())


def test_training_defaults_are_documented():
    from glmtune.train.config import TrainConfig

    cfg = TrainConfig(model="m", data="d")
    assert cfg.chunked_loss is True and cfg.padding_free is True
