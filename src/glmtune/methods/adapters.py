"""Attach a trained adapter to a loaded base model (inference or continued training), or merge it.

``glmtune.load_model(base, adapter=DIR)`` lands here (through ``glmtune.api``). Three kinds of folder
are recognised: a peft/glmtune LoRA folder (``adapter_config.json``), and an official ChatGLM or
glmtune P-Tuning v2 folder (``config.json`` with ``pre_seq_len`` + a weight file holding the official
prefix tensor). Telling them apart only reads files: ``glmtune.models.adapter_files`` (re-exported here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.methods.base import is_quantized
from glmtune.methods.lora import load_lora
from glmtune.methods.ptuning import model_family, prefix_module
from glmtune.models.adapter_files import AdapterKind, adapter_kind, adapter_note

__all__ = ["AdapterKind", "adapter_kind", "adapter_note", "attach_adapter", "merge_adapter"]


def attach_adapter(model: Any, path: str | Path, is_trainable: bool = False) -> Any:
    """``model`` with the adapter in ``path`` attached (eval mode unless ``is_trainable``)."""
    kind = adapter_kind(path)
    if kind == "lora":
        model = load_lora(model, path, is_trainable=is_trainable)
    else:
        module = prefix_module(model_family(model))
        model = module.load_ptuning(model, path) or model
        if not is_trainable:
            for param in model.parameters():
                param.requires_grad_(False)
    return model if is_trainable else model.eval()


def merge_adapter(model: Any) -> Any:
    """The plain base model with the LoRA update folded into its weights (for export)."""
    if not hasattr(model, "merge_and_unload"):
        raise GlmtuneError(
            f"{type(model).__name__} has no LoRA adapter to merge (a P-Tuning prefix cannot be merged into weights)"
        )
    if is_quantized(model):
        raise GlmtuneError("cannot merge LoRA into a 4/8-bit base; load the base unquantised, attach, then merge")
    return model.merge_and_unload()
