"""GLM v1 attention masks and 2-D positions, computed from ``input_ids`` as the original does.

Conventions (the original's): boolean masks, **True = masked**, shape [B, 1, Lq, Lk]; positions
[B, 2, L] (row 0 token positions, row 1 block positions).

For one sequence: the context is everything before ``<sop>`` (bos). Context tokens attend to the
whole context (bidirectional), tokens from ``<sop>`` on attend causally. ``mask_position`` is the
index of ``[gMASK]`` (``[MASK]`` when there is no gMASK). ``position_ids[0]`` = 0..ctx-1 then
mask_position; ``position_ids[1]`` = 0 over the context, 1, 2, ... from ``<sop>``.
Choices where the original raises: no ``<sop>`` -> the whole sequence is context; no mask token ->
mask_position = ctx - 1 (as if the last context token were the gMASK).

With a 2-D padding mask (1 = real, 0 = pad) the layout is computed on the real tokens only and
scattered back (what the v1 tokenizer's ``pad`` does for left padding): pad columns are masked,
pad query rows are fully masked (the model gives them uniform attention) and pad positions are 0.

Flattened batches (``position_ids`` [B, L] restarting at 0 per example, no ``attention_mask``: what
``glmtune train`` feeds by default, ``padding_free``): each example gets its own small mask and 2-D
positions, computed as for the example alone (:func:`flattened_layout`); no [L, L] mask exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from glmtune.models.flat_spans import example_spans


def row_layout(ids: Sequence[int], config: Any) -> tuple[int, int]:
    """(context length, mask position) of one unpadded sequence."""
    ids = list(ids)
    ctx = ids.index(config.bos_token_id) if config.bos_token_id in ids else len(ids)
    if config.gmask_token_id in ids:
        mask_pos = ids.index(config.gmask_token_id)
    elif config.mask_token_id in ids:
        mask_pos = ids.index(config.mask_token_id)
    else:
        mask_pos = max(ctx - 1, 0)
    return ctx, mask_pos


def sequence_layout(ids: Sequence[int], config: Any, device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask [n, n] (True = masked) and positions [2, n] of one unpadded sequence."""
    n = len(ids)
    ctx, mask_pos = row_layout(ids, config)
    idx = torch.arange(n, device=device)
    visible = (idx[None, :] <= idx[:, None]) | (idx[None, :] < ctx)
    pos = torch.where(idx < ctx, idx, torch.full_like(idx, mask_pos))
    block = torch.where(idx < ctx, torch.zeros_like(idx), idx - ctx + 1)
    return ~visible, torch.stack((pos, block))


