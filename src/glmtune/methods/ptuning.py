"""P-Tuning v2 for ChatGLM v1/2/3: a learned key/value prefix per layer, official checkpoint layout."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmtune.errors import ConfigError, GlmtuneError
from glmtune.methods.base import (
    INFO_ATTR,
    METHODS,
    TuningMethod,
    enable_gradient_checkpointing,
    freeze_all,
    method_output,
    remember,
    upcast_fp16_params,
)
from glmtune.models.ptuning_layout import PREFIX_KEY
from glmtune.utils.io import read_json


@dataclass
class PTuningConfig:
    """The ``ptuning:`` block."""

    pre_seq_len: int = 128  # prefix length (virtual key/value positions per layer)
    prefix_projection: bool = False  # reparameterise the prefix through a 2-layer MLP (THUDM's option)
    prefix_hidden_size: int | None = None  # hidden size of that MLP; None = the model's hidden size

    def __post_init__(self) -> None:
        if self.pre_seq_len <= 0:
            raise ConfigError(f"ptuning.pre_seq_len must be > 0, got {self.pre_seq_len}")
        if self.prefix_hidden_size is not None and self.prefix_hidden_size <= 0:
            raise ConfigError(f"ptuning.prefix_hidden_size must be > 0, got {self.prefix_hidden_size}")
        if self.prefix_hidden_size is not None and not self.prefix_projection:
            raise ConfigError("ptuning.prefix_hidden_size is only used with ptuning.prefix_projection: true")


PREFIX_MODULES = {
    "chatglm": "glmtune.models.chatglm_v1.prefix",
    "chatglm2": "glmtune.models.glm_mapping.prefix",
    "chatglm3": "glmtune.models.glm_mapping.prefix",
}
PREFIX_PARAM = "prefix_encoder"  # module name of the prefix in every glmtune P-Tuning model


def model_family(model: Any) -> str | None:
    """The ChatGLM family a loaded model came from (``config.glmtune`` record or its v1 class)."""
    record = getattr(getattr(model, "config", None), "glmtune", None)
    if isinstance(record, dict) and record.get("family"):
        return str(record["family"])
    if type(model).__module__.startswith("glmtune.models.chatglm_v1"):
        return "chatglm"
    return None


def prefix_module(family: str | None) -> Any:
    """The family's ``enable_prefix`` / ``load_ptuning`` / ``save_ptuning`` module."""
    if family not in PREFIX_MODULES:
        raise ConfigError(
            f"method ptuning: P-Tuning v2 is ChatGLM-only (chatglm, chatglm2, chatglm3), not {family or 'this model'}; "
            "use method: lora"
        )
    try:
        return importlib.import_module(PREFIX_MODULES[family])
    except ImportError as exc:
        raise GlmtuneError(f"P-Tuning v2 for {family} is not available: {exc}") from None


def ptuning_settings(folder: str | Path) -> dict[str, Any] | None:
    """The folder's config.json if it carries ``pre_seq_len`` (an official/glmtune P-Tuning folder)."""
    data = read_json(Path(folder) / "config.json")
    return data if data.get("pre_seq_len") else None


def has_prefix_weights(folder: str | Path) -> bool:
    """True when one of the folder's weight files holds the official prefix tensor (headers / mmap only)."""
    from glmtune.models.checkpoint_io import checkpoint_shapes

    return PREFIX_KEY in checkpoint_shapes(folder)


@METHODS.register("ptuning")
class PTuningMethod(TuningMethod):
    """Only the prefix encoder is trained; saved in THUDM's official P-Tuning v2 layout."""

    name = "ptuning"

    def apply(self, model: Any, cfg: Any) -> Any:
        family = getattr(cfg, "family", None) or model_family(model)
        module = prefix_module(family)
        if getattr(cfg, "gradient_checkpointing", False) and not getattr(module, "SUPPORTS_CHECKPOINTING", False):
            # transformers' checkpointed decoder layers drop past_key_values, which carries the prefix
            raise ConfigError("gradient_checkpointing: not supported with method ptuning yet (the P-Tuning "
                              "prefix travels in the KV cache, which checkpointed layers drop); set it to false")
        block: PTuningConfig = getattr(cfg, "ptuning", None) or PTuningConfig()
        adapter = getattr(cfg, "adapter", None)
        remember(model, self.name, cfg)
        if adapter:
            if ptuning_settings(adapter) is None:
                raise ConfigError(f"adapter: {adapter} is not a P-Tuning folder (no config.json with pre_seq_len); "
                                  "a LoRA adapter continues with method: lora")
            # the folder's pre_seq_len/projection win over the ptuning: block when continuing
            model = module.load_ptuning(model, adapter) or model
        else:
            model = module.enable_prefix(model, block.pre_seq_len, block.prefix_projection,
                                         block.prefix_hidden_size) or model
        freeze_all(model)
        prefix = [p for n, p in model.named_parameters() if PREFIX_PARAM in n.split(".")]
        if not prefix:
            raise GlmtuneError(f"ptuning: {type(model).__name__} has no {PREFIX_PARAM} after enabling the prefix")
        for param in prefix:
            param.requires_grad_(True)
        upcast_fp16_params(model, self.name, only_trainable=True)  # as THUDM: prefix_encoder.float()
        if getattr(cfg, "gradient_checkpointing", False):
            enable_gradient_checkpointing(model, frozen_base=True)
        return model

    def save(self, model: Any, output_dir: str | Path, tokenizer: Any = None) -> None:
        """config.json (with pre_seq_len) + pytorch_model.bin holding ``transformer.prefix_encoder.*``."""
        info = getattr(model, INFO_ATTR, {})
        module = prefix_module(info.get("family") or model_family(model))
        with method_output(output_dir, model, self.name, tokenizer) as tmp:
            module.save_ptuning(model, tmp)
