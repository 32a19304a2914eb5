"""Model families: how to recognise a checkpoint folder and which code loads it.

One registry entry per family. A family names its tokenizer loader, model loader and default
template as ``"module:function"`` strings so that detecting a family never imports torch.
Adding a family is one small module in ``glmtune/models/family/`` plus one registration line there.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.registry import Registry
from glmtune.utils.io import read_json


@dataclass(frozen=True)
class Family:
    """What glmtune needs to know to run one model generation natively."""

    name: str
    description: str
    # the folder's files (config.json, tokenizer_config.json, others on demand) -> True when it owns them
    detect: Callable[[Any], bool]
    tokenizer_loader: str  # "module:function" taking (path, **kwargs)
    model_loader: str  # "module:function" taking (path, dtype=, device_map=, quantization=, **kwargs)
    default_template: str
    priority: int = 0  # higher is checked first

    def load_tokenizer(self, path: str | Path, **kwargs: Any) -> Any:
        return _resolve(self.tokenizer_loader)(path, **kwargs)

    def load_model(self, path: str | Path, **kwargs: Any) -> Any:
        """Every model loader takes ``family``: ChatGLM2 and ChatGLM3 share one that must not re-detect."""
        return _resolve(self.model_loader)(path, family=self.name, **kwargs)


FAMILIES: Registry[Family] = Registry("model family")


def _resolve(target: str) -> Callable[..., Any]:
    module_name, func = target.split(":")
    return getattr(importlib.import_module(module_name), func)


def read_folder_configs(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """config.json and tokenizer_config.json of a checkpoint folder ({} when absent)."""
    folder = Path(path)
    if not folder.is_dir():
        raise GlmtuneError(f"model folder not found: {folder}")
    return read_json(folder / "config.json"), read_json(folder / "tokenizer_config.json")


def detect_family(path: str | Path) -> str:
    """Name of the family that owns checkpoint folder ``path``, from its config files."""
    from glmtune.models.family._detect import FolderFiles, chatglm2_or_3, is_thudm_chatglm, is_v1

    _register_builtin()
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
    _register_builtin()
    return FAMILIES.get(family) if family else FAMILIES.get(detect_family(path))


def _register_builtin() -> None:
    importlib.import_module("glmtune.models.family")
