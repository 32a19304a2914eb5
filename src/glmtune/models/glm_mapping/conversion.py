"""THUDM ChatGLM2/3 weight names -> transformers Glm, as transformers' own checkpoint conversion mapping.

``GlmForCausalLM.from_pretrained`` reads a THUDM folder itself (shards, dtype, ``device_map``,
bitsandbytes, ZeRO-3 ``zero.Init``); these transforms rename each key as it is read and split the
fused ``query_key_value`` rows ``[q heads | k groups | v groups]`` (unequal under multi-query
attention) with transformers' ``Split``, which sizes each piece like the target parameter.
``dense_h_to_4h`` already stores ``[gate | up]`` as ``GlmMLP`` chunks it, so it is a rename.
The ``rotary_pos_emb.inv_freq`` buffer is renamed onto Glm's non-persistent ``rotary_emb.inv_freq``,
which transformers drops silently (its rule for buffers old checkpoints still carry).

Hook: ``from_pretrained`` has no per-call argument for converters (``key_mapping=`` only renames),
so the list is registered with ``transformers.conversion_mapping.register_checkpoint_conversion_mapping``
under the class name for the duration of one load, then the previous entry is put back: Glm models
built or loaded elsewhere (and PEFT, and ``save_pretrained``, which look the registry up) never see it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

TARGET_CLASS = "GlmForCausalLM"
_LOCK = threading.Lock()


def thudm_transforms() -> list[Any]:
    """The ordered transforms: renames first (they chain), then at most one converter per key."""
    from transformers import WeightConverter
    from transformers.core_model_loading import Split, WeightRenaming

    layer = r"^transformer\.encoder\.layers\.(\d+)\."
    return [
        WeightRenaming(r"^transformer\.embedding\.word_embeddings\.", "model.embed_tokens."),
        WeightRenaming(r"^transformer\.encoder\.final_layernorm\.", "model.norm."),
        WeightRenaming(r"^transformer\.output_layer\.", "lm_head."),
        WeightRenaming(r"^transformer\.rotary_pos_emb\.inv_freq", "model.rotary_emb.inv_freq"),
        WeightRenaming(layer, r"model.layers.\1."),
        WeightRenaming(r"\.self_attention\.dense\.", ".self_attn.o_proj."),
        WeightRenaming(r"\.mlp\.dense_h_to_4h\.", ".mlp.gate_up_proj."),
        WeightRenaming(r"\.mlp\.dense_4h_to_h\.", ".mlp.down_proj."),
        WeightConverter(
            source_patterns=r"self_attention\.query_key_value",
            target_patterns=["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
            operations=[Split(dim=0)],
        ),
    ]


@contextmanager
def thudm_conversion() -> Iterator[None]:
    """Within the block, ``GlmForCausalLM.from_pretrained`` converts THUDM ChatGLM2/3 keys (one load at a time)."""
    from transformers.conversion_mapping import (
        get_checkpoint_conversion_mapping,
        register_checkpoint_conversion_mapping,
    )

    with _LOCK:
        previous = get_checkpoint_conversion_mapping(TARGET_CLASS)
        register_checkpoint_conversion_mapping(TARGET_CLASS, thudm_transforms(), overwrite=True)
        try:
            yield
        finally:  # None (the usual previous value) reads back as "no mapping"
            register_checkpoint_conversion_mapping(TARGET_CLASS, previous, overwrite=True)
