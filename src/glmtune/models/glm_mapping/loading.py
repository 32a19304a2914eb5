"""Load a THUDM ChatGLM2/3 checkpoint folder as transformers' own ``GlmForCausalLM`` (no remote code).

The model is built on the meta device and filled shard by shard: each THUDM tensor is read, cast
to the target dtype, mapped (q/k/v split) and assigned, so the peak memory is about one shard plus
the model in the target dtype. Quantised loads stream the same way, each mapped weight quantised
as it arrives (``quantization.load_quantized``); only multi-device plans hand transformers the
whole mapped state dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.models.families import detect_family, read_folder_configs

FAMILIES = ("chatglm2", "chatglm3")


def load_model(path: str | Path, dtype: Any = None, device_map: Any = None, quantization: str | None = None,
               family: str | None = None, rope_scaling: dict[str, Any] | None = None,
               attn_implementation: str | None = None, **kwargs: Any) -> Any:
    """``GlmForCausalLM`` for a ChatGLM2/3 folder (THUDM layout, or a Glm folder written by glmtune export)."""
    if kwargs:
        raise GlmtuneError(f"unsupported load_model option(s) for ChatGLM2/3: {', '.join(sorted(kwargs))}")
    folder = Path(path)
    config, _ = read_folder_configs(folder)
    if config.get("model_type") in ("glm", "glm4"):  # already converted (glmtune export --to hf)
        from glmtune.models.hf_loading import load_model as hf_load

        return hf_load(folder, dtype=dtype, device_map=device_map, quantization=quantization,
                       rope_scaling=rope_scaling, attn_implementation=attn_implementation)
    if config.get("model_type") != "chatglm":
        raise GlmtuneError(f"{folder}/config.json: model_type {config.get('model_type')!r} is not a ChatGLM2/3 model")
    family = family or detect_family(folder)
    if family not in FAMILIES:
        raise GlmtuneError(f"{folder} is a {family} checkpoint; the GLM mapping handles {', '.join(FAMILIES)}")
    from glmtune.models.dtypes import target_dtype
    from glmtune.models.glm_mapping.config_map import to_glm_config

    dtype_t = target_dtype(dtype, device_map, config)
    glm_config = to_glm_config(config, family, rope_scaling, dtype=dtype_t)
    if attn_implementation:
        glm_config._attn_implementation = attn_implementation
    prefix_state: dict[str, Any] = {}
    if quantization:
        model = _load_quantized(folder, glm_config, dtype_t, device_map, quantization, prefix_state)
    else:
        model = _load_streamed(folder, glm_config, dtype_t, device_map, prefix_state)
    finish(model, family)
    if prefix_state and config.get("pre_seq_len"):
        from glmtune.models.glm_mapping.prefix import enable_prefix, load_prefix_state

        enable_prefix(model, config["pre_seq_len"], bool(config.get("prefix_projection")),
                      config.get("prefix_hidden_size"))
        load_prefix_state(model, prefix_state, str(folder))
    return model.eval()


def finish(model: Any, family: str) -> None:
    """Generation defaults and ChatGLM's untouched pad-row gradient (no ``padding_idx``)."""
    from transformers import GenerationConfig

    from glmtune.models.glm_mapping.config_map import generation_defaults

    model.model.embed_tokens.padding_idx = None  # THUDM's embedding trains the pad row like any other
    model.generation_config = GenerationConfig(**generation_defaults(model.config, family))


def _mapped(folder: Path, glm_config: Any, dtype: Any, prefix_state: dict[str, Any]) -> Any:
    from glmtune.models.checkpoint_io import iter_checkpoint_tensors
    from glmtune.models.glm_mapping import state_map

    for key, tensor in iter_checkpoint_tensors(folder, dtype):
        if key.startswith("transformer.prefix_encoder."):
            prefix_state[key] = tensor
            continue
        yield from state_map.to_glm(key, tensor, glm_config)


def _load_streamed(folder: Path, glm_config: Any, dtype: Any, device_map: Any,
                   prefix_state: dict[str, Any]) -> Any:
    from accelerate import init_empty_weights
    from transformers import GlmForCausalLM

    with init_empty_weights():
        model = GlmForCausalLM(glm_config)
    device = _single_device(device_map)
    expected = dict(model.named_parameters())
    seen: set[str] = set()
    for key, tensor in _mapped(folder, glm_config, dtype, prefix_state):
        if key not in expected:
            raise GlmtuneError(f"mapped weight {key} has no place in GlmForCausalLM")
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise GlmtuneError(f"{key}: checkpoint shape {tuple(tensor.shape)} != model {tuple(expected[key].shape)}")
        value = tensor.to(device) if device is not None else tensor.clone()
        model.load_state_dict({key: value}, strict=False, assign=True)
        seen.add(key)
    missing = sorted(set(expected) - seen)
    if missing:
        raise GlmtuneError(f"{folder}: the checkpoint lacks {len(missing)} weight(s), e.g. {missing[:3]}")
    if device is not None:
        model.to(device)  # buffers (rotary inv_freq)
    elif device_map is not None:
        from accelerate import dispatch_model, infer_auto_device_map

        plan = device_map if isinstance(device_map, dict) else infer_auto_device_map(
            model, no_split_module_classes=["GlmDecoderLayer"], dtype=dtype)
        model = dispatch_model(model, device_map=plan)
    return model


def _single_device(device_map: Any) -> Any:
    import torch

    if device_map is None:
        return torch.device("cpu")
    if isinstance(device_map, (int, torch.device)) or (isinstance(device_map, str) and device_map != "auto"):
        return torch.device(device_map)
    if isinstance(device_map, dict) and set(device_map) == {""}:
        return torch.device(device_map[""])
    return None


def _load_quantized(folder: Path, glm_config: Any, dtype: Any, device_map: Any, quantization: str,
                    prefix_state: dict[str, Any]) -> Any:
    import torch
    from accelerate import init_empty_weights
    from transformers import GlmForCausalLM

    from glmtune.models.quantization import load_quantized, load_quantized_dispatched

    tensors = _mapped(folder, glm_config, dtype, prefix_state)
    device = _single_device(device_map)
    if device_map == "auto" and torch.cuda.device_count() <= 1:  # one device: stream onto it
        device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if device is None:
        return load_quantized_dispatched(GlmForCausalLM, glm_config, tensors, quantization, dtype, device_map)
    with init_empty_weights():
        model = GlmForCausalLM(glm_config)
    seen = load_quantized(model, tensors, quantization, dtype, device)
    missing = sorted(set(dict(model.named_parameters())) - seen)
    if missing:
        raise GlmtuneError(f"{folder}: the checkpoint lacks {len(missing)} weight(s), e.g. {missing[:3]}")
    return model
