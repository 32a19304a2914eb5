"""Padding-free batches (one unpadded row, positions restarting per example, no mask): no example sees
another, and the training loss and gradients equal the padded batch's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from loss_models import apply_method, examples, family_model, padded

from glmtune.data.collate import Collator, flatten_batch
from glmtune.errors import GlmtuneError
from glmtune.models.glm_mapping.flat_attention import FLAT_SDPA, enable_padding_free, segments
from glmtune.train.loss import chunked_causal_lm_loss


def token_losses(model, batch) -> torch.Tensor:
    """Next-token loss of every position of row 0 (0 where the label is -100)."""
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0, :-1].float()
    return F.cross_entropy(logits, batch["labels"][0, 1:], ignore_index=-100, reduction="none")


@pytest.mark.parametrize(("family", "method"), [("chatglm2", "full"), ("chatglm3", "full"), ("glm4", "full"),
                                                ("chatglm2", "ptuning"), ("chatglm3", "ptuning"),
                                                ("chatglm", "full"), ("chatglm", "ptuning")])
def test_each_example_in_a_flattened_batch_scores_as_alone(reference, family, method):
    model, tokenizer = family_model(reference, family)
    model = apply_method(model, family, method)
    assert enable_padding_free(model)
    rows = examples(model, tokenizer, lengths=((9, 4), (17, 5), (6, 2), (12, 12)))
    with torch.no_grad():
        together = token_losses(model, flatten_batch(rows))
        start = 0
        for row in rows:
            n = len(row["input_ids"])
            alone = token_losses(model, flatten_batch([row])).sum()
            torch.testing.assert_close(together[start: start + n - 1].sum(), alone, atol=1e-5, rtol=1e-6)
            if start + n - 1 < together.shape[0]:  # the next example's first token is never a target
                assert float(together[start + n - 1]) == 0
            start += n
        # and the examples really differ from a batch where they may see each other (causal over the row)
        spoiled = dict(flatten_batch(rows), position_ids=torch.arange(start)[None])
        assert not torch.allclose(token_losses(model, spoiled), together, atol=1e-3)


@pytest.mark.parametrize(("family", "method"), [("chatglm2", "lora"), ("chatglm3", "ptuning"), ("glm4", "freeze"),
                                                ("chatglm", "lora"), ("chatglm", "ptuning")])
def test_flattened_training_loss_and_grads_equal_padded(reference, family, method):
    model, tokenizer = family_model(reference, family)
    model = apply_method(model, family, method)
    rows = examples(model, tokenizer)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    ref = model(**padded(model, tokenizer, rows)).loss  # padded batch, full logits: the old default
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in params.items()}
    model.zero_grad()
    assert enable_padding_free(model)
    loss, _ = chunked_causal_lm_loss(model, flatten_batch(rows), chunk=4)  # the new default
    loss.backward()
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    for name, param in params.items():
        torch.testing.assert_close(param.grad, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_padded_and_cached_calls_are_plain_sdpa(reference):
    model, tokenizer = family_model(reference, "chatglm3")
    batch = padded(model, tokenizer, examples(model, tokenizer))
    with torch.no_grad():
        before = model(**batch).logits
        prompt = batch["input_ids"][:1, :5]
        greedy = model.generate(prompt, max_new_tokens=6, do_sample=False)
        assert enable_padding_free(model) and model.config._attn_implementation == FLAT_SDPA
        torch.testing.assert_close(model(**batch).logits, before, atol=1e-6, rtol=0)
        assert torch.equal(model.generate(prompt, max_new_tokens=6, do_sample=False), greedy)


def test_flatten_batch_layout():
    rows = [{"input_ids": [5, 6, 7], "labels": [5, 6, 7]},
            {"input_ids": [8, 9, 10, 11], "labels": [-100, 9, 10, 11], "seq_lens": [1, 3]}]  # a packed row
    batch = flatten_batch(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 0, 1, 2]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, -100, 10, 11]]
    assert "attention_mask" not in batch
    assert segments(batch["position_ids"], 7) == [[(0, 3), (3, 4), (4, 7)]]
    assert segments(torch.arange(7)[None], 7) is None


def test_v1_flattened_layout_is_each_example_alone(reference):
    from glmtune.models.chatglm_v1.masks import flattened_layout, masks_and_positions

    model, tokenizer = family_model(reference, "chatglm")
    rows = examples(model, tokenizer, lengths=((9, 4), (6, 2)))
    batch = flatten_batch(rows)
    masks, positions = flattened_layout(batch["input_ids"], batch["position_ids"], model.config)
    start = 0
    for (b, s, e, mask), row in zip(masks.parts, rows, strict=True):
        n = len(row["input_ids"])
        alone_mask, alone_pos = masks_and_positions(torch.tensor([row["input_ids"]]), model.config)
        assert (b, s, e) == (0, start, start + n)
        assert torch.equal(mask, alone_mask) and torch.equal(positions[:, :, s:e], alone_pos)
        start += n
    assert start == batch["input_ids"].shape[1]
    two = {k: v.expand(2, -1) for k, v in batch.items()}  # two rows: each gets its own examples
    masks2, positions2 = flattened_layout(two["input_ids"], two["position_ids"], model.config)
    assert [p[:3] for p in masks2.parts] == [(b, *p[1:3]) for b in (0, 1) for p in masks.parts]
    assert torch.equal(positions2, positions.expand(2, -1, -1))
    with pytest.raises(GlmtuneError, match="use_cache=True"):  # a flattened row cannot be continued
        model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=True)


def test_v1_flattens_natively_and_eager_glm_keeps_padded_batches(reference):
    model, _ = family_model(reference, "chatglm")
    assert enable_padding_free(model)  # v1: per-example masks and 2-D positions from the restarts
    glm4, _ = family_model(reference, "glm4")
    glm4.set_attn_implementation("eager")
    assert not enable_padding_free(glm4) and glm4.config._attn_implementation == "eager"


def test_collator_flatten_flag(reference):
    model, tokenizer = family_model(reference, "chatglm2")
    rows = examples(model, tokenizer)
    flat = Collator(tokenizer, flatten=True)(rows)
    assert flat["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows))
    assert set(flat) == {"input_ids", "labels", "position_ids"}
