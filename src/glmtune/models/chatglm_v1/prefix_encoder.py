"""P-Tuning v2 prefix for GLM v1: learned per-layer keys/values of ``pre_seq_len`` slots.

The table ``[pre_seq_len, num_layers * 2 * hidden]`` (or an MLP over ``[pre_seq_len, hidden]``
with ``prefix_projection``) is read as ``[pre_seq_len, num_layers * 2, heads, head_dim]``; layer i's
key is slot 2i and its value slot 2i+1, as THUDM's ``get_prompt``. Prefix keys are not rotated.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

PREFIX_DROPOUT = 0.1  # THUDM applies Dropout(0.1) to the prefix keys/values (training only)


class PrefixEncoder(nn.Module):
    """Module name and parameter names match the official ``transformer.prefix_encoder.*`` keys."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.pre_seq_len = int(config.pre_seq_len)
        self.prefix_projection = bool(config.prefix_projection)
        self.num_layers = config.num_layers
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        width = config.num_layers * 2 * config.hidden_size
        if self.prefix_projection:
            hidden = getattr(config, "prefix_hidden_size", None) or config.hidden_size
            self.embedding = nn.Embedding(self.pre_seq_len, config.hidden_size)
            self.trans = nn.Sequential(nn.Linear(config.hidden_size, hidden), nn.Tanh(), nn.Linear(hidden, width))
        else:
            self.embedding = nn.Embedding(self.pre_seq_len, width)
        self.dropout = nn.Dropout(PREFIX_DROPOUT)

    def forward(self, batch_size: int, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(key, value)] per layer, each ``[batch, heads, pre_seq_len, head_dim]``."""
        ids = torch.arange(self.pre_seq_len, device=self.embedding.weight.device)
        table = self.embedding(ids)
        if self.prefix_projection:
            table = self.trans(table)
        table = table.to(dtype).view(self.pre_seq_len, self.num_layers * 2, self.num_heads, self.head_dim)
        table = self.dropout(table).permute(1, 2, 0, 3)  # [layers*2, heads, P, d]
        table = table.unsqueeze(1).expand(-1, batch_size, -1, -1, -1)
        return [(table[2 * i], table[2 * i + 1]) for i in range(self.num_layers)]
