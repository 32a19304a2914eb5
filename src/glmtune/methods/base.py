"""The contract between tuning methods and the trainer.

The trainer only ever talks to a :class:`TuningMethod`: it asks for extra ``load_model`` kwargs,
lets the method make the right parameters trainable, and lets it write the result. Keeping this
surface tiny means a new method is one module plus one ``@register_method("name", ItsConfig)`` line;
its config class (the YAML block of the same name, ``lora: {...}``) is registered next to it, so
``TrainConfig`` never lists methods itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.models.adapter_files import ADAPTER_INFO, read_adapter_info  # noqa: F401 (re-exported)
from glmtune.registry import Registry
from glmtune.utils.io import atomic_dir, follow_umask

log = logging.getLogger("glmtune.methods")

# ADAPTER_INFO (the note beside saved outputs: method, family, base model) and read_adapter_info live in
# glmtune.models.adapter_files, which glmtune.models reads too (models never imports methods)
INFO_ATTR = "_glmtune_method_info"  # set on the model by apply(), read back by save()


class TuningMethod:
    """One way of fine-tuning; subclasses are registered in ``glmtune.methods.METHODS``."""

    name: str = ""
    config_class: type | None = None  # the dataclass of the method's own YAML block (set by register_method)
    checkpointing_default: bool = False  # gradient checkpointing when the config leaves it unset

    def checkpointing(self, cfg: Any) -> bool:
        """``cfg.gradient_checkpointing``, or this method's default when it is unset (None)."""
        value = getattr(cfg, "gradient_checkpointing", None)
        return self.checkpointing_default if value is None else bool(value)

    def model_load_kwargs(self, cfg: Any) -> dict[str, Any]:
        """Extra kwargs for ``glmtune.load_model`` (e.g. ``{"quantization": "4bit"}``); ``{}`` by default."""
        return {}

    def apply(self, model: Any, cfg: Any) -> Any:
        """Make only the intended parameters trainable; return the (possibly wrapped) model.

        Honours ``cfg.adapter`` (continue from an adapter folder) and ``cfg.gradient_checkpointing``.
        """
        raise NotImplementedError

    def save(self, model: Any, output_dir: str | Path, tokenizer: Any = None,
             state_dict: dict[str, Any] | None = None) -> None:
        """Write the trained result (safetensors, or the official layout for P-Tuning) atomically.

        ``state_dict`` is the full state gathered by the Trainer when the model is sharded (DeepSpeed
        ZeRO-3, FSDP): the model's own parameters are then only shards, so it is what must be written.
        """
        raise NotImplementedError

    def trainable_summary(self, model: Any) -> str:
        """``"trainable 1.2M / 6.2B (0.02%)"``, for the log line at the start of training."""
        trainable, total = count_parameters(model)
        pct = 100.0 * trainable / total if total else 0.0
        return f"trainable {human_count(trainable)} / {human_count(total)} ({pct:.2f}%)"


# name -> TuningMethod subclass; ``glmtune.methods.get_method(name)`` instantiates one
METHODS: Registry[type[TuningMethod]] = Registry("tuning method")
# name -> config dataclass: the top-level YAML block ``name: {...}`` every TrainConfig accepts
METHOD_CONFIGS: Registry[type] = Registry("method config block")


def register_method(name: str, config: type | None = None) -> Callable[[type[TuningMethod]], type[TuningMethod]]:
    """Class decorator: register a method under ``name`` and its config dataclass as the ``name:`` block."""

    def deco(cls: type[TuningMethod]) -> type[TuningMethod]:
        METHODS.register(name)(cls)
        if config is not None:
            METHOD_CONFIGS.register(name)(config)
        cls.name, cls.config_class = name, config
        return cls

    return deco


def unregister_method(name: str) -> None:
    """Undo ``register_method`` (tests and plugins that register temporarily)."""
    METHODS.unregister(name)
    if name in METHOD_CONFIGS:
        METHOD_CONFIGS.unregister(name)


