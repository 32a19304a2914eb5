"""QLoRA: LoRA on a bitsandbytes 4-bit (NF4/FP4) or 8-bit quantised base."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from glmtune.errors import ConfigError, GlmtuneError
from glmtune.methods.base import (
    TuningMethod,
    enable_gradient_checkpointing,
    is_quantized,
    register_method,
    remember,
)
from glmtune.methods.lora import save_peft, wrap_with_lora


@dataclass
class QLoraConfig:
    """The ``qlora:`` block; the LoRA rank/alpha/targets come from the ``lora:`` block."""

    bits: int = 4  # 4 (NF4/FP4) or 8 (LLM.int8)
    quant_type: Literal["nf4", "fp4"] = "nf4"  # 4-bit data type
    double_quant: bool = True  # also quantise the 4-bit scales (saves ~0.4 bit/param)

    def __post_init__(self) -> None:
        if self.bits not in (4, 8):
            raise ConfigError(f"qlora.bits must be 4 or 8, got {self.bits}")
        if self.quant_type not in ("nf4", "fp4"):
            raise ConfigError(f"qlora.quant_type must be 'nf4' or 'fp4', got {self.quant_type!r}")


def quantization_kwargs(block: QLoraConfig) -> dict[str, Any]:
    """``load_model`` kwargs for the block; its 4-bit mode is fixed to NF4 with double quantisation."""
    if block.bits == 8:
        return {"quantization": "8bit"}
    if block.quant_type != "nf4" or not block.double_quant:
        # glmtune.load_model's "4bit" (models/quantization.py) is NF4 + double quantisation only;
        # refusing beats silently training with settings other than the ones asked for
        raise ConfigError(
            f"qlora.quant_type={block.quant_type!r} / qlora.double_quant={block.double_quant} are not "
            "supported by glmtune.load_model yet (4-bit is NF4 with double quantisation); use the defaults"
        )
    return {"quantization": "4bit"}


def local_device_map() -> dict[str, int | str]:
    """``{"": this process's device}``: a 4/8-bit model is placed at load time (the Trainer never moves
    it), so under torchrun / accelerate launch each rank loads onto its own GPU (``LOCAL_RANK``)."""
    import torch

    if not torch.cuda.is_available():
        return {"": "cpu"}
    return {"": int(os.environ.get("LOCAL_RANK") or 0)}


def prepare_kbit(model: Any) -> None:
    """Freeze the quantised base; float16 norms and biases go to float32 (fp16 overflows there).

    Unlike peft's ``prepare_model_for_kbit_training``, the embedding and output layer stay in the
    compute dtype: their float32 copies cost 2 GB on ChatGLM2/3-6B (0.53B parameters x 4 bytes), more
    than half of the 4-bit body, and the loss is computed in float32 either way. Checkpointing is
    glmtune's own (peft's route calls transformers' deprecated ``gradient_checkpointing_enable``)."""
    import torch

    for param in model.parameters():
        param.requires_grad_(False)
        if param.dtype == torch.float16 and param.dim() == 1 and param.__class__.__name__ != "Params4bit":
            param.data = param.data.float()


@register_method("qlora", QLoraConfig)
class QLoraMethod(TuningMethod):
    """LoRA on a bitsandbytes-quantised frozen base (prepared by :func:`prepare_kbit`), checkpointed unless set off."""

    name = "qlora"
    checkpointing_default = True  # memory is why one picks QLoRA: ChatGLM2-6B, batch 1 x 512: 6.6 -> 4.4 GiB

    def model_load_kwargs(self, cfg: Any) -> dict[str, Any]:
        return {**quantization_kwargs(getattr(cfg, "qlora", None) or QLoraConfig()), "device_map": local_device_map()}

    def apply(self, model: Any, cfg: Any) -> Any:
        if not is_quantized(model):
            raise GlmtuneError(
                "qlora needs a model loaded with quantization (pass method.model_load_kwargs(cfg) to "
                "glmtune.load_model); for an unquantised model use method lora"
            )
        remember(model, self.name, cfg)
        prepare_kbit(model)
        if self.checkpointing(cfg):
            enable_gradient_checkpointing(model, frozen_base=True)
        wrapped = wrap_with_lora(model, cfg)
        remember(wrapped, self.name, cfg)
        return wrapped

    def save(self, model: Any, output_dir: str | Path, tokenizer: Any = None,
             state_dict: dict[str, Any] | None = None) -> None:
        """Only the LoRA adapter (the quantised base is never written)."""
        save_peft(model, output_dir, self.name, tokenizer, state_dict)
