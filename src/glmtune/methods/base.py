"""The contract between tuning methods and the trainer.

The trainer only ever talks to a :class:`TuningMethod`: it asks for extra ``load_model`` kwargs,
lets the method make the right parameters trainable, and lets it write the result. Keeping this
surface tiny means a new method is one module plus one ``@METHODS.register`` line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError

ADAPTER_INFO = "glmtune_adapter.json"  # small note beside saved adapters: method, family, base model


class TuningMethod:
    """One way of fine-tuning; subclasses are registered in ``glmtune.methods.METHODS``."""

    name: str = ""

    def model_load_kwargs(self, cfg: Any) -> dict[str, Any]:
        """Extra kwargs for ``glmtune.load_model`` (e.g. ``{"quantization": "4bit"}``); ``{}`` by default."""
        return {}

    def apply(self, model: Any, cfg: Any) -> Any:
        """Make only the intended parameters trainable; return the (possibly wrapped) model.

        Honours ``cfg.adapter`` (continue from an adapter folder) and ``cfg.gradient_checkpointing``.
        """
        raise NotImplementedError

    def save(self, model: Any, output_dir: str | Path, tokenizer: Any = None) -> None:
        """Write the trained result (safetensors, or the official layout for P-Tuning) atomically."""
        raise NotImplementedError

    def trainable_summary(self, model: Any) -> str:
        """``"trainable 1.2M / 6.2B (0.02%)"``, for the log line at the start of training."""
        trainable, total = count_parameters(model)
        pct = 100.0 * trainable / total if total else 0.0
        return f"trainable {human_count(trainable)} / {human_count(total)} ({pct:.2f}%)"


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit packed weights count as their logical size."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        if param.__class__.__name__ == "Params4bit":  # two 4-bit values per stored byte
            n *= 2
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def freeze_all(model: Any) -> None:
    for param in model.parameters():
        param.requires_grad_(False)


def enable_gradient_checkpointing(model: Any, frozen_base: bool) -> None:
    """Non-reentrant checkpointing; with a frozen base the inputs must require grad for peft/prefix."""
    if not hasattr(model, "gradient_checkpointing_enable"):
        raise GlmtuneError(f"{type(model).__name__} does not support gradient checkpointing")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if frozen_base and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    if getattr(model, "config", None) is not None:
        model.config.use_cache = False  # the cache is useless (and warned about) while checkpointing


def write_adapter_info(folder: Path, method: str, cfg: Any = None, model: Any = None, **extra: Any) -> None:
    """Record which method/family/base produced ``folder`` so later tools need no guessing."""
    base = getattr(cfg, "model", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    info = {"method": method, "family": getattr(cfg, "family", None), "base_model": base or None, **extra}
    (folder / ADAPTER_INFO).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_adapter_info(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / ADAPTER_INFO
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}
