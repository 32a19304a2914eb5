"""Native ChatGLM-6B (GLM v1) for transformers: ``ChatGLMV1Model`` and ``ChatGLMV1ForCausalLM``.

Parameter names are THUDM's (``transformer.layers.N.attention.query_key_value`` ...), so official
checkpoints load directly and LoRA targets keep their familiar names. Layout is batch-first.

Masks/positions (see ``masks.py``): forward accepts a v1 4-D bool mask (True = masked) with [B,2,L]
``position_ids`` (what the v1 tokenizer returns; also how packed rows are fed), or a plain 2-D
padding mask (1 = real), or nothing; missing pieces are derived from ``input_ids`` as the original.
[B, L] ``position_ids`` without a mask mark a flattened batch (examples back to back, positions
restarting at 0): each example is masked and positioned as if alone (``masks.flattened_layout``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from glmtune.errors import GlmtuneError
from glmtune.models.cache_names import CACHE_FIELD, cache_from
from glmtune.models.chatglm_v1.attention import GLMBlock
from glmtune.models.chatglm_v1.configuration import ChatGLMV1Config
from glmtune.models.chatglm_v1.generation import V1GenerationMixin
from glmtune.models.chatglm_v1.masks import (
    SegmentMasks,
    flattened_layout,
    incremental_mask,
    masks_and_positions,
)
from glmtune.models.chatglm_v1.prefix_encoder import PrefixEncoder
from glmtune.models.chatglm_v1.rotary import rotary_cos_sin


class ChatGLMV1PreTrainedModel(PreTrainedModel):
    glmtune_family = "chatglm"  # the model family (``glmtune.models.families.model_family``), as tokenizers say
    config_class = ChatGLMV1Config
    config: ChatGLMV1Config
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GLMBlock"]
    _skip_keys_device_placement = ["cache", "past_key_values"]
    _supports_sdpa = True
    _keys_to_ignore_on_load_unexpected = [r"rotary_emb\.inv_freq"]


class ChatGLMV1Model(ChatGLMV1PreTrainedModel):
    """Embeddings, GLM blocks, final LayerNorm; optional P-Tuning v2 prefix (``prefix_encoder``)."""

    def __init__(self, config: ChatGLMV1Config) -> None:
        super().__init__(config)
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(GLMBlock(config, i) for i in range(config.num_layers))
        self.final_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.prefix_encoder = PrefixEncoder(config) if config.pre_seq_len else None
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.word_embeddings = value

    @property
    def pre_seq_len(self) -> int:
        return self.prefix_encoder.pre_seq_len if self.prefix_encoder is not None else 0

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        """``cache`` (transformers >= 5.24's name) and ``past_key_values`` (earlier releases) are the same thing."""
        cache = cache_from({"cache": cache, "past_key_values": past_key_values})
        if inputs_embeds is None:
            if input_ids is None:
                raise GlmtuneError("pass input_ids or inputs_embeds")
            inputs_embeds = self.word_embeddings(input_ids)
        batch, length = inputs_embeds.shape[:2]
        cache_asked = use_cache
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training:
            use_cache, cache = False, None
        if use_cache and cache is None:
            cache = DynamicCache()
        # the P-Tuning prefix never enters the cache: it is put in front of every layer's keys on each call
        real_past = cache.get_seq_length() if cache is not None else 0
        n_prefix = self.pre_seq_len
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | list[tuple[None, None]]
        prefix_kv = self.prefix_encoder(batch, inputs_embeds.dtype) if n_prefix else [(None, None)] * len(self.layers)
        if position_ids is None and real_past and cache is not None:
            position_ids = _continue_positions(cache, length)
        mask: torch.Tensor | SegmentMasks
        if (position_ids is not None and position_ids.dim() == 2 and attention_mask is None and not real_past
                and input_ids is not None):
            if cache_asked:
                raise GlmtuneError("use_cache=True with [batch, length] position_ids (a flattened batch): "
                                   "pass [batch, 2, length] positions to continue a sequence")
            mask, position_ids = flattened_layout(input_ids, position_ids, self.config)
            cache, use_cache = None, False  # a flattened row is no conversation to continue
        else:
            mask, position_ids = self._mask_and_positions(input_ids, attention_mask, position_ids, batch, length,
                                                          real_past, inputs_embeds.device)
        if n_prefix and isinstance(mask, SegmentMasks):
            mask = mask.with_prefix(n_prefix)
        elif n_prefix:
            visible = torch.zeros(batch, 1, length, n_prefix, dtype=torch.bool, device=mask.device)
            mask = torch.cat((visible, mask), dim=-1)
        if cache is not None:
            cache.glm_last_positions = position_ids[..., -1:]
        cos, sin = rotary_cos_sin(position_ids, self.config.head_dim, inputs_embeds.dtype, self.config)
        hidden = inputs_embeds
        all_hidden: tuple[torch.Tensor, ...] = ()
        for layer, (pkey, pvalue) in zip(self.layers, prefix_kv):
            if output_hidden_states:
                all_hidden += (hidden,)
            hidden = layer(hidden, mask, cos, sin, pkey, pvalue, cache=cache)
        hidden = self.final_layernorm(hidden)
        if output_hidden_states:
            all_hidden += (hidden,)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden, hidden_states=all_hidden or None, **{CACHE_FIELD: cache if use_cache else None}
        )

    def _mask_and_positions(
        self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, position_ids: torch.Tensor | None,
        batch: int, length: int, real_past: int, device: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask4d = mask2d = None
        if attention_mask is not None:
            if attention_mask.dim() == 4:
                mask4d = attention_mask if attention_mask.dtype == torch.bool else attention_mask < 0
                mask4d = mask4d[:, :, -length:, :].to(device)
                if mask4d.shape[-1] != real_past + length:
                    raise GlmtuneError(f"4-D attention_mask covers {mask4d.shape[-1]} keys; expected {real_past + length}")
            elif attention_mask.dim() == 2:
                mask2d = attention_mask.to(device)
            else:
                raise GlmtuneError(f"attention_mask must be 2-D [B, L] or 4-D [B, 1, L, L], got {attention_mask.dim()}-D")
        if position_ids is not None:
            if position_ids.dim() != 3 or position_ids.shape[1] != 2:
                raise GlmtuneError(f"ChatGLM-6B position_ids must be [batch, 2, length] (or [batch, length] restarting per "
                                  f"example, without attention_mask, for a flattened batch), got {list(position_ids.shape)}")
            position_ids = position_ids[..., -length:].to(device)
        if real_past == 0:
            if mask4d is None or position_ids is None:
                if input_ids is None:
                    raise GlmtuneError("with inputs_embeds, pass a 4-D attention_mask and [B,2,L] position_ids")
                derived_mask, derived_pos = masks_and_positions(input_ids, self.config, mask2d)
                mask4d = derived_mask if mask4d is None else mask4d
                position_ids = derived_pos if position_ids is None else position_ids
            return mask4d, position_ids
        if mask4d is None:
            mask4d = incremental_mask(mask2d, batch, length, real_past, device)
        if position_ids is None:
            raise GlmtuneError("a forward with a KV cache needs position_ids [B, 2, L] (generate computes them)")
        return mask4d, position_ids


def _continue_positions(cache: Any, length: int) -> torch.Tensor | None:
    """Positions of ``length`` tokens generated after the cached ones: same position, block + 1, + 2, ..."""
    last = getattr(cache, "glm_last_positions", None)
    if last is None:
        return None
    step = torch.arange(1, length + 1, device=last.device)
    return torch.stack((last[:, 0].expand(-1, length), last[:, 1] + step), dim=1)


class ChatGLMV1ForCausalLM(V1GenerationMixin, ChatGLMV1PreTrainedModel, GenerationMixin):
    """The v1 model with its (tied by default) LM head; loss = mean CE of shifted labels != -100."""

    _tied_weights_keys = {"lm_head.weight": "transformer.word_embeddings.weight"}

    def __init__(self, config: ChatGLMV1Config) -> None:
        super().__init__(config)
        self.transformer = ChatGLMV1Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.word_embeddings = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               cache=cache_from({"cache": cache, "past_key_values": past_key_values}),
                               inputs_embeds=inputs_embeds, use_cache=use_cache,
                               output_hidden_states=output_hidden_states)
        hidden = out.last_hidden_state
        if isinstance(logits_to_keep, torch.Tensor) and labels is None:
            hidden = hidden[:, logits_to_keep]  # positions to keep (transformers' 1-D convention)
        elif logits_to_keep and labels is None:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = _shifted_lm_loss(logits, labels, kwargs.get("num_items_in_batch"))
        return CausalLMOutputWithPast(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                      **{CACHE_FIELD: out.get(CACHE_FIELD)})


def _shifted_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: Any = None
) -> torch.Tensor:
    """Mean CE of next tokens (labels != -100); over ``num_items_in_batch`` when the Trainer passes it.

    The Trainer sees ``**kwargs`` in ``forward`` and so does not divide by gradient-accumulation steps
    itself: the sum over ``num_items_in_batch`` (as transformers' own causal LMs do) keeps accumulated
    steps token-weighted, and matches ``glmtune.train.loss.chunked_causal_lm_loss``.
    """
    shift_logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].to(logits.device).reshape(-1)
    if num_items_in_batch is None:
        return F.cross_entropy(shift_logits, shift_labels, ignore_index=-100)
    total = F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
    if isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def register_auto() -> None:
    """Make ``AutoConfig``/``AutoModelForCausalLM`` know our model type in this process."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        AutoConfig.register(ChatGLMV1Config.model_type, ChatGLMV1Config)
        AutoModelForCausalLM.register(ChatGLMV1Config, ChatGLMV1ForCausalLM)
    except ValueError:  # already registered
        pass


register_auto()
