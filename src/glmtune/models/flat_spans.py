"""Where the examples of a flattened batch start: one place for every model family.

A flattened ("padding-free") row holds unpadded examples back to back with ``position_ids`` restarting
at 0 for each (``glmtune.data.collate.flatten_batch``); an example starts wherever the positions do not
go up by one. Used by ChatGLM2/3/GLM-4's per-example attention and by ChatGLM-6B v1's per-example masks.
"""

from __future__ import annotations

import torch


def example_spans(position_ids: torch.Tensor, length: int) -> list[list[tuple[int, int]]]:
    """Per row of ``position_ids`` ([B, L] or [L]), the ``(start, end)`` spans of its examples."""
    starts = torch.diff(position_ids.reshape(-1, length), dim=-1) != 1
    rows = []
    for row in starts.tolist():
        cuts = [0, *[i + 1 for i, s in enumerate(row) if s], length]
        rows.append(list(zip(cuts[:-1], cuts[1:])))
    return rows
