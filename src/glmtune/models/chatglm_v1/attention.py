"""GLM v1 transformer block: self-attention with 2-D rotary, GeLU MLP, alpha-scaled residuals.

Attention numerics follow v1: scores ``q.k / (sqrt(d) * (layer_id+1))``, masked entries set to
-10000, then multiplied by ``(layer_id+1)`` and soft-maxed in float32. Two paths:
- ``eager`` reproduces that order of operations exactly.
- ``sdpa`` (default) uses ``scaled_dot_product_attention`` with a boolean mask. The per-layer
  coefficient cancels mathematically; a masked entry weighs exp(-10000*(layer_id+1)) = 0 in v1 as
  with -inf here, except on a fully masked query row (a left pad), where v1 gets uniform attention.
  We reproduce that by zeroing those queries and unmasking their row (all scores 0 -> uniform).
A flattened batch (``masks.SegmentMasks``) attends once per example, each with its own mask.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from glmtune.models.chatglm_v1.masks import SegmentMasks
from glmtune.models.chatglm_v1.rotary import apply_rotary


class SelfAttention(nn.Module):
    """Fused qkv laid out per head ([..., heads, 3*head_dim]), as the THUDM checkpoints store it."""

    def __init__(self, config: Any, layer_id: int) -> None:
        super().__init__()
        self.config = config
        self.layer_id = layer_id
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query_key_value = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | SegmentMasks,
        cos: torch.Tensor,
        sin: torch.Tensor,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Any = None,
    ) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        mixed = self.query_key_value(hidden_states).view(batch, length, self.num_heads, 3 * self.head_dim)
        query, key, value = mixed.chunk(3, dim=-1)
        query = apply_rotary(query, cos, sin).transpose(1, 2)
        key = apply_rotary(key, cos, sin).transpose(1, 2)
        value = value.transpose(1, 2)
        if cache is not None:  # the cache holds the real tokens only; the prefix is added on every call
            key, value = cache.update(key, value, self.layer_id)
        if prefix is not None:
            key = torch.cat((prefix[0].to(key.dtype), key), dim=2)
            value = torch.cat((prefix[1].to(value.dtype), value), dim=2)
        if isinstance(mask, SegmentMasks):
            context = self._per_example(query, key, value, mask)
        else:
            context = self._attend(query, key, value, mask)
        context = context.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.dense(context)

    def _attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if getattr(self.config, "_attn_implementation", None) == "eager":
            return self._eager(query, key, value, mask)
        return self._sdpa(query, key, value, mask)

    def _per_example(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     masks: SegmentMasks) -> torch.Tensor:
        """Each example of a flattened batch with its own keys (after any P-Tuning prefix) and mask."""
        n_prefix = key.shape[2] - query.shape[2]
        rows: list[list[torch.Tensor]] = [[] for _ in range(query.shape[0])]
        for b, start, end, mask in masks.parts:
            k, v = key[b:b + 1, :, n_prefix + start: n_prefix + end], value[b:b + 1, :, n_prefix + start: n_prefix + end]
            if n_prefix:
                k = torch.cat((key[b:b + 1, :, :n_prefix], k), dim=2)
                v = torch.cat((value[b:b + 1, :, :n_prefix], v), dim=2)
            rows[b].append(self._attend(query[b:b + 1, :, start:end], k, v, mask))
        return torch.cat([torch.cat(parts, dim=2) for parts in rows], dim=0)

    def _eager(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        coeff = float(self.layer_id + 1)
        scores = torch.matmul(query / (math.sqrt(self.head_dim) * coeff), key.transpose(-1, -2))
        scores = scores.masked_fill(mask, -10000.0).float() * coeff
        probs = F.softmax(scores, dim=-1).to(value.dtype)
        return torch.matmul(probs, value)

    def _sdpa(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        full = mask.all(dim=-1, keepdim=True)  # [B,1,q,1]: rows v1 turns into uniform attention
        if bool(full.any()):
            query = query.masked_fill(full, 0.0)
            mask = mask & ~full
        return F.scaled_dot_product_attention(query, key, value, attn_mask=~mask)


class MLP(nn.Module):
    """dense_h_to_4h -> tanh-approximated GeLU -> dense_4h_to_h."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.dense_h_to_4h = nn.Linear(config.hidden_size, config.inner_hidden_size)
        self.dense_4h_to_h = nn.Linear(config.inner_hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(hidden_states), approximate="tanh"))


# v1's GLMBlock takes ``num_layers`` with a default of 28 and ChatGLMModel never passes it, so the
# residual scale is sqrt(2 * 28) for every model size (the reference tiny/mini models confirm it:
# sqrt(2 * config.num_layers) is off by ~0.8 in the logits there; identical for the real 28 layers).
ALPHA = (2.0 * 28) ** 0.5


class GLMBlock(GradientCheckpointingLayer):
    """DeepNorm-style v1 block: the residual is ``alpha * LayerNorm(x)`` (see ``ALPHA``)."""

    def __init__(self, config: Any, layer_id: int) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.alpha = ALPHA
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.attention = SelfAttention(config, layer_id)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.mlp = MLP(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | SegmentMasks,
        cos: torch.Tensor,
        sin: torch.Tensor,
        prefix_key: torch.Tensor | None = None,
        prefix_value: torch.Tensor | None = None,
        cache: Any = None,
    ) -> torch.Tensor:
        prefix = (prefix_key, prefix_value) if prefix_key is not None else None
        attn_input = self.input_layernorm(hidden_states)
        attn_output = self.attention(attn_input, mask, cos, sin, prefix, cache)
        hidden_states = attn_input * self.alpha + attn_output
        mlp_input = self.post_attention_layernorm(hidden_states)
        return mlp_input * self.alpha + self.mlp(mlp_input)
