"""LoRA through peft: low-rank updates on chosen linear layers; the base stays frozen."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmtune.errors import ConfigError, GlmtuneError
from glmtune.methods.base import (
    TuningMethod,
    enable_gradient_checkpointing,
    freeze_all,
    method_output,
    register_method,
    remember,
    upcast_fp16_params,
)
from glmtune.methods.targets import resolve_targets
from glmtune.methods.thudm_lora import peft_folder
from glmtune.models.adapter_files import read_adapter_info, read_lora_config
from glmtune.models.families import model_family

log = logging.getLogger("glmtune.train")


@dataclass
class LoraConfig:
    """The ``lora:`` block (also used by ``qlora``)."""

    r: int = 8  # rank of the low-rank update
    alpha: float = 16  # scaling numerator: the update is multiplied by alpha / r
    dropout: float = 0.05  # dropout on the LoRA input, in [0, 1)
    # module names to adapt; None = the family's default (see glmtune.methods.targets),
    # "all-linear" = every linear layer except lm_head
    target_modules: list[str] | str | None = None
    modules_to_save: list[str] | None = None  # modules trained in full and saved with the adapter

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ConfigError(f"lora.r must be > 0, got {self.r}")
        if self.alpha <= 0:
            raise ConfigError(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise ConfigError("lora.target_modules must not be empty (leave it unset for the family default)")
        if isinstance(self.target_modules, str) and not self.target_modules.strip():
            raise ConfigError("lora.target_modules must not be an empty string")
        if self.modules_to_save is not None and not self.modules_to_save:
            raise ConfigError("lora.modules_to_save must not be empty (leave it unset for none)")


def wrap_with_lora(model: Any, cfg: Any) -> Any:
    """Freeze the base and wrap it in a peft LoRA model (new, or continued from ``cfg.adapter``)."""
    import peft

    freeze_all(model)
    adapter = getattr(cfg, "adapter", None)
    if adapter:
        with peft_folder(adapter, model) as folder:  # THUDM-named / bare state dict: mapped to native names
            found = read_lora_config(folder)
        if not found:
            raise ConfigError(
                f"adapter: {adapter} holds no LoRA adapter (no adapter_config.json); "
                "a P-Tuning folder continues with method: ptuning"
            )
        if str(found.get("peft_type", "LORA")).upper() != "LORA":
            raise ConfigError(f"adapter: {adapter} is a peft {found.get('peft_type')} adapter, not LoRA")
        adopt_adapter_settings(cfg, adapter, found)  # the adapter's rank/targets are what training continues
        return load_lora(model, adapter, is_trainable=True, family=getattr(cfg, "family", None))
    block: LoraConfig = getattr(cfg, "lora", None) or LoraConfig()
    targets = resolve_targets(model, block.target_modules, getattr(cfg, "family", None))
    peft_config = peft.LoraConfig(
        r=block.r,
        lora_alpha=block.alpha,
        lora_dropout=block.dropout,
        target_modules=targets,
        modules_to_save=block.modules_to_save,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with _peft_old_names():
        return peft.get_peft_model(model, peft_config)


@contextmanager
def _peft_old_names() -> Iterator[None]:
    """peft (up to 0.21) reads transformers' deprecated ``is_gradient_checkpointing`` itself; that
    FutureWarning is peft's to fix and says nothing the user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


THUDM_MODULES = ("query_key_value", "dense_h_to_4h", "dense_4h_to_h")
# lora: block key -> the adapter_config.json key it must agree with when training continues an adapter
ADAPTER_KEYS = {"r": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "target_modules": "target_modules"}


def adopt_adapter_settings(cfg: Any, adapter: str | Path, found: dict[str, Any]) -> None:
    """Continuing an adapter trains its own rank/alpha/targets: a ``lora:`` key left at its default takes
    the adapter's value (said, and recorded in the saved config); one set to something else is refused."""
    block = getattr(cfg, "lora", None)
    if block is None:
        return
    defaults = LoraConfig()
    if isinstance(found.get("enable_lora"), list):  # peft 0.2 merged layout: the mapped adapter's settings decide
        return
    for key, saved_key in ADAPTER_KEYS.items():
        if saved_key not in found:
            continue
        if key == "target_modules" and _thudm_names(found[saved_key]) and not _native_thudm_names(cfg):
            continue  # THUDM names become native ones once mapped onto the loaded ChatGLM2/3 model
        saved, mine = found[saved_key], getattr(block, key)
        same = sorted(saved) == sorted(mine) if isinstance(saved, list) and isinstance(mine, list) else saved == mine
        if same:
            continue
        if mine == getattr(defaults, key):
            log.info("lora.%s: continuing adapter %s with its own %r", key, adapter, saved)
            setattr(block, key, saved)
        else:
            raise ConfigError(f"lora.{key}: {mine!r}, but adapter {adapter} has {saved_key}={saved!r}; continuing "
                              "an adapter keeps its settings: drop the key, or train a new adapter (no adapter=)")


