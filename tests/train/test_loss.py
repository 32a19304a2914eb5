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


@pytest.mark.parametrize(("scale", "floor", "redone"), [
    (1.0, None, False), (40.0, None, True), (0.1, -150.0, True), (0.1, -75.0, True), (0.1, -40.0, False),
], ids=["plain-exp", "logits-in-the-hundreds", "all-below-exp-range", "all-near-subnormal", "all-at-minus-40"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_online_tiles_equal_autograd_cross_entropy(with_bias, scale, floor, redone, monkeypatch):
    """The frozen-head fp32 path (softmax sums over vocabulary tiles) against plain autograd: several
    row and vocabulary tiles, a ragged last tile. Ordinary logits take the unshifted ``exp`` pass alone;
    logits in the hundreds (``exp`` overflows), or all so low that ``exp`` underflows or its sum has
    subnormal terms (fewer bits), are redone with the running max, and only then."""
    import glmtune.train.loss as loss_module
    from glmtune.train.loss import TILE_ROWS, TILE_VOCAB, chunked_cross_entropy

    calls = []
    running_max = loss_module._running_max
    monkeypatch.setattr(loss_module, "_running_max", lambda *a: calls.append(1) or running_max(*a))
    torch.manual_seed(0)
    vocab, dim, rows = 2 * TILE_VOCAB + 37, 16, TILE_ROWS + 9
    head = torch.nn.Linear(dim, vocab, bias=with_bias).requires_grad_(False)
    head.weight.mul_(scale)
    if floor is not None:  # every logit of every row near ``floor``
        head.bias = torch.nn.Parameter(torch.full((vocab,), floor), requires_grad=False)
    hidden = torch.randn(1, rows + 1, dim, requires_grad=True)
    labels = torch.randint(0, vocab, (1, rows + 1))
    labels[0, 5:20] = -100
    total, count = chunked_cross_entropy(hidden, labels, head)
    total.backward()
    grad = hidden.grad.clone()
    hidden.grad = None
    logits = head.double()(hidden[0, :-1].double())  # float64 reference: float32 autograd is itself off
    ref = torch.nn.functional.cross_entropy(logits, labels[0, 1:], reduction="sum")  # by ~1e-5 x |logits|
    ref.backward()
    assert int(count) == rows - 15
    assert bool(calls) == redone
    assert torch.isfinite(total) and (float(logits.max()) > 88) == (scale > 1)  # exp(88.8) is inf in float32
    torch.testing.assert_close(total, ref.float(), rtol=1e-5, atol=1e-3)
    # float32 itself (running max or autograd alike) is off by ~2e-6 of a row's gradient norm (~30 at scale 40)
    torch.testing.assert_close(grad, hidden.grad, rtol=1e-4, atol=1e-4 if scale > 1 else 1e-5)
    with torch.no_grad():  # evaluation: the value alone
        torch.testing.assert_close(chunked_cross_entropy(hidden, labels, head.float())[0], ref.detach().float(),
                                   rtol=1e-5, atol=1e-3)


def test_online_tiles_redo_only_the_rows_out_of_range(monkeypatch):
    """One row whose logits overflow ``exp`` is redone with the running max; its neighbours are not."""
    import glmtune.train.loss as loss_module
    from glmtune.train.loss import chunked_cross_entropy

    redone = []
    running_max = loss_module._running_max
    monkeypatch.setattr(loss_module, "_running_max", lambda h, *a: redone.append(h.shape[0]) or running_max(h, *a))
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 700, bias=False).requires_grad_(False)
    hidden = torch.randn(1, 9, 16)
    hidden[0, 3] *= 2000  # logits of row 3 (the label of position 4) in the thousands
    hidden.requires_grad_(True)
    labels = torch.randint(0, 700, (1, 9))
    total, _ = chunked_cross_entropy(hidden, labels, head)
    (grad,) = torch.autograd.grad(total, hidden)
    ref = torch.nn.functional.cross_entropy(head(hidden[0, :-1]), labels[0, 1:], reduction="sum")
    (ref_grad,) = torch.autograd.grad(ref, hidden)
    assert redone == [1]
    torch.testing.assert_close(total, ref.detach(), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-5)


def test_online_tiles_without_targets_is_zero():
    from glmtune.train.loss import chunked_cross_entropy

    head = torch.nn.Linear(8, 100, bias=False).requires_grad_(False)
    hidden = torch.randn(1, 5, 8, requires_grad=True)
    total, count = chunked_cross_entropy(hidden, torch.full((1, 5), -100), head)
    total.backward()
    assert float(total) == 0.0 and int(count) == 0
    assert torch.equal(hidden.grad, torch.zeros_like(hidden))


def test_online_tiles_edge_cases():
    """A first vocabulary tile of -inf logits (masked-out entries) is no NaN; inside an autocast region
    the tiles stay float32; both equal the plain loss."""
    from glmtune.train.loss import TILE_VOCAB, chunked_cross_entropy

    torch.manual_seed(0)
    head = torch.nn.Linear(8, 2 * TILE_VOCAB + 5).requires_grad_(False)
    head.bias[:TILE_VOCAB] = float("-inf")
    hidden = torch.randn(1, 7, 8, requires_grad=True)
    labels = torch.randint(TILE_VOCAB, 2 * TILE_VOCAB + 5, (1, 7))
    ref = torch.nn.functional.cross_entropy(head(hidden[0, :-1]), labels[0, 1:], reduction="sum")
    (ref_grad,) = torch.autograd.grad(ref, hidden)
    total, _ = chunked_cross_entropy(hidden, labels, head)
    (grad,) = torch.autograd.grad(total, hidden)
    torch.testing.assert_close(total, ref.detach(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_autocast, _ = chunked_cross_entropy(hidden, labels, head)
    torch.testing.assert_close(in_autocast, ref.detach(), rtol=1e-5, atol=1e-4)


def test_float32_hidden_states_before_a_bf16_head():
    """peft keeps LoRA weights in float32, which can leave the hidden states float32 in a bf16 model:
    the head then runs in its own dtype, as under autocast, and the gradient comes back in float32."""
    from glmtune.train.loss import chunked_cross_entropy

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 300, bias=False).to(torch.bfloat16).requires_grad_(False)
    hidden = torch.randn(1, 9, 16, requires_grad=True)
    labels = torch.randint(0, 300, (1, 9))
    total, _ = chunked_cross_entropy(hidden, labels, head)
    total.backward()
    ref = torch.nn.functional.cross_entropy(head(hidden[0, :-1].to(torch.bfloat16)).float(), labels[0, 1:],
                                            reduction="sum")
    torch.testing.assert_close(total, ref, rtol=1e-5, atol=1e-4)
    assert hidden.grad is not None and hidden.grad.dtype == torch.float32 and bool(hidden.grad.abs().sum() > 0)
