"""bitsandbytes settings and streamed loading for ``quantization="4bit" | "8bit"`` (shared by every loader).

4-bit is NF4 with double quantisation; the output layer is never quantised. bitsandbytes 0.50
runs both on the CPU, so the same code path is tested here and used on GPUs.

``load_quantized`` quantises each weight as the checkpoint reader yields it and drops the float copy
at once, so a 4/8-bit load peaks at about the quantised model plus one tensor, not the whole model
in the load dtype (which ``from_pretrained(state_dict=...)`` needs, and QLoRA exists to avoid).
"""

from __future__ import annotations

from collections.abc import Iterable
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


def load_quantized(model: Any, tensors: Iterable[tuple[str, Any]], quantization: str, dtype: Any,
                   device: Any) -> set[str]:
    """Fill meta-built ``model`` from ``(key, tensor)`` pairs, quantising its Linear weights one by one.

    Uses transformers' bitsandbytes quantizer to swap the Linear layers (same skips, same flags and
    ``config.quantization_config`` as ``from_pretrained``) and quantises each weight exactly as its
    ``Bnb4bitQuantize``/``Bnb8bitQuantize`` do, so the result is bit-identical to that path. Returns
    the keys filled; the caller checks for missing ones and ties shared weights.
    """
    import torch
    from transformers.quantizers.auto import AutoHfQuantizer

    device = torch.device(device)
    quantizer = AutoHfQuantizer.from_config(bnb_config(quantization, dtype), pre_quantized=False)
    quantizer.validate_environment(device_map={"": device})
    shapes = {key: tuple(p.shape) for key, p in model.named_parameters()}
    quantizer.preprocess_model(model=model, dtype=dtype, device_map={"": device})
    seen: set[str] = set()
    for key, tensor in tensors:
        if key not in shapes:
            raise GlmtuneError(f"checkpoint weight {key} has no place in {type(model).__name__}")
        if tuple(tensor.shape) != shapes[key]:
            raise GlmtuneError(f"{key}: checkpoint shape {tuple(tensor.shape)} != model {shapes[key]}")
        _place(model, key, tensor, device, quantizer.param_needs_quantization(model, key), quantization)
        del tensor  # the float copy goes now, not with the whole state dict
        seen.add(key)
    for module in model.modules():  # buffers built outside meta (e.g. rotary inv_freq)
        for name, buf in module._buffers.items():
            if buf is not None and not buf.is_meta:
                module._buffers[name] = buf.to(device)
    model.hf_quantizer = quantizer
    quantizer.postprocess_model(model)
    fix_cpu_4bit(model)
    return seen


def _place(model: Any, key: str, tensor: Any, device: Any, quantize: bool, quantization: str) -> None:
    """Replace parameter ``key`` of ``model`` by ``tensor`` on ``device``, as a bnb parameter if ``quantize``."""
    import bitsandbytes as bnb
    from torch import nn

    module_name, _, name = key.rpartition(".")
    module = model.get_submodule(module_name)
    old = module._parameters[name]
    if not quantize:
        new = nn.Parameter(tensor.to(device, copy=True), requires_grad=old.requires_grad)
    elif quantization == "4bit":  # quantised by .to() (transformers' Bnb4bitQuantize)
        new = bnb.nn.Params4bit(tensor.to(device), requires_grad=False, **old.__dict__).to(device)
    else:  # transformers' Bnb8bitQuantize
        kwargs = {k: v for k, v in old.__dict__.items() if k != "SCB"}
        new = bnb.nn.Int8Params(tensor.to("cpu"), requires_grad=False, **kwargs).to(device)
    module._parameters[name] = new


def load_quantized_dispatched(model_cls: Any, config: Any, tensors: Iterable[tuple[str, Any]],
                              quantization: str, dtype: Any, device_map: Any) -> Any:
    """Multi-device plans ("auto" over several GPUs, per-module dicts): transformers places and
    quantises the whole read state dict (peak: the model in ``dtype``), as before streaming existed."""
    model = model_cls.from_pretrained(None, config=config, state_dict=dict(tensors), dtype=dtype,
                                      device_map=device_map, quantization_config=bnb_config(quantization, dtype))
    return fix_cpu_4bit(model)
