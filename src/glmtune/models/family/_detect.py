"""Helpers shared by the family detectors."""

from __future__ import annotations

from typing import Any


def names(config: dict[str, Any], tok_config: dict[str, Any]) -> str:
    """Lower-cased hub names the files carry (``_name_or_path``), e.g. ``thudm/chatglm3-6b``."""
    parts = [config.get("_name_or_path"), tok_config.get("name_or_path"), tok_config.get("_name_or_path")]
    return " ".join(str(p).lower() for p in parts if p)


def is_thudm_chatglm(config: dict[str, Any]) -> bool:
    return config.get("model_type") == "chatglm"


def is_v1(config: dict[str, Any]) -> bool:
    if config.get("model_type") == "glmtune_chatglm_v1":  # saved by glmtune's own v1 model
        return True
    return is_thudm_chatglm(config) and ("position_encoding_2d" in config or "inner_hidden_size" in config)


def recorded_family(config: dict[str, Any]) -> str | None:
    """The family glmtune recorded in a converted checkpoint's config (``config.glmtune.family``)."""
    record = config.get("glmtune")
    return record.get("family") if isinstance(record, dict) else None
