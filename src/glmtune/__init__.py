"""glmtune: fine-tune, evaluate and serve ChatGLM-family models natively (no trust_remote_code).

The public API is imported lazily so that light commands (data conversion) do not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "load_tokenizer": "glmtune.api",
    "load_model": "glmtune.api",  # the base model (glmtune.models) + an adapter (glmtune.methods)
    "detect_family": "glmtune.api",
    "encode": "glmtune.data.encode",
    "build_chat_input": "glmtune.data.encode",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'glmtune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
