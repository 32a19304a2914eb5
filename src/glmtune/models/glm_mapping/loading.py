"""Load a THUDM ChatGLM2/3 checkpoint folder as transformers' own ``GlmForCausalLM`` (no remote code).

The load is ``GlmForCausalLM.from_pretrained(folder, config=<mapped GlmConfig>)`` itself: the THUDM
key renames and the fused q/k/v split run inside transformers' checkpoint conversion
(``glm_mapping.conversion``), so sharded/safetensors reading, meta-device init, ``device_map``,
bitsandbytes 4/8-bit (``quantization_config``), disk offload and ZeRO-3 are transformers' own, and a
checkpoint streams into the model tensor by tensor instead of as one mapped state dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.models.families import detect_family, read_folder_configs

FAMILIES = ("chatglm2", "chatglm3")
PREFIX_KEYS = "transformer.prefix_encoder."
# from_pretrained options passed through as given (transformers 5 always builds on the meta device,
# so low_cpu_mem_usage is accepted and has nothing left to switch)
PASSTHROUGH = ("low_cpu_mem_usage", "max_memory", "offload_folder", "offload_buffers")


def load_model(path: str | Path, dtype: Any = None, device_map: Any = None, quantization: str | None = None,
               family: str | None = None, rope_scaling: dict[str, Any] | None = None,
               attn_implementation: str | None = None, **kwargs: Any) -> Any:
    """``GlmForCausalLM`` for a ChatGLM2/3 folder (THUDM layout, or a Glm folder written by glmtune export)."""
    extra = {k: kwargs.pop(k) for k in PASSTHROUGH if k in kwargs}
    if kwargs:
        raise GlmtuneError(f"unsupported load_model option(s) for ChatGLM2/3: {', '.join(sorted(kwargs))}")
    folder = Path(path)
    config, _ = read_folder_configs(folder)
    if config.get("model_type") in ("glm", "glm4"):  # already converted (glmtune export --to hf)
        from glmtune.models.hf_loading import load_model as hf_load

        return hf_load(folder, dtype=dtype, device_map=device_map, quantization=quantization,
                       rope_scaling=rope_scaling, attn_implementation=attn_implementation, **extra)
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
    model = from_thudm(folder, glm_config, dtype_t, device_map, quantization, **extra)
    finish(model, family)
    if config.get("pre_seq_len"):
        from glmtune.models.checkpoint_io import iter_checkpoint_tensors
        from glmtune.models.glm_mapping.prefix import enable_prefix, load_prefix_state

        state = dict(iter_checkpoint_tensors(folder, dtype_t, skip=lambda k: not k.startswith(PREFIX_KEYS)))
        if state:
            enable_prefix(model, config["pre_seq_len"], bool(config.get("prefix_projection")),
                          config.get("prefix_hidden_size"))
            load_prefix_state(model, state, str(folder))
    return model.eval()


def from_thudm(folder: Path, glm_config: Any, dtype: Any, device_map: Any = None, quantization: str | None = None,
               **extra: Any) -> Any:
    """``GlmForCausalLM.from_pretrained`` of a THUDM folder, with glmtune's errors for missing/unknown weights."""
    from transformers import GlmForCausalLM

    from glmtune.models.checkpoint_io import checkpoint_files, read_errors
    from glmtune.models.glm_mapping.conversion import thudm_conversion
    from glmtune.models.quantization import bnb_config, fix_cpu_4bit

    checkpoint_files(folder)  # no weights / a shard the index names is gone: say so before transformers does
    qconf = bnb_config(quantization, dtype)
    if qconf is not None:
        extra["quantization_config"] = qconf
        device_map = device_map if device_map is not None else "cpu"
    try:
        with thudm_conversion():
            model, info = GlmForCausalLM.from_pretrained(
                str(folder), config=glm_config, dtype=dtype, device_map=device_map,
                output_loading_info=True, **extra)
    except RuntimeError as exc:  # shape mismatches / failed conversions (e.g. a q/k/v split that does not fit)
        raise GlmtuneError(f"{folder}: the checkpoint does not fit the GLM mapping of its config.json: {exc}") from None
    except read_errors():
        raise GlmtuneError(f"cannot read {folder} as a plain tensor checkpoint: a weight file holds "
                           "something else (pickled objects are never unpickled)") from None
    model._weight_conversions = None  # the model is a Glm model now: save_pretrained writes Glm names
    # nor is the folder a Glm source: tools re-reading it as a GlmConfig (PEFT's save_embedding_layers="auto"
    # compares vocab sizes) would see a "resized" vocabulary; the model carries no path, as before
    model.name_or_path = model.config.name_or_path = ""
    missing = sorted(info["missing_keys"])
    if missing:
        raise GlmtuneError(f"{folder}: the checkpoint lacks {len(missing)} weight(s), e.g. {missing[:3]}")
    unknown = sorted(k for k in info["unexpected_keys"] if not k.startswith(PREFIX_KEYS))
    if unknown:
        raise GlmtuneError(f"unexpected weight {unknown[0]!r} in a ChatGLM2/3 checkpoint "
                           f"({len(unknown)} in all); the GLM mapping does not know it")
    return fix_cpu_4bit(model)


def finish(model: Any, family: str) -> None:
    """Generation defaults and ChatGLM's untouched pad-row gradient (no ``padding_idx``)."""
    from transformers import GenerationConfig

    from glmtune.models.glm_mapping.config_map import generation_defaults

    model.model.embed_tokens.padding_idx = None  # THUDM's embedding trains the pad row like any other
    model.generation_config = GenerationConfig(**generation_defaults(model.config, family))
