"""One place that turns user dtype spellings into torch dtypes."""

from __future__ import annotations

from typing import Any

from glmtune.errors import GlmtuneError

_ALIASES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}


def resolve_dtype(dtype: Any, default: str = "float32") -> Any:
    """``None``/str/torch.dtype -> torch.dtype; ``"auto"`` means bf16 where supported, else float32."""
    import torch

    if dtype is None:
        dtype = default
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower()
    if key == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if key not in _ALIASES:
        raise GlmtuneError(f"unknown dtype {dtype!r}; choose one of: auto, float32, float16, bfloat16")
    return getattr(torch, _ALIASES[key])


def target_dtype(dtype: Any, device_map: Any, config: dict[str, Any]) -> Any:
    """The load dtype of every family: ``dtype=None`` is float32 on the CPU and the checkpoint's own
    dtype (``torch_dtype``, or ``dtype`` as transformers >= 5 writes it) when placed on a GPU."""
    if dtype is None and wants_gpu(device_map):
        return resolve_dtype(config.get("torch_dtype") or config.get("dtype") or "float32")
    return resolve_dtype(dtype)


def wants_gpu(device_map: Any) -> bool:
    """True when ``device_map`` places weights on an accelerator ("cuda", "auto", an index, a plan)."""
    if device_map is None:
        return False
    text = str(device_map)
    return "cuda" in text or text == "auto" or isinstance(device_map, int) or (
        isinstance(device_map, dict) and any(str(v) not in ("cpu", "disk") for v in device_map.values()))
