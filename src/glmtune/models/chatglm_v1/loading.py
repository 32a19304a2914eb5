"""Load a THUDM ChatGLM-6B (v1) folder, or one saved by glmtune, as ``ChatGLMV1ForCausalLM``.

The load is ``ChatGLMV1ForCausalLM.from_pretrained(folder, config=<our config>)``: the parameter
names are THUDM's, so transformers reads the checkpoint as is (shards, safetensors, meta-device
init, dtype, ``device_map``, bitsandbytes ``quantization_config``, ZeRO-3); the ``rotary_emb.inv_freq``
buffers THUDM files carry are ignored (recomputed). The tied ``lm_head.weight`` THUDM files also store
is read like any weight and replaced by the embedding when transformers ties them at the end of the
load (a name-level mapping cannot skip it: transformers loads a key the model has whatever it maps to).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from glmtune.errors import GlmtuneError
from glmtune.models.chatglm_v1.configuration import ChatGLMV1Config, config_from_thudm
from glmtune.models.chatglm_v1.modeling import ChatGLMV1ForCausalLM
from glmtune.models.families import read_folder_configs

PREFIX_PARAMS = "transformer.prefix_encoder."
PASSTHROUGH = ("low_cpu_mem_usage", "max_memory", "offload_folder", "offload_buffers")


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
    extra = {k: kwargs.pop(k) for k in PASSTHROUGH if k in kwargs}
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
    model = _from_pretrained(folder, config, dtype_t, device_map, quantization, extra)
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    return model.eval()


def _from_pretrained(folder: Path, config: ChatGLMV1Config, dtype: Any, device_map: Any,
                     quantization: str | None, extra: dict[str, Any]) -> ChatGLMV1ForCausalLM:
    from glmtune.models.checkpoint_io import checkpoint_files, read_errors
    from glmtune.models.quantization import bnb_config, fix_cpu_4bit

    checkpoint_files(folder)  # no weights / a shard the index names is gone: say so before transformers does
    qconf = bnb_config(quantization, dtype)
    if qconf is not None:
        from glmtune.models.checkpoint_io import checkpoint_shapes

        _check_prefix(config, checkpoint_shapes(folder))  # headers only: refuse before reading any weight
        extra["quantization_config"] = qconf
        device_map = device_map if device_map is not None else "cpu"
    try:
        model, info = ChatGLMV1ForCausalLM.from_pretrained(
            str(folder), config=config, dtype=dtype, device_map=device_map, output_loading_info=True, **extra)
    except RuntimeError as exc:  # shape mismatches
        raise GlmtuneError(f"{folder}: the checkpoint does not fit its config.json: {exc}") from None
    except read_errors():
        raise GlmtuneError(f"cannot read {folder} as a plain tensor checkpoint: a weight file holds "
                           "something else (pickled objects are never unpickled)") from None
    unknown = sorted(info["unexpected_keys"])
    if any(k.startswith(PREFIX_PARAMS) for k in unknown):
        raise GlmtuneError(f"{folder} holds {PREFIX_PARAMS}* weights but its config has no pre_seq_len")
    if unknown:
        raise GlmtuneError(f"{folder}: checkpoint weight {unknown[0]} has no place in ChatGLM-6B")
    missing = sorted(info["missing_keys"])
    prefix_missing = [k for k in missing if k.startswith(PREFIX_PARAMS)]
    missing = [k for k in missing if not k.startswith(PREFIX_PARAMS)]
    if missing:
        raise GlmtuneError(f"{folder}: the checkpoint lacks {len(missing)} weight(s), e.g. {missing[:3]}")
    if prefix_missing:
        fresh_prefix(model.transformer.prefix_encoder)
    return fix_cpu_4bit(model)


def fresh_prefix(encoder: nn.Module) -> None:
    """Initialise a prefix encoder the checkpoint does not hold as THUDM's does (nn defaults: N(0,1) table)."""
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, (nn.Embedding, nn.Linear)):
                module.reset_parameters()


def _check_prefix(config: ChatGLMV1Config, keys: Any) -> None:
    if config.pre_seq_len and not any(k.startswith(PREFIX_PARAMS) for k in keys):
        raise GlmtuneError("a fresh P-Tuning prefix cannot be added while loading quantised; "
                           "load, then call chatglm_v1.prefix.enable_prefix")
