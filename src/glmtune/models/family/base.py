"""The ``Family`` record and the ``FAMILIES`` registry: every per-family fact glmtune uses, in one place.

This module imports no family module (the family modules import it), so there is no import cycle:
``glmtune.models.family`` (the package) imports ``base`` and then each family module, whose one
``FAMILIES.register`` line adds its ``Family``. Importing the package is what registers the built-in
families; look families up through it (``from glmtune.models.family import FAMILIES``) or through
``glmtune.models.families`` (detection from a checkpoint folder).

Loaders and implementation modules are named as ``"module:function"`` / ``"module"`` strings so that
detecting a family, or reading one of its facts, never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from glmtune.registry import Registry

ALL_LINEAR = "all-linear"  # peft's shorthand: every linear layer but the output head
# the attention projections of transformers' Glm models (ChatGLM2/3 run on them: THUDM's fused
# query_key_value is split into these three at load time, each getting its own rank-r update)
QKV = ("q_proj", "k_proj", "v_proj")

# where a family's position ids come from (what the collator must build for a batch):
#   "model"     - the model derives them itself; batches are right-padded and carry no position_ids
#   "tokenizer" - 1-D position ids as the family's tokenizer lays them out (0 on pads, 0.. on tokens);
#                 the collator passes them explicitly
#   "glm_2d"    - GLM v1's 2-D positions ([B, 2, L]: position and block position around [gMASK] <sop>),
#                 built by the model from the attention mask, or by ``chatglm_v1.masks`` for packed rows
Positions = Literal["model", "tokenizer", "glm_2d"]


@dataclass(frozen=True)
class Family:
    """What glmtune needs to know to run, tune and batch one model generation natively."""

    name: str
    description: str
    # the folder's files (config.json, tokenizer_config.json, others on demand) -> True when it owns them
    detect: Callable[[Any], bool]
    tokenizer_loader: str  # "module:function" taking (path, **kwargs)
    model_loader: str  # "module:function" taking (path, dtype=, device_map=, quantization=, **kwargs)
    default_template: str  # template used when none is named (a TEMPLATES name)
    priority: int = 0  # higher is checked first
    # LoRA's default target modules: short module names of the family's model as glmtune loads it
    # (a tuple), or "all-linear" when no choice is better than every linear layer
    lora_targets: tuple[str, ...] | str = ALL_LINEAR
    # "module" implementing P-Tuning v2 for this family (enable_prefix / load_ptuning / save_ptuning,
    # THUDM's official folder layout); None: the family has no P-Tuning v2 (LoRA instead)
    prefix_module: str | None = None
    # side the collator pads training batches on: "left" for the ChatGLM families (as their tokenizers
    # and chat() do, so training batches look like inference ones; the tokenizer's own padding_side
    # is honoured), "right" otherwise (always: trailing pads are never attended to, and absolute
    # position models would see positions shifted by the pad count)
    padding_side: Literal["left", "right"] = "right"
    positions: Positions = "model"  # where position ids come from; see ``Positions`` above

    def load_tokenizer(self, path: str | Path, **kwargs: Any) -> Any:
        return resolve(self.tokenizer_loader)(path, **kwargs)

    def load_model(self, path: str | Path, **kwargs: Any) -> Any:
        """Every model loader takes ``family``: ChatGLM2 and ChatGLM3 share one that must not re-detect."""
        return resolve(self.model_loader)(path, family=self.name, **kwargs)


FAMILIES: Registry[Family] = Registry("model family")


def resolve(target: str) -> Callable[..., Any]:
    """The function a ``"module:function"`` string names (imported on demand)."""
    module_name, func = target.split(":")
    return getattr(importlib.import_module(module_name), func)
