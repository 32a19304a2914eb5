"""THUDM ChatGLM2/3 ``config.json`` <-> transformers ``GlmConfig``.

The ChatGLM2/3 block is exactly transformers' GLM block (pre-RMSNorm, grouped-query attention with
a q/k/v bias, RoPE on the first half of each head with interleaved pairs, SwiGLU MLP with a fused
gate/up projection, untied output layer), so every checkpoint whose config keeps those choices maps
one-to-one. Configs that switch any of them off are refused with the field named.

RoPE: ``rope_ratio`` means two different things in THUDM's code.
- ChatGLM3(-32k) and GLM-4 multiply the RoPE base: ``theta = 10000 * rope_ratio`` (positions unchanged).
- ChatGLM2-6B-32k divides the positions by it, i.e. linear interpolation with ``factor = rope_ratio``.
The chatglm2 family therefore maps ``rope_ratio`` to ``rope_type: linear`` and chatglm3 to the base
(as does a THUDM-layout GLM-4 config, recognised by its ``_name_or_path``).
A user ``rope_scaling={"type": "linear"|"dynamic", "factor": F}`` is applied on top: linear factors
multiply, and dynamic NTK is refused on top of ChatGLM2's own linear ``rope_ratio``.
vLLM's ChatGLM model reads ``rope_ratio`` as the base factor whatever the family (and takes the head
size as hidden_size / heads), so serve a ChatGLM2-32k export ``--to hf`` (``rope_type: linear``) there.
"""

from __future__ import annotations

import copy
from typing import Any

from glmtune.data.templates.chatglm3 import ROLE_TOKENS
from glmtune.errors import GlmtuneError

BASE_THETA = 10000.0
# field -> value the mapping requires (THUDM defaults for ChatGLM2/3)
_REQUIRED = {
    "rmsnorm": True,
    "add_bias_linear": False,
    "apply_residual_connection_post_layernorm": False,
    "post_layer_norm": True,
    "original_rope": True,
}
# <|user|>, <|observation|>: chat() stops on them too; the chat format (templates/chatglm3) owns the ids
CHATGLM3_STOP_IDS = (ROLE_TOKENS["user"], ROLE_TOKENS["observation"])


def check_representable(cfg: dict[str, Any]) -> None:
    """Raise a GlmtuneError naming the first config field GlmForCausalLM cannot represent."""
    for field, wanted in _REQUIRED.items():
        if field in cfg and cfg[field] is not None and bool(cfg[field]) != wanted:
            raise GlmtuneError(
                f"config field {field}={cfg[field]!r} is not supported: the GLM mapping needs {field}={wanted}"
            )
    qbit = cfg.get("quantization_bit") or 0
    if qbit:
        raise GlmtuneError(
            f"config field quantization_bit={qbit}: THUDM's own int{qbit} checkpoints cannot be mapped; "
            "load the full-precision checkpoint with quantization='4bit' or '8bit' instead"
        )
    for field in ("hidden_size", "num_layers", "num_attention_heads", "ffn_hidden_size"):
        if not isinstance(cfg.get(field), int):
            raise GlmtuneError(f"config field {field} is missing or not an integer ({cfg.get(field)!r})")


def rope_parameters(cfg: dict[str, Any], family: str, rope_scaling: dict[str, Any] | None = None) -> dict[str, Any]:
    """``GlmConfig.rope_parameters`` for a THUDM config of ``family`` (see module docstring)."""
    ratio = float(cfg.get("rope_ratio") or 1.0)
    if ratio <= 0:
        raise GlmtuneError(f"config field rope_ratio={ratio} must be positive")
    params: dict[str, Any] = {"rope_type": "default", "rope_theta": BASE_THETA, "partial_rotary_factor": 0.5}
    factor = 1.0
    hub = str(cfg.get("_name_or_path") or "").lower()
    if family == "chatglm2" and "glm-4" not in hub and "glm4" not in hub:  # GLM-4 (THUDM layout) multiplies
        factor = ratio
    else:
        params["rope_theta"] = BASE_THETA * ratio
    kind = "linear" if factor != 1.0 else "default"
    if rope_scaling:
        user_kind = str(rope_scaling.get("type") or rope_scaling.get("rope_type") or "")
        try:
            user_factor = float(rope_scaling["factor"])
        except (KeyError, TypeError, ValueError):
            raise GlmtuneError(f"rope_scaling needs a numeric 'factor' (got {rope_scaling!r})") from None
        if user_kind not in ("linear", "dynamic") or user_factor < 1.0:
            raise GlmtuneError(
                f"rope_scaling type must be 'linear' or 'dynamic' with factor >= 1 (got {rope_scaling!r})"
            )
        if user_kind == "dynamic" and kind == "linear":
            raise GlmtuneError(
                f"rope_scaling 'dynamic' cannot be combined with this ChatGLM2 checkpoint's rope_ratio={ratio} "
                "(already linear interpolation); use type 'linear'"
            )
        kind, factor = user_kind, factor * user_factor
    params["rope_type"] = kind
    if kind != "default":
        params["factor"] = factor
    return params


