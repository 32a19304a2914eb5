"""LoRA through peft: low-rank updates on chosen linear layers; the base stays frozen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmtune.errors import ConfigError, GlmtuneError
from glmtune.methods.base import (
    METHODS,
    TuningMethod,
    enable_gradient_checkpointing,
    freeze_all,
    method_output,
    remember,
    upcast_fp16_params,
)
from glmtune.methods.targets import resolve_targets
from glmtune.utils.io import read_json


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


def read_lora_config(folder: str | Path) -> dict[str, Any]:
    """The folder's ``adapter_config.json`` if it holds a peft LoRA adapter, else ``{}``."""
    return read_json(Path(folder) / "adapter_config.json")


def wrap_with_lora(model: Any, cfg: Any) -> Any:
    """Freeze the base and wrap it in a peft LoRA model (new, or continued from ``cfg.adapter``)."""
    import peft

    freeze_all(model)
    adapter = getattr(cfg, "adapter", None)
    if adapter:
        found = read_lora_config(adapter)
        if not found:
            raise ConfigError(
                f"adapter: {adapter} holds no LoRA adapter (no adapter_config.json); "
                "a P-Tuning folder continues with method: ptuning"
            )
        if str(found.get("peft_type", "LORA")).upper() != "LORA":
            raise ConfigError(f"adapter: {adapter} is a peft {found.get('peft_type')} adapter, not LoRA")
        # the saved adapter's rank/targets win over the lora: block when continuing
        return peft.PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    block: LoraConfig = getattr(cfg, "lora", None) or LoraConfig()
    targets = resolve_targets(model, block.target_modules, getattr(cfg, "family", None))
    peft_config = peft.LoraConfig(
        r=block.r,
        lora_alpha=block.alpha,
        lora_dropout=block.dropout,
        target_modules=targets,
        modules_to_save=block.modules_to_save,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, peft_config)


def save_peft(model: Any, output_dir: str | Path, method: str, tokenizer: Any = None) -> None:
    """adapter_model.safetensors + adapter_config.json + glmtune_adapter.json, written atomically."""
    if not hasattr(model, "peft_config"):
        raise GlmtuneError(f"{method}.save expects the peft model returned by apply(), got {type(model).__name__}")
    with method_output(output_dir, model, method, tokenizer) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)


@METHODS.register("lora")
class LoraMethod(TuningMethod):
    """Low-rank adapters on the attention projections (by default); the base model stays frozen."""

    name = "lora"

    def apply(self, model: Any, cfg: Any) -> Any:
        remember(model, self.name, cfg)
        if getattr(cfg, "gradient_checkpointing", False):
            enable_gradient_checkpointing(model, frozen_base=True)
        wrapped = wrap_with_lora(model, cfg)
        upcast_fp16_params(wrapped, self.name, only_trainable=True)  # fp16 modules_to_save copies
        remember(wrapped, self.name, cfg)
        return wrapped

    def save(self, model: Any, output_dir: str | Path, tokenizer: Any = None) -> None:
        save_peft(model, output_dir, self.name, tokenizer)
