"""``precision`` -> the dtype weights are loaded in and the Trainer's mixed-precision flags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glmtune.errors import ConfigError


@dataclass(frozen=True)
class Precision:
    """What one ``precision`` value means for a run."""

    name: str  # fp32 | fp16 | bf16 (auto resolved)
    load_dtype: Any  # torch dtype of the loaded weights
    fp16: bool  # TrainingArguments.fp16 (autocast + GradScaler loss scaling)
    bf16: bool  # TrainingArguments.bf16 (autocast)


def _bf16_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def resolve_precision(precision: str, method: str, use_cpu: bool = False) -> Precision:
    """Resolve ``auto`` (bf16 on a bf16-capable GPU, else fp32) and choose the load dtype.

    Methods that train base weights (``full``, ``freeze``) keep fp32 master weights and use autocast,
    so optimizer updates never happen in half precision; adapter methods (lora, qlora, ptuning)
    load the frozen base in the compute dtype to save memory (peft keeps adapters in fp32).
    """
    import torch

    cuda = torch.cuda.is_available() and not use_cpu
    name = precision
    if name == "auto":
        name = "bf16" if cuda and _bf16_cuda() else "fp32"
    if name == "fp16" and not cuda:
        raise ConfigError("precision: fp16 (with loss scaling) needs a CUDA GPU; use fp32 or bf16 on CPU")
    if name == "bf16" and cuda and not _bf16_cuda():
        raise ConfigError("precision: this GPU does not support bf16; use fp16 or fp32")
    compute = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]
    trains_base = method in ("full", "freeze")
    load = torch.float32 if trains_base else compute
    return Precision(name=name, load_dtype=load, fp16=name == "fp16", bf16=name == "bf16")
