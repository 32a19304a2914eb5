"""GLM v1 2-D rotary embeddings.

Each head is split in two halves: the first is rotated by the token position, the second by the
block position. Each half uses non-interleaved ``rotate_half`` over ``head_dim // 2`` channels.
v1 computes ``inv_freq`` in float32 and stores it as float16, so we round it through float16 too:
exact float32 frequencies move the logits by ~1e-4..1e-3, more than the reference tolerance.

RoPE scaling (``config.rope_scaling``):
- ``linear``: positions are divided by ``factor`` (position F*p behaves like p unscaled).
- ``dynamic``: NTK-aware base scaling once the longest position in the call exceeds
  ``max_sequence_length``: ``base * (factor * n / max_len - (factor - 1)) ** (dim / (dim - 2))``.
  Keys already in a KV cache keep the frequencies they were rotated with (as transformers' dynamic RoPE).
"""

from __future__ import annotations

from typing import Any

import torch

BASE = 10000.0


def inv_freq(dim: int, base: float = BASE, device: Any = None) -> torch.Tensor:
    """v1's frequencies for a rotary width ``dim``, rounded through float16 as the original stores them."""
    exponent = torch.arange(0, dim, 2, device=device).float() / dim
    return (1.0 / (base**exponent)).half().float()


def rotary_cos_sin(
    position_ids: torch.Tensor, head_dim: int, dtype: torch.dtype, config: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin for ``position_ids`` [B, 2, L] -> each [B, L, 1, head_dim] (both halves concatenated).

    Computed in float32 (as the reference model after ``.float()``), then cast to the model dtype.
    """
    dim = head_dim // 2
    base, positions = BASE, position_ids.float()
    scaling = getattr(config, "rope_scaling", None) if config is not None else None
    if scaling:
        kind = scaling.get("type", scaling.get("rope_type"))
        factor = float(scaling["factor"])
        if kind == "linear":
            positions = positions / factor
        elif kind == "dynamic":
            longest = int(position_ids.max().item()) + 1 if position_ids.numel() else 0
            max_len = int(config.max_sequence_length)
            if longest > max_len:
                base = BASE * ((factor * longest / max_len) - (factor - 1)) ** (dim / (dim - 2))
    freqs = inv_freq(dim, base, position_ids.device)
    angles = positions[..., None] * freqs  # [B, 2, L, dim/2]
    emb = torch.cat((angles, angles), dim=-1)  # [B, 2, L, dim]
    cos, sin = emb.cos(), emb.sin()
    # positions half then block half along the channel axis
    cos = torch.cat((cos[:, 0], cos[:, 1]), dim=-1).unsqueeze(2).to(dtype)
    sin = torch.cat((sin[:, 0], sin[:, 1]), dim=-1).unsqueeze(2).to(dtype)
    return cos, sin


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` [B, L, H, D]: each half of D separately (position half, block half)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c1, c2 = cos[..., :half], cos[..., half:]
    s1, s2 = sin[..., :half], sin[..., half:]
    return torch.cat((x1 * c1 + _rotate_half(x1) * s1, x2 * c2 + _rotate_half(x2) * s2), dim=-1)
