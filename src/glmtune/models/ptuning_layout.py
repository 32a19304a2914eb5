"""THUDM's official P-Tuning v2 folder layout, shared by the v1 and the ChatGLM2/3 prefix code.

A P-Tuning folder is ``config.json`` carrying ``pre_seq_len`` (and ``prefix_projection``) plus
``pytorch_model.bin`` holding only ``transformer.prefix_encoder.*`` tensors. Torch-free on purpose:
adapter detection reads it without loading a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.utils.io import read_json

OFFICIAL_PREFIX = "transformer.prefix_encoder."
PREFIX_KEY = OFFICIAL_PREFIX + "embedding.weight"


def read_ptuning_config(folder: str | Path) -> dict[str, Any]:
    """``pre_seq_len`` / ``prefix_projection`` / ``prefix_hidden_size`` of an official P-Tuning folder."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise GlmtuneError(f"{folder} is not a P-Tuning folder: no config.json")
    cfg = read_json(path)
    if not cfg.get("pre_seq_len"):
        raise GlmtuneError(f"{path} has no pre_seq_len: not a P-Tuning v2 checkpoint")
    return {"pre_seq_len": int(cfg["pre_seq_len"]), "prefix_projection": bool(cfg.get("prefix_projection")),
            "prefix_hidden_size": cfg.get("prefix_hidden_size")}
