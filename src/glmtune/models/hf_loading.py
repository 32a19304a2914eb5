"""Plain transformers loading for natively supported models (GLM-4 layout, any other causal LM).

Never with ``trust_remote_code``: a folder whose config needs remote code is refused with a clear
error. A Glm folder written by ``glmtune export --to hf`` is loaded here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.models.families import read_folder_configs


def load_model(path: str | Path, dtype: Any = None, device_map: Any = None, quantization: str | None = None,
               rope_scaling: dict[str, Any] | None = None, attn_implementation: str | None = None,
               family: str | None = None, **kwargs: Any) -> Any:
    """``AutoModelForCausalLM.from_pretrained`` with glmtune's dtype policy and bitsandbytes settings."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from glmtune.models.dtypes import target_dtype
    from glmtune.models.quantization import bnb_config, fix_cpu_4bit

    if kwargs.pop("trust_remote_code", False):
        raise GlmtuneError("trust_remote_code is never used by glmtune")
    config_dict, _ = read_folder_configs(path)
    dtype_t = target_dtype(dtype, device_map, config_dict)
    try:
        config = AutoConfig.from_pretrained(str(path), trust_remote_code=False)
    except (ValueError, KeyError, OSError) as exc:
        raise GlmtuneError(f"transformers cannot load {path} natively (no remote code): {exc}") from None
    if rope_scaling:
        _apply_rope_scaling(config, rope_scaling)
    extra: dict[str, Any] = dict(kwargs)
    if attn_implementation:
        extra["attn_implementation"] = attn_implementation
    qconf = bnb_config(quantization, dtype_t)
    if qconf is not None:
        extra["quantization_config"] = qconf
        device_map = device_map if device_map is not None else "cpu"
    model = AutoModelForCausalLM.from_pretrained(
        str(path), config=config, dtype=dtype_t, device_map=device_map, trust_remote_code=False, **extra
    )
    return fix_cpu_4bit(model).eval()


def load_tokenizer(path: str | Path, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained`` without remote code."""
    from transformers import AutoTokenizer

    if kwargs.pop("trust_remote_code", False):
        raise GlmtuneError("trust_remote_code is never used by glmtune")
    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False, **kwargs)
    except (ValueError, OSError) as exc:
        raise GlmtuneError(f"transformers cannot load the tokenizer of {path} natively: {exc}") from None


def _apply_rope_scaling(config: Any, rope_scaling: dict[str, Any]) -> None:
    kind = rope_scaling.get("type") or rope_scaling.get("rope_type")
    if kind not in ("linear", "dynamic") or "factor" not in rope_scaling:
        raise GlmtuneError(f"rope_scaling must be {{'type': 'linear'|'dynamic', 'factor': F}} (got {rope_scaling!r})")
    params = dict(getattr(config, "rope_parameters", None) or {})
    if params.get("rope_type", "default") not in ("default", kind):
        raise GlmtuneError(f"the model already uses rope_type {params['rope_type']!r}; cannot add {kind!r}")
    factor = float(rope_scaling["factor"]) * float(params.get("factor", 1.0))
    params.update(rope_type=kind, factor=factor)
    config.rope_parameters = params
