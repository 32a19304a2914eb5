"""LoRA adapters on THUDM module names, attached exactly to glmtune's native ChatGLM models.

ChatGLM2/3 run on transformers' Glm modules, so a LoRA trained on THUDM's
``transformer.encoder.layers.N.self_attention.query_key_value`` (ChatGLM-Tuning, chatglm2-6b-sft, the
official demos) is mapped onto them exactly, with the same rules as the base weights
(``glm_mapping.state_map``): the fused qkv update ``B @ A`` becomes three updates ``B_q @ A``,
``B_k @ A``, ``B_v @ A`` that share A and split B's rows ``[q heads | k groups | v groups]``;
``dense`` -> ``o_proj``, ``dense_h_to_4h`` -> ``gate_up_proj`` (same ``[gate | up]`` rows),
``dense_4h_to_h`` -> ``down_proj``. ChatGLM-6B (v1) keeps THUDM's names, so only the file layout
is normalised there. The result is written as a plain peft folder (temporary) and loaded by peft.

Also handled: bare state dicts (InstructGLM's ``chatglm-lora.pt``), keys carrying an adapter name
(``lora_A.default.weight``, saved from ``named_parameters()``), and peft 0.2's merged qkv layout
(``enable_lora``: A of rank r per enabled third, B a grouped Conv1d) expanded to one rank-k*r update.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.methods.lora_sources import LoraSource, config_of, parse_key, read_keys, read_source, weight_file

log = logging.getLogger("glmtune")

GLM_FAMILIES = ("chatglm2", "chatglm3")
THUDM_MODULES = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")


def base_of(model: Any) -> Any:
    """The plain model under a peft wrapper (module names without ``base_model.model.``)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def on_glm_modules(model: Any) -> bool:
    """True when ``model`` is a ChatGLM2/3 mapped onto transformers' Glm modules (THUDM names need mapping)."""
    from glmtune.models.families import model_family

    base = base_of(model)
    return model_family(base) in GLM_FAMILIES and not hasattr(base, "transformer")


def needs_mapping(path: str | Path, model: Any) -> bool:
    """Whether ``path`` must be rewritten before peft can load it onto ``model``."""
    path = Path(path)
    if path.is_file():
        return True
    file = weight_file(path)
    if file is None:
        return False  # not a LoRA weight layout: the caller's own checks say what it is
    config = config_of(path)
    if not config or "enable_lora" in config or "merge_weights" in config:  # peft <= 0.3 keys: normalised
        return True
    parsed = [p for p in (parse_key(k) for k in read_keys(file)) if p]
    if any(name for _, _, name in parsed):
        return True
    return on_glm_modules(model) and any(module.startswith("transformer.") for module, _, _ in parsed)


def _unmerge(module: str, a: Any, b: Any, enable: list[bool]) -> tuple[Any, Any, int]:
    """peft 0.2 MergedLinear -> one plain LoRA: (A, B over all output rows, rank of one group)."""
    import torch

    groups = sum(bool(e) for e in enable)
    if groups == 0 or a.shape[0] % groups or b.shape[0] % groups:
        raise GlmtuneError(f"{module}: lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} do not fit "
                           f"enable_lora={enable}")  # fmt: skip
    rank, rows = a.shape[0] // groups, b.shape[0] // groups
    full = torch.zeros(rows * len(enable), a.shape[0], dtype=b.dtype)
    chunks = [i for i, e in enumerate(enable) if e]
    for j, chunk in enumerate(chunks):  # group j: A rows j*r.., B rows j*rows.. -> output third `chunk`
        full[chunk * rows:(chunk + 1) * rows, j * rank:(j + 1) * rank] = b[j * rows:(j + 1) * rows]
    return a, full, rank


