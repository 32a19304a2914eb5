"""Attach a trained adapter to a loaded base model (inference or continued training), or merge it.

``glmtune.load_model(base, adapter=DIR)`` lands here. Three kinds of folder are recognised:
a peft/glmtune LoRA folder (``adapter_config.json``), and an official ChatGLM or glmtune P-Tuning v2
folder (``config.json`` with ``pre_seq_len`` + a weight file holding the official prefix tensor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from glmtune.errors import GlmtuneError
from glmtune.methods.base import is_quantized, read_adapter_info
from glmtune.methods.lora import load_lora, read_lora_config
from glmtune.methods.ptuning import (
    PREFIX_KEY,
    has_prefix_weights,
    model_family,
    prefix_module,
    ptuning_settings,
)

AdapterKind = Literal["lora", "ptuning"]


def adapter_kind(path: str | Path) -> AdapterKind:
    """What kind of adapter folder ``path`` is; anything else fails saying what was found."""
    folder = Path(path)
    if not folder.is_dir():
        raise GlmtuneError(f"adapter folder not found: {folder}")
    lora = read_lora_config(folder)
    if lora:
        peft_type = str(lora.get("peft_type", "LORA")).upper()
        if peft_type != "LORA":
            raise GlmtuneError(f"{folder} is a peft {peft_type} adapter; glmtune loads LoRA and P-Tuning v2 only")
        return "lora"
    settings = ptuning_settings(folder)
    files = sorted(p.name for p in folder.iterdir())[:12]
    if settings is not None:
        try:
            found = has_prefix_weights(folder)
        except GlmtuneError as exc:
            raise GlmtuneError(f"{folder}: config.json has pre_seq_len but the weights are unusable: {exc}") from None
        if found:
            return "ptuning"
        raise GlmtuneError(f"{folder}: config.json has pre_seq_len={settings['pre_seq_len']} but no weight file "
                           f"holds {PREFIX_KEY} (found {files})")
    method = read_adapter_info(folder).get("method")
    if method in ("full", "freeze"):
        raise GlmtuneError(f"{folder} holds a whole model fine-tuned with method {method}, not an adapter: "
                           f"load it on its own with glmtune.load_model({str(folder)!r})")
    raise GlmtuneError(
        f"{folder} is not an adapter: expected adapter_config.json (LoRA) or config.json with pre_seq_len "
        f"and {PREFIX_KEY} (P-Tuning v2); found {files}"
    )


def adapter_note(path: str | Path) -> str | None:
    """``"a LoRA adapter for BASE"`` when folder ``path`` holds only an adapter (not a model), else None."""
    folder = Path(path)
    lora = read_lora_config(folder)
    if lora and not _has_weights(folder):  # a merged model saved beside its adapter is a model
        kind = "LoRA adapter"
    elif ptuning_settings(folder) and _prefix_only(folder):
        kind = "P-Tuning v2 prefix"
    else:
        return None
    info = read_adapter_info(folder)
    base = info.get("base_model") or lora.get("base_model_name_or_path")
    return f"a {kind} for base model {base}" if base else f"a {kind}"


def _has_weights(folder: Path) -> bool:
    from glmtune.models.checkpoint_io import checkpoint_files

    try:
        return bool(checkpoint_files(folder))
    except GlmtuneError:
        return False


def _prefix_only(folder: Path) -> bool:
    from glmtune.models.checkpoint_io import checkpoint_shapes

    try:
        keys = checkpoint_shapes(folder)
    except GlmtuneError:
        return False
    return bool(keys) and all(k.startswith("transformer.prefix_encoder.") for k in keys)


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