def _native_thudm_names(cfg: Any) -> bool:
    """Whether the run's family keeps THUDM's module names natively (its LoRA targets are THUDM names)."""
    from glmtune.models.family import FAMILIES

    family = getattr(cfg, "family", None)
    if not family or family not in FAMILIES:
        return False
    targets = FAMILIES.get(family).lora_targets
    return not isinstance(targets, str) and _thudm_names(list(targets))


def check_adapter_family(path: str | Path, family: str | None, model: Any) -> None:
    """An adapter records the family it was trained on; another family's model is refused."""
    info = read_adapter_info(path)
    family = family or model_family(model)
    trained = info.get("family")
    if trained and family and trained != family:
        raise GlmtuneError(f"adapter {path} was trained on a {trained} model ({info.get('base_model')}), this model is "
                           f"{family}: the two differ in weights and prompt format; use a {trained} base")  # fmt: skip


def _thudm_names(targets: Any) -> bool:
    return isinstance(targets, (list, str)) and any(t in THUDM_MODULES for t in
                                                    ([targets] if isinstance(targets, str) else targets))


def peft_error(path: str | Path, exc: Exception, family: str | None) -> GlmtuneError:
    """peft's error on attaching an adapter, as one line that says why."""
    targets = read_lora_config(path).get("target_modules")
    why = (f"its target modules {targets} are THUDM's module names, which glmtune's native "
           f"{family or 'ChatGLM2/3'} model does not have (it runs on transformers' Glm modules)"
           if _thudm_names(targets) else f"peft says: {str(exc).splitlines()[0][:300]}")
    return GlmtuneError(f"adapter {path} cannot be attached to this model: {why}")


def load_lora(model: Any, path: str | Path, is_trainable: bool = False, family: str | None = None,
              adapter_name: str = "default") -> Any:
    """peft's ``PeftModel.from_pretrained`` (THUDM-named LoRA mapped first, see ``thudm_lora``), refusing an
    adapter made for another family and turning peft's errors (e.g. target modules this model does not have) into one line that says why."""
    import peft

    check_adapter_family(path, family, model)
    with peft_folder(path, model) as folder, _peft_old_names():  # THUDM names / bare state dicts: mapped copy
        try:
            return peft.PeftModel.from_pretrained(model, str(folder), is_trainable=is_trainable,
                                                  adapter_name=adapter_name)
        except (ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
            raise peft_error(path, exc, family or model_family(model)) from None


def save_peft(model: Any, output_dir: str | Path, method: str, tokenizer: Any = None,
              state_dict: dict[str, Any] | None = None) -> None:
    """adapter_model.safetensors + adapter_config.json + glmtune_adapter.json, written atomically
    (from ``state_dict`` when the Trainer gathered a sharded model's, peft picks the adapter keys)."""
    if not hasattr(model, "peft_config"):
        raise GlmtuneError(f"{method}.save expects the peft model returned by apply(), got {type(model).__name__}")
    with method_output(output_dir, model, method, tokenizer) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True, state_dict=state_dict)


@register_method("lora", LoraConfig)
class LoraMethod(TuningMethod):
    """Low-rank adapters on the attention projections (by default); the base model stays frozen."""

    name = "lora"

    def apply(self, model: Any, cfg: Any) -> Any:
        remember(model, self.name, cfg)
        if self.checkpointing(cfg):
            enable_gradient_checkpointing(model, frozen_base=True)
        wrapped = wrap_with_lora(model, cfg)
        upcast_fp16_params(wrapped, self.name, only_trainable=True)  # fp16 modules_to_save copies
        remember(wrapped, self.name, cfg)
        return wrapped

    def save(self, model: Any, output_dir: str | Path, tokenizer: Any = None,
             state_dict: dict[str, Any] | None = None) -> None:
        save_peft(model, output_dir, self.name, tokenizer, state_dict)
