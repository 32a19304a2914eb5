"""``glmtune export --to chatglm`` for ChatGLM-6B (v1): the THUDM v1 checkpoint layout.

glmtune's v1 module already uses THUDM's parameter names, so the state dict is written as it is,
plus what the original files carry and glmtune does not keep: a separate ``lm_head.weight`` copy
(the real repo stores one; safetensors refuses tensors sharing memory) and each layer's
``attention.rotary_emb.inv_freq`` buffer (float16-rounded, as the original computes it). The
``config.json`` is THUDM's (``model_type: chatglm``) without ``auto_map``: the folder holds no code
files for it to point at. There is no ``--to hf`` for v1: transformers has no v1 architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError

# THUDM ChatGLM-6B v1.1 config.json fields, in the order the original configuration class writes them
V1_FIELDS = ("bos_token_id", "eos_token_id", "gmask_token_id", "hidden_size", "inner_hidden_size",
             "layernorm_epsilon", "mask_token_id", "max_sequence_length", "num_attention_heads", "num_layers",
             "pad_token_id", "position_encoding_2d", "pre_seq_len", "prefix_projection", "quantization_bit",
             "use_cache", "vocab_size")


def is_v1_folder(path: str | Path) -> bool:
    """True when ``path``'s config is a ChatGLM-6B (v1) one (THUDM's or glmtune's own)."""
    from glmtune.models.families import read_folder_configs
    from glmtune.models.family._detect import is_v1

    config, _ = read_folder_configs(path)
    return bool(config) and is_v1(config)


def v1_thudm_config(config: Any, dtype_name: str, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The THUDM v1 ``config.json`` dict for glmtune's ``ChatGLMV1Config`` (no prefix, no ``auto_map``)."""
    cfg: dict[str, Any] = {"_name_or_path": (source or {}).get("_name_or_path") or "THUDM/chatglm-6b",
                           "architectures": ["ChatGLMModel"], "model_type": "chatglm"}
    for field in V1_FIELDS:
        cfg[field] = getattr(config, field, None)
    cfg["pre_seq_len"], cfg["prefix_projection"], cfg["quantization_bit"] = None, False, 0
    if not getattr(config, "tie_word_embeddings", True):
        cfg["tie_word_embeddings"] = False
    if getattr(config, "rope_scaling", None):  # glmtune's extension: the original code ignores it
        cfg["rope_scaling"] = dict(config.rope_scaling)
    cfg["torch_dtype"] = dtype_name
    return dict(sorted(cfg.items()))


def v1_thudm_state(model: Any) -> dict[str, Any]:
    """The model's weights under THUDM v1 names, ``lm_head`` copy and ``inv_freq`` buffers included."""
    from glmtune.models.chatglm_v1.rotary import inv_freq

    config = model.config
    state: dict[str, Any] = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("transformer.prefix_encoder."):
            raise GlmtuneError("this model carries a P-Tuning prefix; save it with save_ptuning instead")
        state[key] = tensor.detach().contiguous()
    dtype = state["transformer.word_embeddings.weight"].dtype
    head = state.get("lm_head.weight")
    if head is None or head.data_ptr() == state["transformer.word_embeddings.weight"].data_ptr():
        state["lm_head.weight"] = state["transformer.word_embeddings.weight"].clone()
    freq = inv_freq(config.head_dim // 2).to(dtype)
    for i in range(config.num_layers):
        state[f"transformer.layers.{i}.attention.rotary_emb.inv_freq"] = freq.clone()
    return state


def export_chatglm_v1(model_path: str | Path, out: str | Path, shard_size: str = "2GB", dtype: Any = None,
                      family: str | None = None, overwrite: bool = False, model: Any = None) -> Path:
    """Write ChatGLM-6B checkpoint ``model_path`` (or the already loaded, e.g. merged, ``model``) to ``out``."""
    from glmtune.models.export import _stored_dtype, _write_tokenizer, write_thudm_files
    from glmtune.models.families import read_folder_configs
    from glmtune.utils.io import atomic_dir, claim_output, write_marker

    src = Path(model_path)
    claim_output(out, "export-chatglm", overwrite)
    if model is None:
        from glmtune.models.chatglm_v1.loading import load_model

        model = load_model(src, dtype=dtype or _stored_dtype(src))
    if getattr(model.config, "pre_seq_len", None):
        raise GlmtuneError("this model carries a P-Tuning prefix; save it with save_ptuning instead")
    state = v1_thudm_state(model)
    dtype_name = str(state["transformer.word_embeddings.weight"].dtype).replace("torch.", "")
    cfg = v1_thudm_config(model.config, dtype_name, read_folder_configs(src)[0])
    gen = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"], "pad_token_id": cfg["pad_token_id"]}
    with atomic_dir(out) as tmp:
        write_thudm_files(tmp, state, cfg, gen, shard_size)
        _write_tokenizer(src, tmp, via_glmtune=False, family="chatglm")
        write_marker(tmp, "export-chatglm")
    return Path(out)
