"""Public entry points: ``load_tokenizer``, ``load_model``, ``detect_family``.

They only dispatch to the family's own loader (see ``glmtune.models.families``), so each family
keeps its checkpoint quirks in its own module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.models.families import detect_family, get_family

__all__ = ["detect_family", "load_model", "load_tokenizer"]

QUANTIZATIONS = (None, "4bit", "8bit")


def load_tokenizer(path: str | Path, family: str | None = None, **kwargs: Any) -> Any:
    """A ``transformers.PreTrainedTokenizer`` built from the checkpoint's own tokenizer files."""
    return get_family(path, family).load_tokenizer(path, **kwargs)


def load_model(
    path: str | Path,
    family: str | None = None,
    dtype: Any = None,
    device_map: Any = None,
    quantization: str | None = None,
    adapter: str | Path | None = None,
    **kwargs: Any,
) -> Any:
    """A ``transformers.PreTrainedModel`` (with ``generate``) for checkpoint folder ``path``.

    ``quantization`` is None, "4bit" (NF4, double quantisation) or "8bit" (bitsandbytes).
    ``adapter`` is a glmtune/peft LoRA folder or an official ChatGLM P-Tuning folder.
    """
    if quantization not in QUANTIZATIONS:
        raise GlmtuneError(f"quantization {quantization!r} is not allowed; choose one of: none, 4bit, 8bit")
    _refuse_adapter_folder(path)
    fam = get_family(path, family)
    model = fam.load_model(path, dtype=dtype, device_map=device_map, quantization=quantization, **kwargs)
    if adapter is not None:
        from glmtune.methods.adapters import attach_adapter

        model = attach_adapter(model, adapter)
    return model


def _refuse_adapter_folder(path: str | Path) -> None:
    """An adapter output folder passed as the model fails naming the way to load it."""
    if not Path(path).is_dir():
        return
    from glmtune.methods.adapters import adapter_note

    note = adapter_note(path)
    if note:
        raise GlmtuneError(f"{path} holds {note}, not a model: load it with "
                           f"glmtune.load_model(BASE, adapter={str(path)!r})")
