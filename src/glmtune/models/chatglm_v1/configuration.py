"""Configuration of our native ChatGLM-6B (GLM v1) model.

Field names are THUDM's (``num_layers``, ``inner_hidden_size``, ``layernorm_epsilon``, ...) so a
downloaded ``config.json`` maps one to one; ``model_type`` is our own so it never clashes with the
types transformers registers (the hub's ``"chatglm"`` belongs to remote code).
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from glmtune.errors import GlmtuneError

MODEL_TYPE = "glmtune_chatglm_v1"
ROPE_TYPES = ("linear", "dynamic")


class ChatGLMV1Config(PretrainedConfig):
    """THUDM ChatGLM-6B config fields plus ``rope_scaling`` (our extension)."""

    model_type = MODEL_TYPE
    attribute_map = {
        "num_hidden_layers": "num_layers",
        "intermediate_size": "inner_hidden_size",
        "max_position_embeddings": "max_sequence_length",
    }
    keys_to_ignore_at_inference = ["cache", "past_key_values"]

    vocab_size: int = 130528
    hidden_size: int = 4096
    num_layers: int = 28
    num_attention_heads: int = 32
    inner_hidden_size: int | None = None
    layernorm_epsilon: float = 1e-5
    max_sequence_length: int = 2048
    position_encoding_2d: bool = True
    mask_token_id: int = 130000
    gmask_token_id: int = 130001
    bos_token_id: int | None = 130004
    eos_token_id: int | list[int] | None = 130005
    pad_token_id: int | None = 3
    pre_seq_len: int | None = None
    prefix_projection: bool = False
    prefix_hidden_size: int | None = None
    quantization_bit: int = 0
    use_cache: bool = True
    tie_word_embeddings: bool = True
    rope_scaling: dict[str, Any] | None = None
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.inner_hidden_size is None:
            self.inner_hidden_size = 4 * self.hidden_size
        check_supported(self.to_dict())

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def get_config_dict(cls, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """A THUDM folder's ``"model_type": "chatglm"`` is this config: read it as ours (peft re-reads the
        base folder's config on every adapter save; transformers would warn of a model type mismatch)."""
        config, rest = super().get_config_dict(*args, **kwargs)
        if config.get("model_type") == "chatglm" and "num_layers" in config and "inner_hidden_size" in config:
            config = {**config, "model_type": MODEL_TYPE}
        return config, rest


def check_supported(cfg: dict[str, Any]) -> None:
    """Refuse THUDM settings this implementation does not reproduce, naming the field."""
    if cfg.get("quantization_bit"):
        raise GlmtuneError(
            f"config field quantization_bit={cfg['quantization_bit']}: THUDM's pre-quantized int4/int8 "
            "checkpoints are not supported; load the fp16 checkpoint with quantization='4bit' or '8bit'"
        )
    if cfg.get("position_encoding_2d") is False:
        raise GlmtuneError("config field position_encoding_2d=false is not supported (ChatGLM-6B uses 2-D positions)")
    hidden, heads = cfg.get("hidden_size"), cfg.get("num_attention_heads")
    if hidden and heads and (hidden % heads or (hidden // heads) % 4):
        raise GlmtuneError(
            f"config fields hidden_size={hidden}, num_attention_heads={heads}: the head size must be a multiple of 4"
        )
    scaling = cfg.get("rope_scaling")
    if scaling is not None:
        kind = scaling.get("type", scaling.get("rope_type")) if isinstance(scaling, dict) else None
        factor = scaling.get("factor") if isinstance(scaling, dict) else None
        if kind not in ROPE_TYPES or not isinstance(factor, (int, float)) or factor < 1:
            raise GlmtuneError(
                f"config field rope_scaling={scaling!r}: expected {{'type': 'linear'|'dynamic', 'factor': >= 1}}"
            )
    pre = cfg.get("pre_seq_len")
    if pre is not None and (not isinstance(pre, int) or pre < 1):
        raise GlmtuneError(f"config field pre_seq_len={pre!r}: expected a positive integer or null")


def config_from_thudm(raw: dict[str, Any], **overrides: Any) -> ChatGLMV1Config:
    """Our config from a THUDM ``config.json`` dict (remote-code keys dropped, fields checked first)."""
    data = {k: v for k, v in raw.items() if k not in ("auto_map", "model_type", "architectures", "_name_or_path")}
    data.update({k: v for k, v in overrides.items() if v is not None})
    check_supported(data)
    data.pop("transformers_version", None)
    config = ChatGLMV1Config(**data)
    config.architectures = ["ChatGLMV1ForCausalLM"]
    return config
