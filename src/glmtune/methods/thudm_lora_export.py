"""``glmtune export --adapter-layout chatglm``: a LoRA written back on THUDM's module names.

The output is a plain peft folder (``adapter_config.json`` + ``adapter_model.safetensors``, keys
``base_model.model.transformer.encoder.layers.N.self_attention.query_key_value.lora_A.weight``) that
peft on THUDM's own remote-code model, and vLLM's ChatGLM LoRA support, load.

glmtune's ChatGLM2/3 LoRA adapts q, k and v separately, each with its own A. One fused
``query_key_value`` LoRA of the same rank cannot hold that, so the three are stacked, exactly:
``A = [A_q; A_k; A_v]`` (rank 3r) and ``B`` block-diagonal, B_q in the q rows, B_k in the k rows,
B_v in the v rows (``B @ A`` is then ``[B_q A_q; B_k A_k; B_v A_v]``). peft needs one rank for the
whole adapter, so the other modules (dense, dense_h_to_4h, ...) are padded with zero rank
components to that rank, and ``lora_alpha`` is scaled so ``alpha / r`` keeps every module's update
unchanged. ChatGLM-6B (v1) already runs on THUDM's names: the adapter is copied with clean keys.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.methods.lora_sources import LoraSource, read_source
from glmtune.models.adapter_files import ADAPTER_INFO

FAMILIES = ("chatglm", "chatglm2", "chatglm3")
_RENAME = {"self_attn.o_proj": "self_attention.dense", "mlp.gate_up_proj": "mlp.dense_h_to_4h",
           "mlp.down_proj": "mlp.dense_4h_to_h"}
_QKV = ("q_proj", "k_proj", "v_proj")


def qkv_rows(base: Path) -> tuple[int, int]:
    """(q rows, k rows == v rows) of the fused projection, from the base model's config.json."""
    from glmtune.models.families import read_folder_configs

    cfg, _ = read_folder_configs(base)
    heads = int(cfg["num_attention_heads"])
    if cfg.get("model_type") == "chatglm":  # THUDM layout
        head_dim = int(cfg.get("kv_channels") or cfg["hidden_size"] // heads)
        groups = int(cfg.get("multi_query_group_num") or heads) if cfg.get("multi_query_attention") else heads
    else:  # written by glmtune export --to hf (transformers Glm)
        head_dim = int(cfg.get("head_dim") or cfg["hidden_size"] // heads)
        groups = int(cfg.get("num_key_value_heads") or heads)
    return heads * head_dim, groups * head_dim


def _thudm_name(module: str) -> tuple[str, str | None]:
    """(THUDM module, q/k/v part or None) for one native Glm module name."""
    if module == "lm_head":
        return "transformer.output_layer", None
    parts = module.split(".")
    if len(parts) < 4 or parts[:2] != ["model", "layers"]:
        raise GlmtuneError(f"LoRA on {module}: no THUDM ChatGLM2/3 module corresponds to it")
    layer, rest = parts[2], ".".join(parts[3:])
    prefix = f"transformer.encoder.layers.{layer}."
    if rest.startswith("self_attn.") and rest.split(".", 1)[1] in _QKV:
        return prefix + "self_attention.query_key_value", rest.split(".", 1)[1]
    if rest in _RENAME:
        return prefix + _RENAME[rest], None
    raise GlmtuneError(f"LoRA on {module}: no THUDM ChatGLM2/3 module corresponds to it")


def to_thudm(source: LoraSource, base: Path, family: str) -> dict[str, tuple[Any, Any]]:
    """``{THUDM module: (A, B)}`` with every module's scale folded to the first module's."""
    import torch

    scale0 = source.scale(next(iter(source.factors.values()))[0].shape[0])

    def scaled(a: Any, b: Any) -> tuple[Any, Any]:
        return a, b * (source.scale(a.shape[0]) / scale0)

    if family == "chatglm" or all(m.startswith("transformer.") for m in source.factors):
        return {m: scaled(a, b) for m, (a, b) in source.factors.items()}
    out: dict[str, tuple[Any, Any]] = {}
    fused: dict[str, dict[str, tuple[Any, Any]]] = {}
    for module, (a, b) in source.factors.items():
        name, part = _thudm_name(module)
        if part is None:
            out[name] = scaled(a, b)
        else:
            fused.setdefault(name, {})[part] = scaled(a, b)
    nq, nkv = qkv_rows(base)
    for name, parts in fused.items():
        present = [p for p in _QKV if p in parts]
        a = torch.cat([parts[p][0] for p in present], dim=0)
        b = torch.zeros(nq + 2 * nkv, a.shape[0], dtype=a.dtype)
        offsets = {"q_proj": 0, "k_proj": nq, "v_proj": nq + nkv}
        col = 0
        for p in present:
            pb = parts[p][1]
            b[offsets[p]:offsets[p] + pb.shape[0], col:col + pb.shape[1]] = pb
            col += pb.shape[1]
        out[name] = (a, b)
    return dict(sorted(out.items()))


def pad_rank(a: Any, b: Any, rank: int) -> tuple[Any, Any]:
    """The same update ``B @ A`` with zero components added up to ``rank``."""
    import torch

    extra = rank - a.shape[0]
    if extra == 0:
        return a.contiguous(), b.contiguous()
    return torch.cat([a, a.new_zeros(extra, a.shape[1])]), torch.cat([b, b.new_zeros(b.shape[0], extra)], dim=1)


def export_thudm_lora(base: str | Path, adapter: str | Path, out: str | Path, family: str | None = None,
                      overwrite: bool = False) -> str:
    """Write ``adapter`` (trained on ``base``) on THUDM names into ``out``; returns a one-line note."""
    from safetensors.torch import save_file

    from glmtune.models.adapter_files import adapter_kind
    from glmtune.models.families import detect_family
    from glmtune.utils.io import atomic_dir, claim_output, write_marker

    base, adapter = Path(base), Path(adapter)
    family = family or detect_family(base)
    if family not in FAMILIES:
        raise GlmtuneError(f"--adapter-layout chatglm: {base} is a {family} model; THUDM names exist for "
                           f"{', '.join(FAMILIES)}")  # fmt: skip
    if adapter_kind(adapter) != "lora":
        raise GlmtuneError(f"--adapter {adapter} is a P-Tuning v2 prefix, already in the official layout; "
                           "--adapter-layout chatglm converts LoRA adapters")
    claim_output(out, "export-lora-chatglm", overwrite)
    source = read_source(adapter)
    if source.enable_lora:
        raise GlmtuneError(f"--adapter {adapter} is already on THUDM names (peft 0.2's merged enable_lora layout)")
    modules = to_thudm(source, base, family)
    rank = max(a.shape[0] for a, _ in modules.values())
    scale = source.scale(next(iter(source.factors.values()))[0].shape[0])
    alpha = scale * rank
    tensors = {}
    for name, (a, b) in modules.items():
        a, b = pad_rank(a, b, rank)
        tensors[f"base_model.model.{name}.lora_A.weight"] = a
        tensors[f"base_model.model.{name}.lora_B.weight"] = b
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank,
              "lora_alpha": int(alpha) if float(alpha).is_integer() else alpha, "lora_dropout": source.dropout,
              "target_modules": sorted({n.rsplit(".", 1)[-1] for n in modules}), "bias": "none",
              "fan_in_fan_out": False, "inference_mode": True, "modules_to_save": None,
              "base_model_name_or_path": source.base_model or str(base)}
    with atomic_dir(out) as tmp:
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        info = adapter.parent / ADAPTER_INFO if adapter.is_file() else adapter / ADAPTER_INFO
        if info.is_file():  # family and chat format, so glmtune still refuses another family and keeps the prompt
            shutil.copy2(info, tmp / ADAPTER_INFO)
        write_marker(tmp, "export-lora-chatglm")
    return (f"wrote the LoRA {adapter} on THUDM {family} module names to {out} "
            f"(rank {rank}, lora_alpha {config['lora_alpha']}: q/k/v stacked into query_key_value, exact)")
