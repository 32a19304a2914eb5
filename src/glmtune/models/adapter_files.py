"""Reading adapter folders: what a folder holds (LoRA, P-Tuning v2, a note of how it was made).

Only files are read here (JSON, weight-file headers), never a model, and nothing needs torch or
peft: ``glmtune.models`` uses it to refuse an adapter folder passed as a model (``load_model``,
``export``, ``info``) and ``glmtune.methods`` to attach, continue or describe one. Attaching an
adapter to a model (peft, the family's prefix code) is ``glmtune.methods.adapters.attach_adapter``.

Three kinds of folder are recognised: a peft/glmtune LoRA folder (``adapter_config.json``), and an
official ChatGLM or glmtune P-Tuning v2 folder (``config.json`` with ``pre_seq_len`` + a weight file
holding the official prefix tensor). A LoRA may also be a bare state dict file or a folder of
``adapter_model.*`` alone (older ChatGLM LoRA tools): ``glmtune.methods.thudm_lora`` maps those.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from glmtune.errors import GlmtuneError
from glmtune.models.ptuning_layout import OFFICIAL_PREFIX, PREFIX_KEY
from glmtune.utils.io import read_json

ADAPTER_INFO = "glmtune_adapter.json"  # small note beside saved adapters: method, family, base model

AdapterKind = Literal["lora", "ptuning"]
LORA_STATE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")  # a bare LoRA state dict file
LORA_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def read_adapter_info(folder: str | Path) -> dict[str, Any]:
    """The folder's ``glmtune_adapter.json`` (method, family, base model, template), or ``{}``."""
    path = Path(folder) / ADAPTER_INFO
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def read_lora_config(folder: str | Path) -> dict[str, Any]:
    """The folder's ``adapter_config.json`` if it holds a peft LoRA adapter, else ``{}``."""
    return read_json(Path(folder) / "adapter_config.json")


def ptuning_settings(folder: str | Path) -> dict[str, Any] | None:
    """The folder's config.json if it carries ``pre_seq_len`` (an official/glmtune P-Tuning folder)."""
    data = read_json(Path(folder) / "config.json")
    return data if data.get("pre_seq_len") else None


def has_prefix_weights(folder: str | Path) -> bool:
    """True when one of the folder's weight files holds the official prefix tensor (headers / mmap only)."""
    from glmtune.models.checkpoint_io import checkpoint_shapes

    return PREFIX_KEY in checkpoint_shapes(folder)


def adapter_kind(path: str | Path) -> AdapterKind:
    """What kind of adapter folder ``path`` is; anything else fails saying what was found."""
    folder = Path(path)
    if folder.is_file() and folder.suffix in LORA_STATE_SUFFIXES:
        return "lora"  # a bare LoRA state dict (InstructGLM's chatglm-lora.pt); its keys are checked on load
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
    if settings is None and any((folder / n).is_file() for n in LORA_WEIGHT_FILES):
        return "lora"  # adapter weights without adapter_config.json (ChatGLM-Tuning's save_steps checkpoints)
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
    return bool(keys) and all(k.startswith(OFFICIAL_PREFIX) for k in keys)
