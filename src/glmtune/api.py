"""The public loading API behind ``glmtune.load_model`` / ``load_tokenizer`` / ``detect_family``.

``glmtune.models`` loads base models and tokenizers and never imports ``glmtune.methods``;
``load_model(..., adapter=DIR)`` is the one place both meet: the base model comes from
``glmtune.models.loading``, the adapter is attached by ``glmtune.methods.adapters``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glmtune.models import loading
from glmtune.models.loading import detect_family, load_tokenizer

__all__ = ["detect_family", "load_model", "load_tokenizer"]


def load_model(path: str | Path, family: str | None = None, adapter: str | Path | None = None, **kwargs: Any) -> Any:
    """A ``transformers.PreTrainedModel`` (with ``generate``) for checkpoint folder ``path``, with
    ``adapter`` (a glmtune/peft LoRA folder or an official ChatGLM P-Tuning folder) attached.

    ``family`` overrides detection (chatglm, chatglm2, chatglm3, glm4, hf). Every other keyword goes to
    :func:`glmtune.models.loading.load_model`: ``dtype``, ``device_map``, ``quantization`` (None,
    "4bit" NF4 + double quantisation, "8bit"), ``rope_scaling``, ``attn_implementation``.
    """
    model = loading.load_model(path, family=family, **kwargs)
    if adapter is not None:
        from glmtune.methods.adapters import attach_adapter  # glmtune.methods only when an adapter is given

        model = attach_adapter(model, adapter)
    return model