def masks_and_positions(
    input_ids: torch.Tensor, config: Any, attention_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """[B,1,L,L] bool mask and [B,2,L] positions for a forward without past (pads from a 2-D mask)."""
    batch, length = input_ids.shape
    device = input_ids.device
    mask = torch.ones(batch, 1, length, length, dtype=torch.bool, device=device)
    positions = torch.zeros(batch, 2, length, dtype=torch.long, device=device)
    for b in range(batch):
        if attention_mask is None:
            where = torch.arange(length, device=device)
        else:
            where = attention_mask[b].nonzero().flatten()
        if where.numel() == 0:
            continue
        row_mask, row_pos = sequence_layout(input_ids[b, where].tolist(), config, device)
        mask[b, 0, where[:, None], where[None, :]] = row_mask
        positions[b, :, where] = row_pos
    return mask, positions


def incremental_mask(
    attention_mask: torch.Tensor | None, batch: int, q_len: int, past_len: int, device: Any
) -> torch.Tensor:
    """[B,1,q,past+q] mask for new tokens after a cached prefix: causal, pads of the 2-D mask hidden."""
    total = past_len + q_len
    q_idx = torch.arange(past_len, total, device=device)
    k_idx = torch.arange(total, device=device)
    mask = (k_idx[None, :] > q_idx[:, None]).expand(batch, 1, q_len, total).clone()
    if attention_mask is not None:
        pad = attention_mask[:, -total:] == 0
        mask |= pad[:, None, None, :]
    return mask


def packed_inputs(
    examples: Sequence[Sequence[int]], config: Any, length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Several examples in one row without attention across them: (input_ids [1,L], mask [1,1,L,L], positions [1,2,L]).

    Each example gets its own block of the mask (its own bidirectional context and causal part) and
    positions restarting at 0, so the packed logits equal the unpacked ones. ``length`` right-pads
    with ``pad_token_id`` (pad rows fully masked, positions 0).
    """
    total = sum(len(e) for e in examples)
    length = total if length is None else length
    if length < total:
        raise ValueError(f"packed length {length} is shorter than the examples ({total} tokens)")
    pad_id = config.pad_token_id if config.pad_token_id is not None else 0
    ids = torch.full((1, length), pad_id, dtype=torch.long)
    mask = torch.ones(1, 1, length, length, dtype=torch.bool)
    positions = torch.zeros(1, 2, length, dtype=torch.long)
    start = 0
    for example in examples:
        n = len(example)
        row_mask, row_pos = sequence_layout(example, config)
        ids[0, start : start + n] = torch.tensor(list(example), dtype=torch.long)
        mask[0, 0, start : start + n, start : start + n] = row_mask
        positions[0, :, start : start + n] = row_pos
        start += n
    return ids, mask, positions


def valid_from_mask(attention_mask: torch.Tensor | None, batch: int, length: int, device: Any) -> torch.Tensor:
    """[B, L] real-token flags from a 2-D mask (1 = real) or a v1 4-D mask (a pad row cannot see itself)."""
    if attention_mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    if attention_mask.dim() == 4:
        return ~attention_mask[:, 0].diagonal(dim1=-2, dim2=-1)[:, -length:]
    return attention_mask[:, -length:] != 0


def last_positions(input_ids: torch.Tensor, config: Any, valid: torch.Tensor, q_len: int) -> torch.Tensor:
    """[B, 2, q_len] positions of the last ``q_len`` tokens of ``input_ids`` (for cached generation steps)."""
    batch, length = input_ids.shape
    out = torch.zeros(batch, 2, q_len, dtype=torch.long, device=input_ids.device)
    for b in range(batch):
        where = valid[b].nonzero().flatten()
        ctx, mask_pos = row_layout(input_ids[b, where].tolist(), config)
        rank = valid[b].long().cumsum(0) - 1  # index of each token among the real ones
        for i, col in enumerate(range(length - q_len, length)):
            if not valid[b, col]:
                continue
            j = int(rank[col])
            out[b, 0, i] = j if j < ctx else mask_pos
            out[b, 1, i] = 0 if j < ctx else j - ctx + 1
    return out


class SegmentMasks:
    """The masks of a flattened batch, one per example: ``parts`` holds ``(row, start, end, mask)`` with
    ``mask`` [1, 1, n, n] (True = masked). Attention runs once per example (``attention.SelfAttention``)."""

    def __init__(self, parts: list[tuple[int, int, int, torch.Tensor]]) -> None:
        self.parts = parts

    def with_prefix(self, n_prefix: int) -> SegmentMasks:
        """The same masks with ``n_prefix`` always-visible P-Tuning keys in front."""
        return SegmentMasks([(b, s, e, torch.cat((m.new_zeros(*m.shape[:-1], n_prefix), m), dim=-1))
                             for b, s, e, m in self.parts])


def flattened_layout(input_ids: torch.Tensor, position_ids: torch.Tensor, config: Any) -> tuple[SegmentMasks, torch.Tensor]:
    """(per-example masks, [B, 2, L] positions) of rows holding unpadded examples back to back; an example
    starts wherever ``position_ids`` [B, L] do not go up by one."""
    batch, length = input_ids.shape
    device = input_ids.device
    spans = example_spans(position_ids, length)
    spans = spans * batch if len(spans) == 1 else spans  # one row of positions for every row
    positions = torch.zeros(batch, 2, length, dtype=torch.long, device=device)
    parts = []
    for b in range(batch):
        for start, end in spans[b]:
            mask, pos = sequence_layout(input_ids[b, start:end].tolist(), config, device)
            parts.append((b, start, end, mask[None, None]))
            positions[b, :, start:end] = pos
    return SegmentMasks(parts), positions
