"""LoRA through peft: low-rank updates on chosen linear layers; the base stays frozen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glmtune.errors import ConfigError
from glmtune.methods.base import TuningMethod


@dataclass
class LoraConfig:
    """The ``lora:`` block (also used by ``qlora``)."""

    r: int = 8  # rank of the low-rank update
    alpha: float = 16  # scaling numerator: the update is multiplied by alpha / r
    dropout: float = 0.05  # dropout on the LoRA input, in [0, 1)
    # module names to adapt; None = the family's default (see glmtune.methods.targets),
    # "all-linear" = every linear layer except lm_head
    target_modules: list[str] | str | None = None
    modules_to_save: list[str] | None = None  # modules trained in full and saved with the adapter

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ConfigError(f"lora.r must be > 0, got {self.r}")
        if self.alpha <= 0:
            raise ConfigError(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise ConfigError("lora.target_modules must not be empty (leave it unset for the family default)")
        if isinstance(self.target_modules, str) and not self.target_modules.strip():
            raise ConfigError("lora.target_modules must not be an empty string")
        if self.modules_to_save is not None and not self.modules_to_save:
            raise ConfigError("lora.modules_to_save must not be empty (leave it unset for none)")


class LoraMethod(TuningMethod):
    name = "lora"

    def apply(self, model: Any, cfg: Any) -> Any:
        raise NotImplementedError
