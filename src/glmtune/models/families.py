"""Model families: which family a checkpoint folder (or a loaded model) belongs to, and lookup.

One registry entry per family, each carrying every per-family fact glmtune uses (loaders, default
template, LoRA targets, P-Tuning module, padding and positions): see ``glmtune.models.family.base``.
Adding a family is one small module in ``glmtune/models/family/`` plus one registration line there.

Importing this module imports the ``glmtune.models.family`` package, which registers the built-in
families; the family modules never import this one (no import cycle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.models.family import FAMILIES, Family
from glmtune.models.family._detect import FolderFiles, chatglm2_or_3, is_thudm_chatglm, is_v1
from glmtune.utils.io import read_json

__all__ = ["FAMILIES", "Family", "detect_family", "get_family", "model_family", "read_folder_configs"]


def read_folder_configs(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """config.json and tokenizer_config.json of a checkpoint folder ({} when absent)."""
    folder = Path(path)
    if not folder.is_dir():
        raise GlmtuneError(f"model folder not found: {folder}")
    return read_json(folder / "config.json"), read_json(folder / "tokenizer_config.json")


def detect_family(path: str | Path) -> str:
    """Name of the family that owns checkpoint folder ``path``, from its config files."""
    config, tok_config = read_folder_configs(path)
    saved = tok_config.get("glmtune_family")  # written by glmtune's own tokenizers' save_pretrained
    if isinstance(saved, str) and saved in FAMILIES:
        return saved
    files = FolderFiles(Path(path), config, tok_config)
    for _, family in sorted(FAMILIES.items(), key=lambda kv: -kv[1].priority):
        if family.detect(files):
            return family.name
    if is_thudm_chatglm(config) and not is_v1(config):
        raise GlmtuneError(
            f"{path} is a ChatGLM2-6B or ChatGLM3-6B checkpoint, and its files cannot tell which "
            f"({chatglm2_or_3(files)[1]}); they differ in prompt format and in what rope_ratio means. "
            "Pass family='chatglm2' or family='chatglm3' (glmtune commands: family=... or --family)"
        )
    found = {
        "model_type": config.get("model_type"),
        "architectures": config.get("architectures"),
        "tokenizer_class": tok_config.get("tokenizer_class"),
        "files": sorted(p.name for p in Path(path).iterdir())[:12],
    }
    raise GlmtuneError(
        f"cannot tell which model family {path} is (found {found}); "
        f"pass family= one of: {', '.join(FAMILIES.names())}"
    )


def get_family(path: str | Path, family: str | None = None) -> Family:
    """The family object for ``path``, honouring an explicit ``family`` override."""
    return FAMILIES.get(family) if family else FAMILIES.get(detect_family(path))


def model_family(model: Any) -> str | None:
    """The family a loaded model came from: its ``config.glmtune`` record (ChatGLM2/3 on transformers'
    Glm classes), else the ``glmtune_family`` of its class (glmtune's own model classes); None otherwise."""
    record = getattr(getattr(model, "config", None), "glmtune", None)
    if isinstance(record, dict) and record.get("family"):
        return str(record["family"])
    family = getattr(type(model), "glmtune_family", None)
    return family if isinstance(family, str) and family else None
