"""Chunked loss equals the model's own loss, with the same gradients."""

from __future__ import annotations

import pytest
import torch

from glmtune.errors import GlmtuneError
from glmtune.train.loss import chunked_causal_lm_loss


def _model_and_batch(tiny_model):
    import glmtune

    torch.manual_seed(0)
    model = glmtune.load_model(tiny_model, dtype=torch.float32)
    ids = torch.randint(3, 1000, (2, 23))
    labels = ids.clone()
    labels[0, :7] = -100  # a prompt
    labels[1, 18:] = -100  # right padding
    mask = torch.ones_like(ids)
    mask[1, 18:] = 0
    return model, {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("chunk", [5, 1024])
def test_chunked_loss_matches_model_loss_and_grads(tiny_model, chunk):
    model, batch = _model_and_batch(tiny_model)
    ref = model(**batch).loss
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    loss, _ = chunked_causal_lm_loss(model, batch, chunk=chunk)
    loss.backward()
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_chunked_loss_with_num_items(tiny_model):
    model, batch = _model_and_batch(tiny_model)
    n = int((batch["labels"][:, 1:] != -100).sum())
    full, _ = chunked_causal_lm_loss(model, batch, chunk=7)
    halved, _ = chunked_causal_lm_loss(model, batch, chunk=7, num_items_in_batch=2 * n)
    torch.testing.assert_close(halved * 2, full)


def test_chunked_loss_refuses_models_without_output_layer():
    class NoHead(torch.nn.Module):
        def forward(self, **kwargs):
            raise TypeError("unexpected keyword argument 'logits_to_keep'")

    with pytest.raises(GlmtuneError, match="chunked_loss"):
        chunked_causal_lm_loss(NoHead(), {"input_ids": torch.zeros(1, 3, dtype=torch.long), "labels": torch.zeros(1, 3)})
