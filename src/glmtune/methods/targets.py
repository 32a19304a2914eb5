"""Which linear layers LoRA adapts by default: the family's ``Family.lora_targets``.

ChatGLM2/3 (and GLM-4 in transformers' layout) run on ``GlmForCausalLM``, whose attention has
separate ``q_proj``/``k_proj``/``v_proj``; THUDM's fused ``query_key_value`` is split into those
three at load time, so ``["q_proj", "k_proj", "v_proj"]`` is the equivalent of THUDM's default
(each projection gets its own rank-r update instead of one shared fused update). ChatGLM-6B v1 keeps
THUDM's module names, so its default is the fused ``query_key_value``. Other models get peft's
``"all-linear"`` (every linear layer but the output head). The values live in each family's module
(``glmtune/models/family/``); a model of no known family gets a guess from its own module names.
"""

from __future__ import annotations

import re
from typing import Any

from glmtune.errors import ConfigError
from glmtune.models.family import ALL_LINEAR, FAMILIES, QKV


def linear_module_names(model: Any) -> list[str]:
    """Full names of the model's linear layers (bitsandbytes layers included), without the output head."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head and not name.endswith("lm_head")
    ]


def short_names(full_names: list[str]) -> list[str]:
    """Distinct last name components, in first-seen order (``q_proj``, ``dense``, ...)."""
    return list(dict.fromkeys(n.rsplit(".", 1)[-1] for n in full_names))


def default_targets(model: Any, family: str | None) -> list[str] | str:
    """The family default (``Family.lora_targets``); with no known family, guess from the model's module names."""
    if family is not None and family in FAMILIES:
        targets = FAMILIES.get(family).lora_targets
        return targets if isinstance(targets, str) else list(targets)
    names = set(short_names(linear_module_names(model)))
    if "query_key_value" in names:
        return ["query_key_value"]
    if set(QKV) <= names:
        return list(QKV)
    return ALL_LINEAR


def _matches(full_name: str, target: str) -> bool:
    """peft's rule for a list entry: the full name equals it or ends with ``.<target>``."""
    return full_name == target or full_name.endswith("." + target)


def resolve_targets(model: Any, target_modules: list[str] | str | None, family: str | None) -> list[str] | str:
    """``lora.target_modules`` checked against the model; unknown names fail listing the real ones."""
    targets = default_targets(model, family) if target_modules is None else target_modules
    if targets == ALL_LINEAR:
        return ALL_LINEAR
    linears = linear_module_names(model)
    available = ", ".join(short_names(linears)) or "none"
    if isinstance(targets, str):  # peft treats a string as a regex over full module names
        try:
            pattern = re.compile(targets)
        except re.error as exc:
            raise ConfigError(f"lora.target_modules: {targets!r} is not a valid regex ({exc})") from None
        if not any(pattern.fullmatch(n) for n in linears):
            raise ConfigError(
                f"lora.target_modules: {targets!r} matches no linear layer; the model has: {available}"
            )
        return targets
    unknown = [t for t in targets if not any(_matches(n, t) for n in linears)]
    if unknown:
        raise ConfigError(
            f"lora.target_modules: {', '.join(map(repr, unknown))} not found among the model's linear "
            f"layers: {available} (or use 'all-linear')"
        )
    return list(targets)
