"""Load a THUDM ChatGLM-6B (v1) folder, or one saved by glmtune, as ``ChatGLMV1ForCausalLM``.

The model is built on the meta device and filled tensor by tensor, shard by shard, in the target
dtype (a 6B fp16 checkpoint never needs a float32 copy). Tied ``lm_head.weight`` is taken from the
embedding whatever shard holds it; ``rotary_emb.inv_freq`` buffers are ignored (recomputed).
Quantised loads ("4bit"/"8bit") stream too, each weight quantised as it arrives
(``quantization.load_quantized``), the LM head left unquantised; only multi-device plans hand
transformers the whole read state dict.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from glmtune.errors import GlmtuneError
from glmtune.models.chatglm_v1.configuration import ChatGLMV1Config, config_from_thudm
from glmtune.models.chatglm_v1.modeling import ChatGLMV1ForCausalLM
from glmtune.models.families import read_folder_configs

PREFIX_PARAMS = "transformer.prefix_encoder."


def load_model(
    path: str | Path,
    dtype: Any = None,
    device_map: Any = None,
    quantization: str | None = None,
    rope_scaling: dict[str, Any] | None = None,
    pre_seq_len: int | None = None,
    prefix_projection: bool | None = None,
    attn_implementation: str | None = None,
    family: str | None = None,
    **kwargs: Any,
) -> ChatGLMV1ForCausalLM:
    """``ChatGLMV1ForCausalLM`` for checkpoint folder ``path`` (float32 on the CPU by default), in eval mode.

    ``pre_seq_len`` adds a fresh P-Tuning v2 prefix (kept if the checkpoint has one);
    ``rope_scaling`` is ``{"type": "linear"|"dynamic", "factor": F}``.
    """
    from glmtune.models.dtypes import target_dtype

    if kwargs.pop("trust_remote_code", False):
        raise GlmtuneError("trust_remote_code is never used by glmtune")
    if kwargs:
        raise GlmtuneError(f"unsupported load_model option(s) for ChatGLM-6B: {', '.join(sorted(kwargs))}")
    folder = Path(path)
    raw, _ = read_folder_configs(folder)
    if not raw:
        raise GlmtuneError(f"{folder} has no config.json")
    dtype_t = target_dtype(dtype, device_map, raw)
    config = config_from_thudm(raw, rope_scaling=rope_scaling, pre_seq_len=pre_seq_len,
                               prefix_projection=prefix_projection)
    config.dtype = dtype_t
    config._attn_implementation = attn_implementation or "sdpa"
    if quantization:
        model = _load_quantized(folder, config, dtype_t, device_map, quantization)
    else:
        model = _load_streamed(folder, config, dtype_t, device_map)
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    return model.eval()


def _tensors(folder: Path, config: ChatGLMV1Config, dtype: Any) -> Iterator[tuple[str, torch.Tensor]]:
    from glmtune.models.checkpoint_io import iter_checkpoint_tensors

    def skip(key: str) -> bool:  # dropped before the read/cast: a tied 6B lm_head is 1-2 GB
        return key.endswith("rotary_emb.inv_freq") or (key == "lm_head.weight" and config.tie_word_embeddings)

    for key, tensor in iter_checkpoint_tensors(folder, dtype, skip):
        if key.startswith(PREFIX_PARAMS) and not config.pre_seq_len:
            raise GlmtuneError(f"{folder} holds {key} but its config has no pre_seq_len")
        yield key, tensor


def _load_streamed(folder: Path, config: ChatGLMV1Config, dtype: Any, device_map: Any) -> ChatGLMV1ForCausalLM:
    device = _single_device(device_map)
    if device is None:
        raise GlmtuneError(f"device_map={device_map!r}: ChatGLM-6B loads onto one device ('cpu', 'cuda:0', ...)")
    with torch.device("meta"):
        model = ChatGLMV1ForCausalLM(config)
    expected = dict(model.named_parameters())
    seen: set[str] = set()
    for key, tensor in _tensors(folder, config, dtype):
        if key not in expected:
            raise GlmtuneError(f"{folder}: checkpoint weight {key} has no place in ChatGLM-6B")
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise GlmtuneError(f"{key}: checkpoint shape {tuple(tensor.shape)} != model {tuple(expected[key].shape)}")
        model.load_state_dict({key: tensor.to(device=device, dtype=dtype)}, strict=False, assign=True)
        seen.add(key)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.transformer.word_embeddings.weight
        seen.add("lm_head.weight")
    missing = sorted(k for k in set(expected) - seen if not k.startswith(PREFIX_PARAMS))
    if missing:
        raise GlmtuneError(f"{folder}: the checkpoint lacks {len(missing)} weight(s), e.g. {missing[:3]}")
    encoder = model.transformer.prefix_encoder
    if encoder is not None and any(p.is_meta for p in encoder.parameters()):
        fresh_prefix(encoder, device, dtype)
    return model


def _single_device(device_map: Any) -> torch.device | None:
    """The one device ``device_map`` names (None -> CPU); None for multi-device plans (unsupported here)."""
    if device_map is None:
        return torch.device("cpu")
    if device_map == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if isinstance(device_map, (int, torch.device)) or isinstance(device_map, str):
        return torch.device(device_map)
    if isinstance(device_map, dict) and set(device_map) == {""}:
        return torch.device(device_map[""])
    return None


def fresh_prefix(encoder: nn.Module, device: Any, dtype: Any) -> None:
    """Materialise and initialise a prefix encoder the checkpoint does not hold (nn defaults: N(0,1) table)."""
    encoder.to_empty(device=device)
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, (nn.Embedding, nn.Linear)):
                module.reset_parameters()
    encoder.to(dtype=dtype)


def _load_quantized(folder: Path, config: ChatGLMV1Config, dtype: Any, device_map: Any,
                    quantization: str) -> ChatGLMV1ForCausalLM:
    from glmtune.models.checkpoint_io import checkpoint_shapes
    from glmtune.models.quantization import load_quantized, load_quantized_dispatched

    _check_prefix(config, checkpoint_shapes(folder))  # headers only: refuse before reading any weight
    device = _single_device(device_map)
    if device is None:
        state = dict(_tensors(folder, config, dtype))
        return load_quantized_dispatched(ChatGLMV1ForCausalLM, config, state.items(), quantization, dtype, device_map)
    with torch.device("meta"):
        model = ChatGLMV1ForCausalLM(config)
    seen = load_quantized(model, _tensors(folder, config, dtype), quantization, dtype, device)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.transformer.word_embeddings.weight
        seen.add("lm_head.weight")
    missing = sorted(set(dict(model.named_parameters())) - seen)
    if missing:
        raise GlmtuneError(f"{folder}: the checkpoint lacks {len(missing)} weight(s), e.g. {missing[:3]}")
    return model


def _check_prefix(config: ChatGLMV1Config, keys: Any) -> None:
    if config.pre_seq_len and not any(k.startswith(PREFIX_PARAMS) for k in keys):
        raise GlmtuneError("a fresh P-Tuning prefix cannot be added while loading quantised; "
                           "load, then call chatglm_v1.prefix.enable_prefix")
