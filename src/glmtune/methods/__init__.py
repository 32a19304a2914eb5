"""Tuning methods (``lora``, ``qlora``, ``freeze``, ``ptuning``, ``full``) behind one registry.

``get_method(cfg.method)`` returns a fresh :class:`TuningMethod`; see ``base.py`` for the contract.
Nothing here imports torch or peft at import time, so config parsing stays light.
"""

from __future__ import annotations

from glmtune.methods.base import (
    METHOD_CONFIGS,
    METHODS,
    TuningMethod,
    method_config_classes,
    register_method,
    unregister_method,
)
from glmtune.methods.freeze import FreezeConfig
from glmtune.methods.full import FullMethod
from glmtune.methods.lora import LoraConfig
from glmtune.methods.ptuning import PTuningConfig
from glmtune.methods.qlora import QLoraConfig

__all__ = [
    "METHODS", "METHOD_CONFIGS", "FreezeConfig", "FullMethod", "LoraConfig", "PTuningConfig", "QLoraConfig",
    "TuningMethod", "get_method", "method_config_classes", "register_method", "unregister_method",
]


def get_method(name: str) -> TuningMethod:
    """A new instance of the registered method ``name`` (unknown names list the choices)."""
    return METHODS.get(name)()
