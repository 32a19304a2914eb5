"""Generation hooks for GLM v1: slice to the uncached tokens and continue v1's 2-D positions.

New tokens keep position ``mask_position`` and their block positions go on 2, 3, ... (as the
original ``prepare_inputs_for_generation``). The 2-D padding mask grows as usual in transformers;
a v1 4-D mask given to ``generate`` is reduced to that 2-D mask first (transformers 5 only takes 2-D
there), and [B,2,L] ``position_ids`` grow the way the original ``_update_model_kwargs_for_generation`` does.
"""

from __future__ import annotations

from typing import Any

import torch

from glmtune.models.cache_names import cache_from
from glmtune.models.chatglm_v1.masks import last_positions, valid_from_mask


class V1GenerationMixin:
    """Mixed into ``ChatGLMV1ForCausalLM`` ahead of transformers' ``GenerationMixin``."""

    config: Any

    def generate(self, inputs: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """transformers' ``generate``; a v1 4-D bool mask is turned into the 2-D padding mask it encodes.

        transformers 5 only takes 2-D masks here. The mask the v1 tokenizer builds is fully determined by
        the ids and their padding, so nothing is lost; [B,2,L] ``position_ids`` are kept and grown.
        """
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() == 4:
            kwargs["attention_mask"] = valid_from_mask(mask, mask.shape[0], mask.shape[-1], mask.device).long()
        return super().generate(inputs, **kwargs)  # type: ignore[misc]

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The uncached tokens with v1's positions; the cache is read under either of transformers' names."""
        cache = cache_from(kwargs)
        real_past = cache.get_seq_length() if cache is not None else 0  # the cache holds real tokens only
        model_inputs: dict[str, Any] = {"cache": cache, "use_cache": use_cache}
        if real_past == 0:
            if inputs_embeds is not None and kwargs.get("is_first_iteration", True):
                model_inputs["inputs_embeds"] = inputs_embeds
            model_inputs["input_ids"] = input_ids
            v1_positions = position_ids if position_ids is not None and position_ids.dim() == 3 else None
            model_inputs.update(attention_mask=attention_mask, position_ids=v1_positions)
            return model_inputs
        new_ids = input_ids[:, real_past:]
        q_len = new_ids.shape[1]
        if position_ids is not None and position_ids.dim() == 3:
            position_ids = position_ids[..., -q_len:]
        else:  # none given, or transformers' own 2-D positions: v1 computes its own
            valid = valid_from_mask(attention_mask, *input_ids.shape, input_ids.device)
            position_ids = last_positions(input_ids, self.config, valid, q_len)
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = attention_mask[:, :, -q_len:, :]
        model_inputs.update(input_ids=new_ids.contiguous(), attention_mask=attention_mask, position_ids=position_ids)
        return model_inputs

    def _update_model_kwargs_for_generation(
        self, outputs: Any, model_kwargs: dict[str, Any], is_encoder_decoder: bool = False, num_new_tokens: int = 1
    ) -> dict[str, Any]:
        """As transformers, except that [B,2,L] positions grow as v1's: same position, block + 1."""
        positions = model_kwargs.get("position_ids")
        pos3d = positions if positions is not None and positions.dim() == 3 else None
        if pos3d is not None:
            model_kwargs["position_ids"] = None
        model_kwargs = super()._update_model_kwargs_for_generation(  # type: ignore[misc]
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        if pos3d is not None:
            for _ in range(num_new_tokens):
                step = pos3d[..., -1:].clone()
                step[:, 1] += 1
                pos3d = torch.cat((pos3d, step), dim=-1)
            model_kwargs["position_ids"] = pos3d
        return model_kwargs