def to_glm_config(
    cfg: dict[str, Any], family: str, rope_scaling: dict[str, Any] | None = None, dtype: Any = None
) -> Any:
    """A ``GlmConfig`` equivalent to THUDM config dict ``cfg``; the original is kept in ``config.glmtune``."""
    from transformers import GlmConfig

    check_representable(cfg)
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("kv_channels") or cfg["hidden_size"] // heads
    kv_heads = cfg.get("multi_query_group_num") if cfg.get("multi_query_attention") else heads
    if not kv_heads or heads % kv_heads:
        raise GlmtuneError(f"config field multi_query_group_num={kv_heads!r} must divide num_attention_heads={heads}")
    vocab = cfg.get("padded_vocab_size") or cfg.get("vocab_size")
    eos = cfg.get("eos_token_id", 2)
    pad = cfg.get("pad_token_id", 0)
    glm = GlmConfig(
        vocab_size=int(vocab),
        hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["ffn_hidden_size"],
        num_hidden_layers=cfg["num_layers"],
        num_attention_heads=heads,
        num_key_value_heads=int(kv_heads),
        head_dim=int(head_dim),
        hidden_act="silu",
        attention_dropout=float(cfg.get("attention_dropout") or 0.0),
        max_position_embeddings=int(cfg.get("seq_length") or 2048),
        rms_norm_eps=float(cfg.get("layernorm_epsilon", 1e-5)),
        attention_bias=bool(cfg.get("add_qkv_bias", True)),
        tie_word_embeddings=False,
        rope_parameters=rope_parameters(cfg, family, rope_scaling),
        pad_token_id=pad,
        eos_token_id=eos,
        bos_token_id=None,
        use_cache=True,
        glmtune={"family": family, "source_config": copy.deepcopy(cfg)},
    )
    glm.architectures = ["GlmForCausalLM"]
    if dtype is not None:
        glm.dtype = dtype
    return glm


def generation_defaults(glm_config: Any, family: str) -> dict[str, Any]:
    """eos/pad ids for ``generate``: ChatGLM3's chat also stops on ``<|user|>`` / ``<|observation|>``."""
    eos = glm_config.eos_token_id
    eos_list = list(eos) if isinstance(eos, (list, tuple)) else [eos]
    if family == "chatglm3" and glm_config.vocab_size > max(CHATGLM3_STOP_IDS):
        eos_list += [i for i in CHATGLM3_STOP_IDS if i not in eos_list]
    return {"eos_token_id": eos_list if len(eos_list) > 1 else eos_list[0], "pad_token_id": glm_config.pad_token_id}


def source_record(glm_config: Any) -> dict[str, Any] | None:
    """The ``{"family", "source_config"}`` record a mapped config carries, or None."""
    record = getattr(glm_config, "glmtune", None)
    return record if isinstance(record, dict) and record.get("family") else None


def to_chatglm_config(glm_config: Any, dtype_name: str | None = None) -> dict[str, Any]:
    """The THUDM ``config.json`` dict for a mapped Glm config (for ``export --to chatglm``).

    Serving engines read this file without THUDM's code (vLLM: its own ``ChatGLMConfig``, whose
    defaults differ from the checkpoint's, e.g. ``add_qkv_bias=False``, ``tie_word_embeddings=True``),
    so every architecture field is written explicitly from what glmtune computed with, and
    ``auto_map`` is dropped: the folder holds no code files for it to point at. ``rope_ratio`` is
    kept as the source had it (vLLM reads it as ChatGLM3's base factor, see the module docstring).
    """
    record = source_record(glm_config)
    if record is None or not isinstance(record.get("source_config"), dict):
        raise GlmtuneError("this model was not mapped from a ChatGLM2/3 checkpoint: no THUDM config to write back")
    cfg = copy.deepcopy(record["source_config"])
    cfg.pop("auto_map", None)
    if cfg.get("pre_seq_len"):
        cfg["pre_seq_len"] = None  # the base weights carry no prefix; P-Tuning folders are written apart
    heads, kv_heads = int(glm_config.num_attention_heads), int(glm_config.num_key_value_heads)
    cfg.update(
        model_type="chatglm",
        architectures=["ChatGLMModel"],
        num_layers=int(glm_config.num_hidden_layers),
        hidden_size=int(glm_config.hidden_size),
        ffn_hidden_size=int(glm_config.intermediate_size),
        num_attention_heads=heads,
        kv_channels=int(glm_config.head_dim),
        multi_query_attention=bool(cfg.get("multi_query_attention")) or kv_heads != heads,
        multi_query_group_num=kv_heads,
        padded_vocab_size=int(glm_config.vocab_size),
        seq_length=int(glm_config.max_position_embeddings),
        layernorm_epsilon=float(glm_config.rms_norm_eps),
        add_qkv_bias=bool(glm_config.attention_bias),
        tie_word_embeddings=False,
        **_REQUIRED,
    )
    cfg.setdefault("fp32_residual_connection", False)
    cfg.setdefault("hidden_dropout", 0.0)
    cfg.setdefault("attention_dropout", float(getattr(glm_config, "attention_dropout", 0.0) or 0.0))
    cfg.setdefault("quantization_bit", 0)
    if "vocab_size" in cfg:
        cfg["vocab_size"] = cfg["padded_vocab_size"]
    for key in ("eos_token_id", "pad_token_id"):
        if cfg.get(key) is None and getattr(glm_config, key, None) is not None:
            cfg[key] = getattr(glm_config, key)
    if dtype_name:
        cfg["torch_dtype"] = dtype_name
    return cfg
