"""P-Tuning v2 for ChatGLM2/3 running on transformers' ``GlmForCausalLM``.

A learned key/value prefix of ``pre_seq_len`` slots per layer is pre-filled into the KV cache
before the first real token, exactly as THUDM's ``get_prompt`` does: the prefix keys are NOT
rotated, the real tokens keep positions 0, 1, … (not shifted by ``pre_seq_len``) and every query
may attend to every prefix slot. The prefix tensor ``[pre_seq_len, num_layers*2*groups*kv_channels]``
is read as ``[pre_seq_len, num_layers*2, groups, kv_channels]``: layer i's key is slot 2i, its
value 2i+1 (THUDM's ``permute([2, 1, 0, 3, 4]).split(2)``).

API (small on purpose; the ``ptuning`` tuning method wraps it):
``enable_prefix(model, pre_seq_len, prefix_projection=False, prefix_hidden_size=None)``,
``load_ptuning(model, folder)``, ``save_ptuning(model, folder)``, ``prefix_parameters(model)``.
Folders use the official layout: ``config.json`` with ``pre_seq_len``/``prefix_projection`` and
``pytorch_model.bin`` holding ``transformer.prefix_encoder.embedding.weight`` (+ ``trans.*`` with
a projection).

Two ways to hand the prefix to attention, with the same math: with a KV cache (generation) the
prefix is pre-filled into the cache; without one (``use_cache=False``, and always under gradient
checkpointing, whose layers drop the cache) the per-layer prefix keys/values travel in the
``glmtune_prefix`` kwarg to a registered attention implementation (``glmtune_prefix_sdpa`` /
``glmtune_prefix_eager``) that puts them in front of the layer's keys/values. Nothing is stored, so
the backward recomputation of checkpointed layers (non-reentrant) sees the same prefix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface, DynamicCache, GlmForCausalLM
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.glm.modeling_glm import eager_attention_forward

from glmtune.errors import GlmtuneError
from glmtune.models.ptuning_layout import OFFICIAL_PREFIX, PREFIX_KEY, read_ptuning_config

PREFIX_DROPOUT = 0.1  # THUDM applies Dropout(0.1) to the prefix keys/values (training only)
SUPPORTS_CHECKPOINTING = True  # read by the ptuning method: the prefix also works without a cache
ATTN_PREFIX = "glmtune_prefix_"  # + the wrapped implementation: glmtune_prefix_sdpa / glmtune_prefix_eager
WRAPPED = ("sdpa", "eager")


def _prefix_attention(base: str) -> Any:
    """An attention function that prepends ``glmtune_prefix[layer]`` (unrotated) to the keys/values."""

    def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, glmtune_prefix: Any = None, **kwargs: Any) -> Any:
        if glmtune_prefix is not None:
            prefix_key, prefix_value = glmtune_prefix[module.layer_idx]
            key = torch.cat([prefix_key.to(key.dtype), key], dim=2)
            value = torch.cat([prefix_value.to(value.dtype), value], dim=2)
        inner = eager_attention_forward if base == "eager" else ALL_ATTENTION_FUNCTIONS[base]
        return inner(module, query, key, value, attention_mask, **kwargs)

    return attention


for _base in WRAPPED:  # the cache path (no glmtune_prefix kwarg) behaves exactly like the wrapped one
    AttentionInterface.register(ATTN_PREFIX + _base, _prefix_attention(_base))
    AttentionMaskInterface.register(ATTN_PREFIX + _base, ALL_MASK_ATTENTION_FUNCTIONS[_base])


class PrefixEncoder(nn.Module):
    """Prefix ids -> per-layer keys and values, optionally through THUDM's two-layer MLP."""

    def __init__(self, config: Any, pre_seq_len: int, prefix_projection: bool = False,
                 prefix_hidden_size: int | None = None) -> None:
        super().__init__()
        self.pre_seq_len = int(pre_seq_len)
        self.prefix_projection = bool(prefix_projection)
        self.num_layers = config.num_hidden_layers
        self.groups = config.num_key_value_heads
        self.head_dim = config.head_dim
        width = self.num_layers * 2 * self.groups * self.head_dim
        if self.prefix_projection:
            hidden = prefix_hidden_size or config.hidden_size
            self.prefix_hidden_size = hidden
            self.embedding = nn.Embedding(self.pre_seq_len, config.hidden_size)
            self.trans = nn.Sequential(nn.Linear(config.hidden_size, hidden), nn.Tanh(), nn.Linear(hidden, width))
        else:
            self.prefix_hidden_size = None
            self.embedding = nn.Embedding(self.pre_seq_len, width)
        self.dropout = nn.Dropout(PREFIX_DROPOUT)

    def forward(self, batch_size: int, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(key, value)] per layer, each ``[batch, groups, pre_seq_len, head_dim]``."""
        ids = torch.arange(self.pre_seq_len, device=self.embedding.weight.device)
        table = self.embedding(ids)
        if self.prefix_projection:
            table = self.trans(table)
        table = self.dropout(table.view(self.pre_seq_len, self.num_layers * 2, self.groups, self.head_dim))
        table = table.permute(1, 2, 0, 3).to(dtype)  # [layers*2, groups, P, d]
        table = table.unsqueeze(1).expand(-1, batch_size, -1, -1, -1)
        return [(table[2 * i], table[2 * i + 1]) for i in range(self.num_layers)]


class GlmPrefixForCausalLM(GlmForCausalLM):
    """``GlmForCausalLM`` with the learned prefix (P-Tuning v2): in the KV cache, or via kwargs without one."""

    prefix_encoder: PrefixEncoder

    def _fill_prefix(self, cache: Any, batch_size: int) -> Any:
        cache = cache if cache is not None else DynamicCache(config=self.config)
        dtype = self.model.embed_tokens.weight.dtype
        for layer, (key, value) in enumerate(self.prefix_encoder(batch_size, dtype)):
            cache.update(key, value, layer)
        return cache

    def _prefix_mask(self, attention_mask: Any, batch: int, q_len: int, ref: torch.Tensor) -> torch.Tensor:
        """4D mask over ``[prefix, tokens]``: causal + padding, every prefix slot visible (as the cache path)."""
        n_prefix = self.prefix_encoder.pre_seq_len
        if attention_mask is not None and attention_mask.dim() != 2:
            return attention_mask  # an already prepared 4D mask (it must cover the prefix columns)
        if attention_mask is not None:
            attention_mask = attention_mask.to(device=ref.device, dtype=torch.bool)
        base = self.config._attn_implementation[len(ATTN_PREFIX):]
        return ALL_MASK_ATTENTION_FUNCTIONS[base](
            batch_size=batch, q_length=q_len, kv_length=n_prefix + q_len, q_offset=n_prefix, kv_offset=0,
            attention_mask=attention_mask, allow_is_causal_skip=False,
            dtype=self.model.embed_tokens.weight.dtype, device=ref.device, config=self.config)

    def forward(self, input_ids: Any = None, attention_mask: Any = None, position_ids: Any = None,
                past_key_values: Any = None, inputs_embeds: Any = None, labels: Any = None,
                use_cache: bool | None = None, logits_to_keep: int | torch.Tensor = 0, **kwargs: Any) -> Any:
        ref = input_ids if input_ids is not None else inputs_embeds
        batch, q_len = ref.shape[0], ref.shape[1]
        n_prefix = self.prefix_encoder.pre_seq_len
        want_cache = use_cache if use_cache is not None else self.config.use_cache
        checkpointing = self.training and self.model.gradient_checkpointing
        empty = past_key_values is None or past_key_values.get_seq_length() == 0
        wrapped = self.config._attn_implementation in [ATTN_PREFIX + b for b in WRAPPED]
        if checkpointing and not (empty and wrapped):
            raise GlmtuneError("P-Tuning with gradient checkpointing needs sdpa or eager attention and no "
                               f"past_key_values (attention: {self.config._attn_implementation})")
        via_kwargs = empty and wrapped and (checkpointing or not want_cache)  # no cache at all
        if empty and not via_kwargs:
            past_key_values = self._fill_prefix(past_key_values, batch)
        seen = 0 if via_kwargs else past_key_values.get_seq_length() - n_prefix  # real tokens already cached
        if attention_mask is not None and attention_mask.dim() == 2:
            if attention_mask.shape[1] == seen + q_len:
                ones = attention_mask.new_ones(batch, n_prefix)
                attention_mask = torch.cat([ones, attention_mask], dim=1)
            elif attention_mask.shape[1] != seen + q_len + n_prefix:
                raise ValueError(f"attention_mask has {attention_mask.shape[1]} columns; expected {seen + q_len}")
        if via_kwargs:
            kwargs["glmtune_prefix"] = self.prefix_encoder(batch, self.model.embed_tokens.weight.dtype)
            attention_mask = self._prefix_mask(attention_mask, batch, q_len, ref)
            past_key_values = None
        if position_ids is None:
            position_ids = (torch.arange(q_len, device=ref.device) + seen).unsqueeze(0).expand(batch, -1)
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              past_key_values=past_key_values, inputs_embeds=inputs_embeds, labels=labels,
                              use_cache=not via_kwargs, logits_to_keep=logits_to_keep, **kwargs)
        if not want_cache:
            out.past_key_values = None
        return out


def enable_prefix(model: Any, pre_seq_len: int, prefix_projection: bool = False,
                  prefix_hidden_size: int | None = None) -> Any:
    """Turn a mapped Glm model into a P-Tuning v2 model in place (new prefix, N(0,1) init) and return it.

    sdpa/eager attention becomes ``glmtune_prefix_sdpa``/``_eager`` (the same math plus the cache-free prefix)."""
    if not isinstance(model, GlmForCausalLM):
        raise GlmtuneError(f"P-Tuning v2 needs a GlmForCausalLM (ChatGLM2/3), got {type(model).__name__}")
    if int(pre_seq_len) < 1:
        raise GlmtuneError(f"pre_seq_len must be >= 1 (got {pre_seq_len})")
    encoder = PrefixEncoder(model.config, pre_seq_len, prefix_projection, prefix_hidden_size)
    encoder.to(device=model.model.embed_tokens.weight.device)
    encoder.train(model.training)  # dropout only while the model trains
    model.__class__ = GlmPrefixForCausalLM
    model.prefix_encoder = encoder
    if model.config._attn_implementation in WRAPPED:  # flash/flex keep the cache path (no checkpointing)
        model.config._attn_implementation = ATTN_PREFIX + model.config._attn_implementation
    model.config.glmtune_prefix = {"pre_seq_len": encoder.pre_seq_len, "prefix_projection": encoder.prefix_projection,
                                   "prefix_hidden_size": encoder.prefix_hidden_size}
    return model


def prefix_parameters(model: Any) -> list[nn.Parameter]:
    """The trainable prefix parameters (freeze everything else for P-Tuning v2)."""
    if not isinstance(model, GlmPrefixForCausalLM):
        raise GlmtuneError("the model has no P-Tuning prefix; call enable_prefix first")
    return list(model.prefix_encoder.parameters())


def load_prefix_state(model: Any, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy official-named prefix tensors (``transformer.prefix_encoder.*``) into the model's prefix."""
    own = {k[len(OFFICIAL_PREFIX):]: v for k, v in state.items() if k.startswith(OFFICIAL_PREFIX)}
    if PREFIX_KEY[len(OFFICIAL_PREFIX):] not in own:
        raise GlmtuneError(f"{source} has no {PREFIX_KEY}")
    missing, unexpected = model.prefix_encoder.load_state_dict(own, strict=False)
    if missing or unexpected:
        raise GlmtuneError(f"{source}: prefix weights do not fit (missing {missing}, unexpected {unexpected})")


