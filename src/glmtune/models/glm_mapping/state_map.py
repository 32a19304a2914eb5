"""THUDM ChatGLM2/3 weight names <-> transformers Glm weight names, one tensor at a time.

Loading does not use this module: ``GlmForCausalLM.from_pretrained`` applies the same mapping as a
transformers conversion mapping (``glm_mapping.conversion``). Here: ``to_glm`` for ``glmtune info``
(shapes from checkpoint headers) and ``to_chatglm`` for ``export --to chatglm``.

The only non-renames: the fused ``query_key_value`` (rows ``[q heads | k groups | v groups]``) is
split into q/k/v, and back. ``dense_h_to_4h`` already stores ``[gate | up]`` rows in the order
``GlmMLP`` chunks them, so it is ``gate_up_proj`` as is. The ``rotary_pos_emb.inv_freq`` buffer of
THUDM checkpoints is dropped on load (Glm computes it from the config) and written back on export.
"""

from __future__ import annotations

import re
from typing import Any

from glmtune.errors import GlmtuneError

INV_FREQ_KEY = "transformer.rotary_pos_emb.inv_freq"

_LAYER = re.compile(r"^transformer\.encoder\.layers\.(\d+)\.(.+)$")
_GLM_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_TOP = {
    "transformer.embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "transformer.encoder.final_layernorm.weight": "model.norm.weight",
    "transformer.output_layer.weight": "lm_head.weight",
}
_IN_LAYER = {
    "input_layernorm.weight": "input_layernorm.weight",
    "post_attention_layernorm.weight": "post_attention_layernorm.weight",
    "self_attention.dense.weight": "self_attn.o_proj.weight",
    "mlp.dense_h_to_4h.weight": "mlp.gate_up_proj.weight",
    "mlp.dense_4h_to_h.weight": "mlp.down_proj.weight",
}
_TOP_BACK = {v: k for k, v in _TOP.items()}
_IN_LAYER_BACK = {v: k for k, v in _IN_LAYER.items()}


def qkv_sizes(glm_config: Any) -> tuple[int, int]:
    """(rows of q, rows of k == rows of v) in the fused projection."""
    d = glm_config.head_dim
    return glm_config.num_attention_heads * d, glm_config.num_key_value_heads * d


def to_glm(key: str, tensor: Any, glm_config: Any) -> list[tuple[str, Any]]:
    """Glm (name, tensor) pairs for one THUDM tensor; [] for tensors Glm does not store."""
    if key in _TOP:
        return [(_TOP[key], tensor)]
    if key == INV_FREQ_KEY or key.endswith(".inv_freq"):
        return []
    m = _LAYER.match(key)
    if m:
        layer, rest = m.groups()
        base = f"model.layers.{layer}."
        if rest in _IN_LAYER:
            return [(base + _IN_LAYER[rest], tensor)]
        if rest.startswith("self_attention.query_key_value."):
            kind = rest.rsplit(".", 1)[1]  # weight / bias
            nq, nkv = qkv_sizes(glm_config)
            if tensor.shape[0] != nq + 2 * nkv:
                raise GlmtuneError(f"{key} has {tensor.shape[0]} rows; the config implies {nq + 2 * nkv}")
            q, k, v = tensor.split([nq, nkv, nkv], dim=0)
            attn = base + "self_attn."
            return [(attn + f"q_proj.{kind}", q), (attn + f"k_proj.{kind}", k), (attn + f"v_proj.{kind}", v)]
    raise GlmtuneError(f"unexpected weight {key!r} in a ChatGLM2/3 checkpoint; the GLM mapping does not know it")


def to_chatglm(state: dict[str, Any], glm_config: Any, with_inv_freq: bool = True) -> dict[str, Any]:
    """THUDM-named state dict from a Glm state dict (q/k/v fused back, ``inv_freq`` re-added)."""
    import torch

    out: dict[str, Any] = {}
    pending: dict[tuple[str, str], dict[str, Any]] = {}
    for key, tensor in state.items():
        if key in _TOP_BACK:
            out[_TOP_BACK[key]] = tensor
            continue
        m = _GLM_LAYER.match(key)
        if not m:
            raise GlmtuneError(f"unexpected Glm weight {key!r}; cannot write it in the THUDM layout")
        layer, rest = m.groups()
        base = f"transformer.encoder.layers.{layer}."
        if rest in _IN_LAYER_BACK:
            out[base + _IN_LAYER_BACK[rest]] = tensor
        elif rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
            proj, kind = rest.split(".")[1:3]
            pending.setdefault((layer, kind), {})[proj] = tensor
        else:
            raise GlmtuneError(f"unexpected Glm weight {key!r}; cannot write it in the THUDM layout")
    for (layer, kind), parts in sorted(pending.items()):
        if set(parts) != {"q_proj", "k_proj", "v_proj"}:
            raise GlmtuneError(f"layer {layer} lacks one of q/k/v {kind}")
        fused = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]], dim=0)
        out[f"transformer.encoder.layers.{layer}.self_attention.query_key_value.{kind}"] = fused
    if with_inv_freq:
        dim = glm_config.head_dim // 2
        # THUDM stores the base-10000 buffer whatever rope_ratio says (its forward recomputes the angles)
        inv = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        dtype = next(iter(state.values())).dtype if state else torch.float32
        out[INV_FREQ_KEY] = inv.to(dtype)
    return out