def method_config_classes() -> dict[str, type]:
    """Block name -> config class of every registered method, in registration order."""
    return dict(METHOD_CONFIGS.items())


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
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    elif hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        raise GlmtuneError(f"{type(model).__name__} does not support gradient checkpointing")
    if frozen_base and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    if getattr(model, "config", None) is not None:
        model.config.use_cache = False  # the cache is useless (and warned about) while checkpointing


def is_quantized(model: Any) -> bool:
    """True for a bitsandbytes 4/8-bit model (such weights cannot be trained directly)."""
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        return True
    return any(type(p).__name__ in ("Params4bit", "Int8Params") for p in model.parameters())


def upcast_fp16_params(model: Any, method: str, only_trainable: bool) -> int:
    """Give fp16 weights that will be trained a float32 master copy; returns how many were upcast.

    fp16 gradients on a ``.half()`` model underflow and the AMP grad scaler refuses them, so trained
    fp16 weights become float32 (the trainer's fp16 autocast still computes in half). bf16 is left alone.
    """
    import torch

    upcast = 0
    for param in model.parameters():
        if param.dtype == torch.float16 and (param.requires_grad or not only_trainable):
            param.data = param.data.float()
            upcast += 1
    if upcast:
        log.warning("%s: %d fp16 tensors upcast to float32 master weights (load in bf16 to avoid this)",
                    method, upcast)
    return upcast


def remember(model: Any, method: str, cfg: Any) -> None:
    """Note method, family and base model on the model so ``save`` can write them without ``cfg``."""
    base = getattr(cfg, "model", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    info = {"method": method, "family": getattr(cfg, "family", None), "base_model": str(base) if base else None,
            "template": getattr(cfg, "template", None)}  # the chat format inference must use with this output
    object.__setattr__(model, INFO_ATTR, info)


def write_adapter_info(folder: Path, model: Any, method: str, **extra: Any) -> None:
    """Record which method/family/base produced ``folder`` so later tools need no guessing."""
    info = {"method": method, "family": None, "base_model": None, **getattr(model, INFO_ATTR, {}), **extra}
    info["method"] = method
    (folder / ADAPTER_INFO).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# what a method's save writes; a result from an earlier run in the same folder must not outlive it
# (a stale model.safetensors.index.json would win over a new model.safetensors, a stale full model
# would load where a LoRA adapter now is)
RESULT_FILES = ("config.json", "generation_config.json", ADAPTER_INFO, "adapter_config.json",
                "adapter_model.safetensors", "adapter_model.bin", "model.safetensors",
                "model.safetensors.index.json", "model-*-of-*.safetensors", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin")


@contextlib.contextmanager
def output_folder(output_dir: str | Path, replaces: tuple[str, ...] = ()) -> Iterator[Path]:
    """A temp folder whose files land in ``output_dir`` only if the block succeeds.

    A new ``output_dir`` appears in one rename (``atomic_dir``). An existing one (a run folder with
    logs and checkpoints) is kept: each written file is renamed into it, replacing its old version,
    then its files matching a ``replaces`` pattern that the block did not write are removed.
    """
    out = Path(output_dir)
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        with atomic_dir(out) as tmp:
            yield tmp
        return
    if not out.is_dir():
        raise GlmtuneError(f"output_dir {out} exists and is not a folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        follow_umask(tmp)
        written = {entry.name for entry in tmp.iterdir()}
        for entry in sorted(tmp.iterdir()):
            target = out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
        for stale in {p for pattern in replaces for p in out.glob(pattern)}:
            if stale.name not in written and stale.is_file():
                stale.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def method_output(output_dir: str | Path, model: Any, method: str, tokenizer: Any = None) -> Iterator[Path]:
    """``output_folder`` for a method's result: the block writes the weights, then the adapter note and
    the tokenizer follow, so every saved folder says how it was made and loads on its own."""
    with output_folder(output_dir, replaces=RESULT_FILES) as tmp:
        yield tmp
        write_adapter_info(tmp, model, method)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
