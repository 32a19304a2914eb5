"""Freeze tuning: train the last N transformer layers (or named modules) in full, freeze the rest."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmtune.errors import ConfigError, GlmtuneError
from glmtune.methods.base import (
    TuningMethod,
    enable_gradient_checkpointing,
    freeze_all,
    is_quantized,
    register_method,
    remember,
    upcast_fp16_params,
)
from glmtune.methods.full import save_full_model


@dataclass
class FreezeConfig:
    """The ``freeze:`` block."""

    trainable_layers: int = 2  # train the last N transformer blocks (ignored when trainable_modules is set)
    # dotted name parts (e.g. "mlp", "layers.1", "self_attn.q_proj") or glob patterns over full
    # parameter names (e.g. "*.layers.1.*"); when set they decide instead of trainable_layers
    trainable_modules: list[str] | None = None
    train_embeddings: bool = False  # also train the input embedding and the output head (lm_head)

    def __post_init__(self) -> None:
        if self.trainable_layers < 0:
            raise ConfigError(f"freeze.trainable_layers must be >= 0, got {self.trainable_layers}")
        if self.trainable_modules is not None:
            if not self.trainable_modules or any(not str(m).strip() for m in self.trainable_modules):
                raise ConfigError("freeze.trainable_modules must be a non-empty list of non-empty names")
        elif self.trainable_layers == 0 and not self.train_embeddings:
            raise ConfigError("freeze.trainable_layers is 0 and nothing else is trainable; use >= 1")


def find_layer_list(model: Any) -> tuple[str, Any]:
    """(name, ModuleList) of the transformer blocks: the longest ModuleList of same-typed modules."""
    import torch

    best: tuple[str, Any] | None = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) and len({type(m) for m in module}) == 1:
            if best is None or len(module) > len(best[1]):
                best = (name, module)
    if best is None:
        raise GlmtuneError(f"freeze: cannot find the transformer layers of {type(model).__name__}; "
                           "set freeze.trainable_modules")
    return best


def name_matches(param_name: str, pattern: str) -> bool:
    """Glob over the full name when ``pattern`` has ``*?[``, else a run of whole dotted parts."""
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(param_name, pattern)
    return f".{pattern.strip('.')}." in f".{param_name}."


def select_trainable(model: Any, block: FreezeConfig) -> list[str]:
    """Names of the parameters the block makes trainable (errors when a pattern matches nothing)."""
    names = [n for n, _ in model.named_parameters()]
    chosen: set[str] = set()
    if block.trainable_modules is not None:
        for pattern in block.trainable_modules:
            hits = [n for n in names if name_matches(n, pattern)]
            if not hits:
                sample = ", ".join(sorted({n.rsplit(".", 2)[-2] for n in names if "." in n})[:15])
                raise ConfigError(f"freeze.trainable_modules: {pattern!r} matches no parameter; "
                                  f"module names include: {sample}")
            chosen.update(hits)
    elif block.trainable_layers:
        list_name, layers = find_layer_list(model)
        if block.trainable_layers > len(layers):
            raise ConfigError(f"freeze.trainable_layers is {block.trainable_layers} but the model has "
                              f"{len(layers)} layers")
        first = len(layers) - block.trainable_layers
        prefixes = tuple(f"{list_name}.{i}." for i in range(first, len(layers)))
        chosen.update(n for n in names if n.startswith(prefixes))
    if block.train_embeddings:
        heads = [model.get_input_embeddings(), model.get_output_embeddings()]
        ids = {id(p) for m in heads if m is not None for p in m.parameters()}
        chosen.update(n for n, p in model.named_parameters() if id(p) in ids)
    return [n for n in names if n in chosen]


@register_method("freeze", FreezeConfig)
class FreezeMethod(TuningMethod):
    """The last N blocks (or the named modules) are trained in full; everything else is frozen."""

    name = "freeze"

    def apply(self, model: Any, cfg: Any) -> Any:
        if getattr(cfg, "adapter", None):
            raise ConfigError("adapter: freeze tuning cannot continue from an adapter; use method lora/ptuning")
        if is_quantized(model):
            raise GlmtuneError("freeze: a 4/8-bit quantised model cannot be trained; use method qlora")
        block: FreezeConfig = getattr(cfg, "freeze", None) or FreezeConfig()
        remember(model, self.name, cfg)
        trainable = set(select_trainable(model, block))
        freeze_all(model)
        for name, param in model.named_parameters():
            if name in trainable:
                param.requires_grad_(True)
        # only the trained fp16 weights get a float32 master; the frozen rest stays half under autocast
        upcast_fp16_params(model, self.name, only_trainable=True)
        if self.checkpointing(cfg):
            enable_gradient_checkpointing(model, frozen_base=True)
        return model

    def save(self, model: Any, output_dir: str | Path, tokenizer: Any = None,
             state_dict: dict[str, Any] | None = None) -> None:
        """The whole model (frozen weights included), so the output loads on its own."""
        save_full_model(model, output_dir, self.name, tokenizer, state_dict)
