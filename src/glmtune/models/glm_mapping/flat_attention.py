"""Padding-free ("flattened") batches on ``GlmForCausalLM``: attention per example, no dense mask.

A flattened batch is one row holding every example of the batch back to back, with ``position_ids``
restarting at 0 for each example and no ``attention_mask`` (``glmtune.data.collate``,
``flatten=True``; the idea of transformers' ``DataCollatorWithFlattening``). No padding is computed,
and attention must stay inside each example. transformers itself would notice the position restarts
and build a dense ``[L, L]`` block-diagonal mask, which sends SDPA to its slow masked path with
O(L^2) memory. Instead the attention implementation registered here (``glmtune_flat_sdpa``, through
transformers' public ``AttentionInterface``/``AttentionMaskInterface``) asks for no mask in that case
and runs causal SDPA once per example (the fast ``is_causal`` kernel on each segment). Every other
call (padded batches, a KV cache, generation) is transformers' plain ``sdpa``, unchanged, so the model
keeps working for evaluation and inference after training. The P-Tuning prefix attention
(``glmtune_prefix_sdpa`` in :mod:`.prefix`) uses the same segment helper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from glmtune.models.flat_spans import example_spans

FLAT_SDPA = "glmtune_flat_sdpa"
PREFIX_SDPA = "glmtune_prefix_sdpa"  # prefix.py's sdpa variant, which also handles flattened batches


def flat_mask(batch_size: int, q_length: int, kv_length: int, q_offset: Any = 0, kv_offset: int = 0,
              attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor | None:
    """No mask when there is no padding and no cache (the attention then splits at position restarts);
    otherwise exactly sdpa's mask."""
    if attention_mask is None and q_length == kv_length and not kv_offset:
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                     kv_offset=kv_offset, attention_mask=attention_mask, **kwargs)


def segments(position_ids: torch.Tensor | None, length: int) -> list[list[tuple[int, int]]] | None:
    """Per row, the ``(start, end)`` spans of the examples (``flat_spans.example_spans``); None when no
    row has more than one example (plain causal attention is then exact)."""
    if position_ids is None or position_ids.shape[-1] != length:
        return None
    rows = example_spans(position_ids, length)
    return rows if any(len(row) > 1 for row in rows) else None


def per_segment(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, spans: list[list[tuple[int, int]]],
                attend: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``attend(q, k, v)`` on each example's slice (``[1, heads, n, d]``), outputs joined back to ``[B, L, heads, d]``."""
    if query.shape[0] != len(spans) and len(spans) == 1:
        spans = spans * query.shape[0]  # position_ids broadcast over the batch
    rows = []
    for b, row in enumerate(spans):
        parts = [attend(query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e]) for s, e in row]
        rows.append(torch.cat(parts, dim=1))
    return torch.cat(rows, dim=0)


def flat_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' sdpa, except that a maskless batch with position restarts attends per example."""
    spans = None
    if attention_mask is None and query.shape[-2] == key.shape[-2]:
        spans = segments(kwargs.get("position_ids"), query.shape[-2])
    if spans is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return sdpa_attention_forward(module, q, k, v, None, **kwargs)[0]

    return per_segment(query, key, value, spans, attend), None


AttentionInterface.register(FLAT_SDPA, flat_sdpa_attention)
AttentionMaskInterface.register(FLAT_SDPA, flat_mask)


def enable_padding_free(model: Any) -> bool:
    """Switch a ``GlmForCausalLM`` (also under peft) to attention that keeps flattened examples apart.

    ChatGLM-6B v1's own module keeps them apart by itself (``chatglm_v1.masks.flattened_layout``, any
    attention): True, nothing changed. Returns False (nothing changed) for any other model and for
    ``GlmForCausalLM`` with eager attention: those keep padded batches."""
    from transformers import GlmForCausalLM

    from glmtune.models.chatglm_v1.modeling import ChatGLMV1ForCausalLM

    base = model
    while not isinstance(base, (GlmForCausalLM, ChatGLMV1ForCausalLM)):
        inner = getattr(base, "get_base_model", None)
        if inner is None or inner() is base:
            return False
        base = inner()
    if isinstance(base, ChatGLMV1ForCausalLM):
        return True
    attn = base.config._attn_implementation
    if attn in (FLAT_SDPA, PREFIX_SDPA):
        return True
    if attn != "sdpa":
        return False
    base.set_attn_implementation(FLAT_SDPA)
    return True