def to_native(source: LoraSource, model: Any) -> dict[str, tuple[Any, Any, float]]:
    """``{native module: (A, B, scale)}`` for ``model``; every module and shape checked."""
    from glmtune.models.glm_mapping import state_map

    base = base_of(model)
    modules = dict(base.named_modules())
    glm = on_glm_modules(base)
    out: dict[str, tuple[Any, Any, float]] = {}
    for module, (a, b) in source.factors.items():
        if b.dim() == 3:  # peft 0.2 stored a merged lora_B as a Conv1d weight [out, r, 1]
            b = b.squeeze(-1)
        rank = a.shape[0]
        if source.enable_lora and module.endswith("query_key_value"):
            if glm:
                raise GlmtuneError(f"adapter {source.path}: peft 0.2's merged qkv layout (enable_lora) exists for "
                                   "ChatGLM-6B only; this is a ChatGLM2/3 model")
            a, b, rank = _unmerge(module, a, b, source.enable_lora)
        scale = source.scale(rank)
        if glm and module.startswith("transformer."):
            try:
                pairs = [(k.removesuffix(".weight"), part) for k, part in state_map.to_glm(f"{module}.weight", b, base.config)]
            except GlmtuneError as exc:
                raise GlmtuneError(f"adapter {source.path}: LoRA on {module} has no place in this model ({exc})") from None
        else:
            pairs = [(module, b)]
        for name, part in pairs:
            target = modules.get(name)
            if target is None or not hasattr(target, "in_features"):
                raise GlmtuneError(f"adapter {source.path}: module {name!r} (from {module}) is not a linear layer "
                                   f"of this {type(base).__name__}")
            if (a.shape[1], part.shape[0]) != (target.in_features, target.out_features):
                raise GlmtuneError(f"adapter {source.path}: {module} LoRA is {a.shape[1]} -> {part.shape[0]}, the "
                                   f"model's {name} is {target.in_features} -> {target.out_features}: another base size?")
            out[name] = (a, part.contiguous(), scale)
    return out


def target_names(names: list[str], model: Any) -> list[str]:
    """peft ``target_modules``: short names where every such layer is adapted, else the full names."""
    import torch

    linears = [n for n, m in base_of(model).named_modules() if isinstance(m, torch.nn.Linear) or hasattr(m, "base_layer")]
    targets: list[str] = []
    for short in dict.fromkeys(n.rsplit(".", 1)[-1] for n in names):
        mine = sorted(n for n in names if n.rsplit(".", 1)[-1] == short)
        every = sorted(n for n in linears if n.rsplit(".", 1)[-1] == short)
        targets += [short] if mine == every else mine
    return targets


def write_peft(folder: Path, native: dict[str, tuple[Any, Any, float]], source: LoraSource, model: Any) -> None:
    """A standard peft LoRA folder (adapter_config.json + adapter_model.safetensors) for ``native``."""
    from safetensors.torch import save_file

    settings = {(a.shape[0], scale) for a, _, scale in native.values()}
    if len(settings) != 1:
        raise GlmtuneError(f"adapter {source.path}: modules of different ranks/scales {sorted(settings)} are not supported")
    rank, scale = settings.pop()
    tensors = {}
    for name, (a, b, _) in native.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = a.clone()  # q/k/v share A: one copy each
        tensors[f"base_model.model.{name}.lora_B.weight"] = b.contiguous()
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": scale * rank,
              "lora_dropout": source.dropout, "target_modules": target_names(list(native), model), "bias": "none",
              "base_model_name_or_path": None, "inference_mode": True, "use_rslora": False}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


@contextlib.contextmanager
def peft_folder(path: str | Path, model: Any) -> Iterator[Path]:
    """A folder peft can load onto ``model``: ``path`` itself, or a temporary mapped copy of it."""
    if not needs_mapping(path, model):
        yield Path(path)
        return
    source = read_source(path)
    native = to_native(source, model)
    log.info("adapter %s: %d LoRA module(s) on THUDM/legacy names mapped onto %d native module(s)",
             path, len(source.factors), len(native))
    with tempfile.TemporaryDirectory(prefix="glmtune-lora-") as tmp:
        write_peft(Path(tmp), native, source, model)
        yield Path(tmp)
