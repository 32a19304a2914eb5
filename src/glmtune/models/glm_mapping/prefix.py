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

The prefix never enters the KV cache and no ``forward`` is overridden: a forward pre-hook on the
inner ``GlmModel`` (a public PyTorch hook) computes the prefix once per forward and hands it to every
layer as the ``glmtune_prefix`` keyword, which transformers passes through to the attention function.
A registered attention implementation (``glmtune_prefix_sdpa`` / ``glmtune_prefix_eager``, through
transformers' public ``AttentionInterface``) puts the prefix in front of the layer's keys/values and
widens the mask by ``pre_seq_len`` always-visible columns. So ``generate`` (with or without a cache),
training, gradient checkpointing (the recomputed layer gets the same keyword) and a renamed cache
argument (``past_key_values`` -> ``cache`` in transformers 5.24) all work without glmtune touching the
cache: the cache holds the real tokens only, and positions are the plain 0, 1, ... of the tokens.
``glmtune_prefix_sdpa`` also takes padding-free batches (several examples in one unpadded row, positions
restarting per example): each example attends to the prefix and to itself only (``.flat_attention``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface, GlmForCausalLM
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.glm.modeling_glm import eager_attention_forward

from glmtune.errors import GlmtuneError
from glmtune.models.glm_mapping.flat_attention import flat_mask, per_segment, segments
from glmtune.models.ptuning_layout import OFFICIAL_PREFIX, PREFIX_KEY, read_ptuning_config

PREFIX_DROPOUT = 0.1  # THUDM applies Dropout(0.1) to the prefix keys/values (training only)
SUPPORTS_CHECKPOINTING = True  # read by the ptuning method: the prefix also works without a cache
ATTN_PREFIX = "glmtune_prefix_"  # + the wrapped implementation: glmtune_prefix_sdpa / glmtune_prefix_eager
WRAPPED = ("sdpa", "eager")


def _with_prefix_columns(mask: Any, q_len: int, kv_len: int, n_prefix: int, base: str, ref: torch.Tensor) -> Any:
    """The layer's mask over ``[prefix, keys]``: every prefix slot visible, the rest as given (or causal)."""
    if mask is not None and mask.shape[-1] == kv_len + n_prefix:
        return mask  # a mask that already covers the prefix
    if mask is None:  # sdpa's implicit mask: all keys for one query, else causal from the first key
        # (transformers leaves it out only when q == kv, for a single query, or on the first forward
        # into an empty static cache, where sdpa's is_causal aligns queries with the first keys)
        if q_len == 1:
            allowed = torch.ones(1, kv_len, dtype=torch.bool, device=ref.device)
        else:
            allowed = torch.arange(kv_len, device=ref.device).unsqueeze(0) <= torch.arange(
                q_len, device=ref.device).unsqueeze(1)
        mask = allowed[None, None] if base != "eager" else torch.zeros(
            1, 1, q_len, kv_len, dtype=ref.dtype, device=ref.device).masked_fill(~allowed, torch.finfo(ref.dtype).min)
    if mask.dtype == torch.bool:
        visible = mask.new_ones(*mask.shape[:-1], n_prefix)
    else:
        visible = mask.new_zeros(*mask.shape[:-1], n_prefix)
    return torch.cat([visible, mask], dim=-1)


def _prefix_attention(base: str) -> Any:
    """An attention function that prepends ``glmtune_prefix[layer]`` (unrotated) to the keys/values."""

    def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, glmtune_prefix: Any = None, **kwargs: Any) -> Any:
        if glmtune_prefix is not None:
            spans = None
            if base == "sdpa" and attention_mask is None and query.shape[-2] == key.shape[-2]:
                spans = segments(kwargs.get("position_ids"), query.shape[-2])  # a flattened batch
            if spans is not None:  # each example alone: its own causal keys plus the whole prefix

                def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                    return attention(module, q, k, v, None, glmtune_prefix, **{**kwargs, "position_ids": None})[0]

                return per_segment(query, key, value, spans, attend), None
            prefix_key, prefix_value = glmtune_prefix[module.layer_idx]  # [groups, P, d]
            shape = (key.shape[0], *prefix_key.shape)
            attention_mask = _with_prefix_columns(attention_mask, query.shape[-2], key.shape[-2],
                                                  prefix_key.shape[-2], base, query)
            key = torch.cat([prefix_key.to(key.device, key.dtype).unsqueeze(0).expand(shape), key], dim=2)
            value = torch.cat([prefix_value.to(value.device, value.dtype).unsqueeze(0).expand(shape), value], dim=2)
        inner = eager_attention_forward if base == "eager" else ALL_ATTENTION_FUNCTIONS[base]
        return inner(module, query, key, value, attention_mask, **kwargs)

    return attention


for _base in WRAPPED:  # without the glmtune_prefix keyword these behave exactly like the wrapped ones
    AttentionInterface.register(ATTN_PREFIX + _base, _prefix_attention(_base))
    # sdpa: no mask for an unpadded, cache-free batch (flattened examples are split at position restarts)
    AttentionMaskInterface.register(ATTN_PREFIX + _base, flat_mask if _base == "sdpa" else ALL_MASK_ATTENTION_FUNCTIONS[_base])


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

    def forward(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(key, value)] per layer, each ``[groups, pre_seq_len, head_dim]`` (broadcast over the batch)."""
        ids = torch.arange(self.pre_seq_len, device=self.embedding.weight.device)
        table = self.embedding(ids)
        if self.prefix_projection:
            table = self.trans(table)
        table = self.dropout(table.view(self.pre_seq_len, self.num_layers * 2, self.groups, self.head_dim))
        table = table.permute(1, 2, 0, 3)  # [layers*2, groups, P, d]
        return [(table[2 * i], table[2 * i + 1]) for i in range(self.num_layers)]


def _hand_prefix_to_layers(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook of the inner ``GlmModel``: this forward's prefix, for every attention call."""
    encoder = getattr(module, "glmtune_prefix_encoder", None)
    attn = module.config._attn_implementation
    if encoder is not None and not attn.startswith(ATTN_PREFIX):
        raise GlmtuneError(f"the P-Tuning prefix needs the {ATTN_PREFIX}sdpa or {ATTN_PREFIX}eager attention "
                           f"that enable_prefix sets; this model was switched to {attn}, which would drop the prefix")
    if encoder is not None and "glmtune_prefix" not in kwargs:
        kwargs = {**kwargs, "glmtune_prefix": encoder()}
    return args, kwargs


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
    old = getattr(model, "prefix_encoder", None)
    if old is not None:
        old.glmtune_hook.remove()
    model.prefix_encoder = encoder  # a submodule: saved, moved and trained with the model
    object.__setattr__(model.model, "glmtune_prefix_encoder", encoder)  # a reference, not a second submodule
    encoder.glmtune_hook = model.model.register_forward_pre_hook(_hand_prefix_to_layers, with_kwargs=True)
    attn = model.config._attn_implementation
    if not attn.startswith(ATTN_PREFIX):
        if attn not in WRAPPED:
            raise GlmtuneError(f"P-Tuning v2 needs sdpa or eager attention (this model uses {attn}); "
                               "load it with attn_implementation='sdpa'")
        model.set_attn_implementation(ATTN_PREFIX + attn)
    model.config.glmtune_prefix = {"pre_seq_len": encoder.pre_seq_len, "prefix_projection": encoder.prefix_projection,
                                   "prefix_hidden_size": encoder.prefix_hidden_size}
    return model


def has_prefix(model: Any) -> bool:
    """True for a Glm model that :func:`enable_prefix` gave a P-Tuning prefix."""
    return isinstance(getattr(model, "prefix_encoder", None), PrefixEncoder)


def prefix_parameters(model: Any) -> list[nn.Parameter]:
    """The trainable prefix parameters (freeze everything else for P-Tuning v2)."""
    if not has_prefix(model):
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
