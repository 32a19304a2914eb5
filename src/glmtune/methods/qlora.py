"""QLoRA: LoRA on a bitsandbytes 4-bit (NF4/FP4) or 8-bit quantised base."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from glmtune.errors import ConfigError


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
