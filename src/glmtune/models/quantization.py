"""bitsandbytes settings for ``quantization="4bit" | "8bit"`` (shared by every loader).

4-bit is NF4 with double quantisation; the output layer is never quantised. bitsandbytes 0.50
runs both on the CPU, so the same code path is tested here and used on GPUs. Every loader hands
this ``BitsAndBytesConfig`` to ``from_pretrained``, whose quantizer quantises each weight as it is
read (one float tensor at a time, not the whole model in the load dtype).
"""

from __future__ import annotations

from typing import Any

from glmtune.errors import GlmtuneError

SKIP_MODULES = ["lm_head"]


def bnb_config(quantization: str | None, compute_dtype: Any) -> Any:
    """A ``transformers.BitsAndBytesConfig`` for ``quantization`` (None -> None)."""
    if quantization is None:
        return None
    if quantization not in ("4bit", "8bit"):
        raise GlmtuneError(f"quantization {quantization!r} is not allowed; choose one of: none, 4bit, 8bit")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise GlmtuneError(f"quantization={quantization} needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=list(SKIP_MODULES),
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(SKIP_MODULES))


def fix_cpu_4bit(model: Any) -> Any:
    """Keep bitsandbytes' CPU fast path off for 4-bit layers whose shape it cannot pack.

    bitsandbytes 0.50 repacks 4-bit weights for AVX512-BF16 CPUs at the first inference forward and
    asserts ``in_features % blocksize == 0`` and ``out_features % 32 == 0`` there; real GLM shapes
    fit, small test shapes may not. Such layers use the generic (dequantising) 4-bit path instead.
    """
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return model
    for module in model.modules():
        if isinstance(module, Linear4bit) and getattr(module, "support_avx512bf16_for_cpu", False):
            state = getattr(module.weight, "quant_state", None)
            block = getattr(state, "blocksize", 64) or 64
            if module.in_features % block or module.out_features % 32:
                module.support_avx512bf16_for_cpu = False
    return model
