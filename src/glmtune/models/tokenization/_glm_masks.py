"""ChatGLM-6B (v1) padding: the GLM attention mask and 2-D positions the original tokenizer returns.

When a batch is padded (``max_length`` known), each row gets, as THUDM's v1.1 ``_pad`` builds them:
- ``attention_mask``: bool ``[1, L, L]``, True = masked; causal, except that every position sees the whole
  context (the tokens before ``<sop>``); padding rows/columns are masked;
- ``position_ids``: ``[2, L]``; row 0 counts positions and freezes at the ``[MASK]``/``[gMASK]`` index from
  ``<sop>`` on, row 1 counts 1.. inside the generated block (0 in the context); pads are 0.
Unpadded calls return ``input_ids`` only, like the original. The v1 model can also derive both from ids.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers.utils import PaddingStrategy


def glm_attention_mask(input_ids: list[int], bos_id: int) -> np.ndarray:
    """Bool ``[1, L, L]`` mask (True = masked) of one unpadded row."""
    length = len(input_ids)
    context = input_ids.index(bos_id) if bos_id in input_ids else length
    visible = np.tril(np.ones((length, length), dtype=bool))
    visible[:, :context] = True
    return ~visible[None]


def glm_position_ids(input_ids: list[int], bos_id: int, mask_id: int, gmask_id: int) -> np.ndarray:
    """``[2, L]`` int64 positions (row 0) and block positions (row 1) of one unpadded row."""
    length = len(input_ids)
    context = input_ids.index(bos_id) if bos_id in input_ids else length
    positions = np.arange(length, dtype=np.int64)
    mask_token = mask_id if mask_id in input_ids else gmask_id
    if mask_token in input_ids:
        positions[context:] = input_ids.index(mask_token)
    block = np.concatenate(
        [np.zeros(context, dtype=np.int64), np.arange(1, length - context + 1, dtype=np.int64)]
    )
    return np.stack([positions, block], axis=0)


def pad_glm_inputs(
    tokenizer: Any,
    encoded_inputs: dict[str, Any],
    max_length: int | None = None,
    padding_strategy: PaddingStrategy = PaddingStrategy.DO_NOT_PAD,
    pad_to_multiple_of: int | None = None,
    padding_side: str | None = None,
    return_attention_mask: bool | None = None,
) -> dict[str, Any]:
    """Pad one row of a v1 batch, adding the GLM mask and positions when the batch is padded."""
    if return_attention_mask is None:
        return_attention_mask = "attention_mask" in tokenizer.model_input_names
    main = tokenizer.model_input_names[0]
    ids = list(encoded_inputs[main])
    if padding_strategy == PaddingStrategy.LONGEST:
        max_length = len(ids)
    if max_length is not None and pad_to_multiple_of is not None and max_length % pad_to_multiple_of != 0:
        max_length = (max_length // pad_to_multiple_of + 1) * pad_to_multiple_of
    if max_length is not None:
        bos, mask, gmask = tokenizer.sop_token_id, tokenizer.mask_token_id, tokenizer.gmask_token_id
        if return_attention_mask and "attention_mask" not in encoded_inputs:
            encoded_inputs["attention_mask"] = glm_attention_mask(ids, bos)
        if "position_ids" in tokenizer.model_input_names and "position_ids" not in encoded_inputs:
            encoded_inputs["position_ids"] = glm_position_ids(ids, bos, mask, gmask)
    difference = (max_length or 0) - len(ids)
    if padding_strategy == PaddingStrategy.DO_NOT_PAD or difference <= 0:
        return encoded_inputs
    left = (padding_side or tokenizer.padding_side) == "left"
    before, after = (difference, 0) if left else (0, difference)
    if "attention_mask" in encoded_inputs:
        mask_now = np.asarray(encoded_inputs["attention_mask"])
        if mask_now.ndim == 3:
            encoded_inputs["attention_mask"] = np.pad(
                mask_now, [(0, 0), (before, after), (before, after)], constant_values=True
            )
        else:  # a caller's own 1-D mask (1 = real token)
            encoded_inputs["attention_mask"] = [0] * before + list(mask_now) + [0] * after
    if "position_ids" in encoded_inputs:
        positions = np.asarray(encoded_inputs["position_ids"])
        width = [(0, 0), (before, after)] if positions.ndim == 2 else [(before, after)]
        encoded_inputs["position_ids"] = np.pad(positions, width)
    for key, value in (("token_type_ids", tokenizer.pad_token_type_id), ("special_tokens_mask", 1)):
        if key in encoded_inputs:
            encoded_inputs[key] = [value] * before + list(encoded_inputs[key]) + [value] * after
    encoded_inputs[main] = [tokenizer.pad_token_id] * before + ids + [tokenizer.pad_token_id] * after
    return encoded_inputs
