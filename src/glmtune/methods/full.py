"""Full fine-tuning: every weight is trained, with float32 (or bf16) master weights, never fp16."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glmtune.errors import ConfigError, GlmtuneError
from glmtune.methods.base import (
    TuningMethod,
    enable_gradient_checkpointing,
    is_quantized,
    method_output,
    register_method,
    remember,
    upcast_fp16_params,
)


def save_full_model(model: Any, output_dir: str | Path, method: str, tokenizer: Any = None,
                    state_dict: dict[str, Any] | None = None) -> None:
    """``save_pretrained`` (safetensors) of the whole model, plus the tokenizer, atomically; ``state_dict``
    is the Trainer's gathered one for a sharded (ZeRO-3 / FSDP) model."""
    if not hasattr(model, "save_pretrained"):
        raise GlmtuneError(f"{method}.save: {type(model).__name__} has no save_pretrained")
    with method_output(output_dir, model, method, tokenizer) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True, state_dict=state_dict)


@register_method("full")
class FullMethod(TuningMethod):
    """All parameters trainable. An fp16 model is upcast to float32 first (fp16 grads are unusable)."""

    name = "full"

    def apply(self, model: Any, cfg: Any) -> Any:
        if getattr(cfg, "adapter", None):
            raise ConfigError("adapter: full fine-tuning cannot continue from an adapter; use method lora/ptuning")
        if is_quantized(model):
            raise GlmtuneError("full: a 4/8-bit quantised model cannot be trained in full; use method qlora")
        remember(model, self.name, cfg)
        upcast_fp16_params(model, self.name, only_trainable=False)
        for param in model.parameters():
            param.requires_grad_(True)
        if self.checkpointing(cfg):
            enable_gradient_checkpointing(model, frozen_base=False)
        return model

    def save(self, model: Any, output_dir: str | Path, tokenizer: Any = None,
             state_dict: dict[str, Any] | None = None) -> None:
        save_full_model(model, output_dir, self.name, tokenizer, state_dict)
