"""Loading entry points: ``load_tokenizer``, ``load_model`` (a base model), ``detect_family``.

They only dispatch to the family's own loader (see ``glmtune.models.families``), so each family
keeps its checkpoint quirks in its own module. The public ``glmtune.load_model`` (``glmtune.api``)
adds ``adapter=``: attaching an adapter is ``glmtune.methods``' job, which ``glmtune.models`` never
imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.models.adapter_files import adapter_note
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
    **kwargs: Any,
) -> Any:
    """A ``transformers.PreTrainedModel`` (with ``generate``) for checkpoint folder ``path``.

    ``quantization`` is None, "4bit" (NF4, double quantisation) or "8bit" (bitsandbytes).
    An adapter folder given as ``path`` is refused, naming ``glmtune.load_model(BASE, adapter=...)``.
    """
    if "adapter" in kwargs:  # attaching one needs glmtune.methods, which glmtune.models never imports
        raise GlmtuneError("glmtune.models.loading.load_model loads base models only; "
                           "use glmtune.load_model(path, adapter=...) to attach an adapter")
    if quantization not in QUANTIZATIONS:
        raise GlmtuneError(f"quantization {quantization!r} is not allowed; choose one of: none, 4bit, 8bit")
    _refuse_adapter_folder(path)
    fam = get_family(path, family)
    return fam.load_model(path, dtype=dtype, device_map=device_map, quantization=quantization, **kwargs)


def _refuse_adapter_folder(path: str | Path) -> None:
    """An adapter output folder passed as the model fails naming the way to load it."""
    if not Path(path).is_dir():
        return
    note = adapter_note(path)
    if note:
        raise GlmtuneError(f"{path} holds {note}, not a model: load it with "
                           f"glmtune.load_model(BASE, adapter={str(path)!r})")