def load_ptuning(model: Any, folder: str | Path) -> Any:
    """Attach the prefix stored in an official ChatGLM P-Tuning v2 folder to ``model`` and return it."""
    from glmtune.models.checkpoint_io import iter_checkpoint_tensors

    settings = read_ptuning_config(folder)
    state = dict(iter_checkpoint_tensors(folder))
    enable_prefix(model, **settings)
    width = model.prefix_encoder.embedding.weight.shape
    if PREFIX_KEY in state and tuple(state[PREFIX_KEY].shape) != tuple(width):
        raise GlmtuneError(f"{folder}: prefix shape {tuple(state[PREFIX_KEY].shape)} does not fit this model "
                           f"(expected {tuple(width)})")
    load_prefix_state(model, state, str(folder))
    return model


def save_ptuning(model: Any, folder: str | Path) -> Path:
    """Write the prefix in the official layout (atomically): config.json + pytorch_model.bin."""
    from glmtune.models.glm_mapping.config_map import source_record
    from glmtune.utils.io import atomic_dir

    prefix_parameters(model)  # raises a clear error when there is no prefix
    enc: PrefixEncoder = model.prefix_encoder
    record = source_record(model.config) or {}
    cfg = dict(record.get("source_config") or {"model_type": "chatglm"})
    cfg.update(pre_seq_len=enc.pre_seq_len, prefix_projection=enc.prefix_projection)
    if enc.prefix_hidden_size:
        cfg["prefix_hidden_size"] = enc.prefix_hidden_size
    state = {OFFICIAL_PREFIX + k: v.detach().to("cpu").contiguous().clone()
             for k, v in enc.state_dict().items()}
    with atomic_dir(folder) as tmp:
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        torch.save(state, tmp / "pytorch_model.bin")
    return Path(folder)
