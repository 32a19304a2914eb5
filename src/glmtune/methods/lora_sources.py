"""Read a LoRA adapter as the tools before glmtune saved it: per-module factors ``(A, B)`` + settings.

Sources: a peft folder (``adapter_config.json`` + ``adapter_model.safetensors|bin``, as
ChatGLM-Tuning's ``save_pretrained``, chatglm2-6b-sft, the official LoRA demos), a folder with only
``adapter_model.bin`` (ChatGLM-Tuning's ``save_steps`` checkpoints), or a bare state dict file
(``.pt``/``.pth``/``.bin``/``.safetensors``, e.g. InstructGLM's ``chatglm-lora.pt``, written from
``named_parameters()`` of a peft model). Keys look like ``[base_model.model.]MODULE.lora_A[.NAME].weight``.

A bare file carries no ``lora_alpha``: the rank comes from the tensors; the alpha from an
``adapter_config.json`` beside the file when there is one, else :data:`DEFAULT_ALPHA` (32, the value
ChatGLM-Tuning and InstructGLM hard-coded). Nothing here needs a model; mapping the names onto one is
``glmtune.methods.thudm_lora``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.models.adapter_files import LORA_STATE_SUFFIXES, LORA_WEIGHT_FILES
from glmtune.utils.io import read_json

log = logging.getLogger("glmtune")

DEFAULT_ALPHA = 32.0  # ChatGLM-Tuning / InstructGLM: LoraConfig(r=lora_rank, lora_alpha=32, lora_dropout=0.1)
DEFAULT_DROPOUT = 0.1
STATE_SUFFIXES = LORA_STATE_SUFFIXES
WEIGHT_FILES = LORA_WEIGHT_FILES
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+?)\.lora_(?P<ab>[AB])(?:\.(?P<name>[\w\-]+))?\.weight$")


@dataclass
class LoraSource:
    """What a LoRA file holds: ``factors[module] = (A [r, in], B [out, r])`` on the names it was saved with."""

    path: Path
    factors: dict[str, tuple[Any, Any]]
    alpha: float
    dropout: float
    use_rslora: bool = False
    enable_lora: list[bool] | None = None  # peft <= 0.2 MergedLinear: which thirds of the fused qkv are adapted
    base_model: str | None = None
    bare: bool = False  # no adapter_config.json: alpha assumed
    adapter_names: set[str] = field(default_factory=set)

    def scale(self, rank: int) -> float:
        """The factor peft multiplies ``B @ A`` by for a module of rank ``rank``."""
        return self.alpha / (rank**0.5 if self.use_rslora else rank)


def weight_file(path: str | Path) -> Path | None:
    """The adapter's weight file: ``path`` itself (a state dict file) or the folder's adapter_model file."""
    path = Path(path)
    if path.is_file():
        return path if path.suffix in STATE_SUFFIXES else None
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    return None


def config_of(path: str | Path) -> dict[str, Any]:
    """``adapter_config.json`` of the folder (or of the folder holding a state dict file), or ``{}``."""
    path = Path(path)
    return read_json((path.parent if path.is_file() else path) / "adapter_config.json")


def read_keys(file: Path) -> list[str]:
    """The tensor names of a weight file (safetensors: header only)."""
    if file.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(file), framework="pt", device="cpu") as fh:
            return list(fh.keys())
    from glmtune.models.checkpoint_io import iter_file_tensors

    return [key for key, _ in iter_file_tensors(file)]


def parse_key(key: str) -> tuple[str, str, str | None] | None:
    """(module, "A"|"B", adapter name or None) of a LoRA factor key; None for anything else."""
    m = _KEY.match(key)
    return (m["module"], m["ab"], m["name"]) if m else None


def read_source(path: str | Path) -> LoraSource:
    """The LoRA factors and settings of ``path`` (folder or state dict file); anything else fails naming it."""
    from glmtune.models.checkpoint_io import iter_file_tensors

    path = Path(path)
    file = weight_file(path)
    if file is None:
        raise GlmtuneError(f"adapter {path}: no LoRA weights found (expected {' or '.join(WEIGHT_FILES)} in a "
                           f"folder, or a state dict file ending in {', '.join(STATE_SUFFIXES)})")
    config = config_of(path)
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise GlmtuneError(f"adapter {path} is a peft {config.get('peft_type')} adapter; glmtune maps LoRA only")
    for key, bad in (("use_dora", True), ("fan_in_fan_out", True)):
        if config.get(key) == bad:
            raise GlmtuneError(f"adapter {path}: adapter_config.json {key}={bad} is not supported for ChatGLM names")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise GlmtuneError(f"adapter {path}: adapter_config.json rank_pattern/alpha_pattern are not supported here")
    parts: dict[str, dict[str, Any]] = {}
    names: set[str] = set()
    other: list[str] = []
    for key, tensor in iter_file_tensors(file):
        parsed = parse_key(key)
        if parsed is None:
            other.append(key)
            continue
        module, ab, name = parsed
        names.add(name or "")
        parts.setdefault(module, {})[ab] = tensor.detach().float()
    if other or not parts:
        seen = ", ".join(other[:3]) or "none"
        raise GlmtuneError(f"adapter {file}: not a LoRA layout glmtune knows: expected keys like "
                           f"'base_model.model.<module>.lora_A.weight', found {seen} ({len(other)} other key(s))")
    if len(names) > 1:
        raise GlmtuneError(f"adapter {file} holds several adapters ({', '.join(sorted(n or '(unnamed)' for n in names))});"
                           " save one per file")  # fmt: skip
    factors = {}
    for module, ab in parts.items():
        if set(ab) != {"A", "B"}:
            missing = "lora_B" if "A" in ab else "lora_A"
            raise GlmtuneError(f"adapter {file}: {module} has no {missing} weight (both lora_A and lora_B are needed)")
        factors[module] = (ab["A"], ab["B"])
    bare = not config
    alpha = float(config.get("lora_alpha", DEFAULT_ALPHA))
    if bare:
        log.warning("adapter %s has no adapter_config.json: assuming lora_alpha=%s (ChatGLM-Tuning/InstructGLM); "
                    "put an adapter_config.json with lora_alpha beside it if it was trained with another", path, alpha)
    enable = config.get("enable_lora")
    return LoraSource(path=path, factors=factors, alpha=alpha,
                      dropout=float(config.get("lora_dropout", DEFAULT_DROPOUT) or 0.0),
                      use_rslora=bool(config.get("use_rslora", False)),
                      enable_lora=list(enable) if isinstance(enable, list) else None,
                      base_model=config.get("base_model_name_or_path"), bare=bare, adapter_names=names)
