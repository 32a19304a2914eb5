"""P-Tuning v2 for ChatGLM v1/2/3: a learned key/value prefix per layer, official checkpoint layout."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmtune.errors import ConfigError, GlmtuneError
from glmtune.methods.base import (
    INFO_ATTR,
    TuningMethod,
    enable_gradient_checkpointing,
    freeze_all,
    method_output,
    register_method,
    remember,
    upcast_fp16_params,
)
from glmtune.models.adapter_files import has_prefix_weights, ptuning_settings  # noqa: F401 (re-exported)
from glmtune.models.families import FAMILIES, model_family
from glmtune.models.ptuning_layout import OFFICIAL_PREFIX, PREFIX_KEY  # noqa: F401 (re-exported)


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


PREFIX_PARAM = "prefix_encoder"  # module name of the prefix in every glmtune P-Tuning model


def prefix_module(family: str | None) -> Any:
    """The family's ``enable_prefix`` / ``load_ptuning`` / ``save_ptuning`` module (``Family.prefix_module``)."""
    fam = FAMILIES.get(family) if family in FAMILIES else None
    if fam is None or not fam.prefix_module:
        with_prefix = ", ".join(name for name, f in FAMILIES.items() if f.prefix_module)
        raise ConfigError(
            f"method ptuning: P-Tuning v2 is ChatGLM-only ({with_prefix}), not {family or 'this model'}; "
            "use method: lora"
        )
    try:
        return importlib.import_module(fam.prefix_module)
    except ImportError as exc:
        raise GlmtuneError(f"P-Tuning v2 for {family} is not available: {exc}") from None


@register_method("ptuning", PTuningConfig)
class PTuningMethod(TuningMethod):
    """Only the prefix encoder is trained; saved in THUDM's official P-Tuning v2 layout."""

    name = "ptuning"

    def apply(self, model: Any, cfg: Any) -> Any:
        family = getattr(cfg, "family", None) or model_family(model)
        module = prefix_module(family)
        if self.checkpointing(cfg) and not getattr(module, "SUPPORTS_CHECKPOINTING", False):
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
        if self.checkpointing(cfg):
            enable_gradient_checkpointing(model, frozen_base=True)
        return model

    def save(self, model: Any, output_dir: str | Path, tokenizer: Any = None,
             state_dict: dict[str, Any] | None = None) -> None:
        """config.json (with pre_seq_len) + pytorch_model.bin holding ``transformer.prefix_encoder.*``.

        With a gathered ``state_dict`` (sharded model) its prefix entries replace the module's shards."""
        info = getattr(model, INFO_ATTR, {})
        module = prefix_module(info.get("family") or model_family(model))
        with method_output(output_dir, model, self.name, tokenizer) as tmp:
            module.save_ptuning(model, tmp)
            if state_dict is not None:
                import torch

                marker = f"{PREFIX_PARAM}."
                prefix = {OFFICIAL_PREFIX + k.split(marker, 1)[1]: v.detach().to("cpu").contiguous().clone()
                          for k, v in state_dict.items() if marker in k}
                if prefix:
                    torch.save(prefix, tmp / "pytorch_model.bin")
