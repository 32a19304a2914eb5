"""P-Tuning v2 for ChatGLM-6B (v1): enable a prefix, load/save THUDM's official P-Tuning layout.

Same three functions as ``glmtune.models.glm_mapping.prefix`` (ChatGLM2/3), so the ``ptuning``
method can wrap both. A P-Tuning folder is ``config.json`` carrying ``pre_seq_len`` (and
``prefix_projection``) plus ``pytorch_model.bin`` holding only ``transformer.prefix_encoder.*``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from glmtune.errors import GlmtuneError
from glmtune.models.chatglm_v1.prefix_encoder import PrefixEncoder
from glmtune.models.ptuning_layout import OFFICIAL_PREFIX, PREFIX_KEY, read_ptuning_config
from glmtune.utils.io import atomic_dir

# Read by the ptuning method: the v1 model hands each layer its prefix slice directly (no cache),
# so checkpointed layers recompute with the same prefix (tests/models/test_chatglm_v1_prefix.py).
SUPPORTS_CHECKPOINTING = True
THUDM_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_attention_heads", "inner_hidden_size",
                "layernorm_epsilon", "max_sequence_length", "position_encoding_2d", "mask_token_id",
                "gmask_token_id", "bos_token_id", "eos_token_id", "pad_token_id", "quantization_bit", "use_cache")


def _check(model: Any) -> None:
    if not hasattr(model, "transformer") or not hasattr(model.transformer, "word_embeddings"):
        raise GlmtuneError(f"P-Tuning v2 for ChatGLM-6B needs a ChatGLMV1ForCausalLM, got {type(model).__name__}")


def enable_prefix(model: Any, pre_seq_len: int, prefix_projection: bool = False,
                  prefix_hidden_size: int | None = None) -> Any:
    """Give ``model`` a fresh prefix (N(0,1) table, as ``nn.Embedding``) in place and return it."""
    _check(model)
    if int(pre_seq_len) < 1:
        raise GlmtuneError(f"pre_seq_len must be >= 1 (got {pre_seq_len})")
    config = model.config
    config.pre_seq_len = int(pre_seq_len)
    config.prefix_projection = bool(prefix_projection)
    config.prefix_hidden_size = int(prefix_hidden_size) if prefix_hidden_size and prefix_projection else None
    weight = model.transformer.word_embeddings.weight
    dtype = weight.dtype if weight.is_floating_point() else torch.float32
    encoder = PrefixEncoder(config).to(device=weight.device, dtype=dtype)
    encoder.train(model.training)  # dropout only while the model trains
    model.transformer.prefix_encoder = encoder
    return model


def prefix_parameters(model: Any) -> list[nn.Parameter]:
    """The trainable prefix parameters (freeze everything else for P-Tuning v2)."""
    _check(model)
    if model.transformer.prefix_encoder is None:
        raise GlmtuneError("the model has no P-Tuning prefix; call enable_prefix first")
    return list(model.transformer.prefix_encoder.parameters())


def load_ptuning(model: Any, folder: str | Path) -> Any:
    """Attach the prefix stored in an official ChatGLM-6B P-Tuning v2 folder to ``model`` and return it."""
    from glmtune.models.checkpoint_io import iter_checkpoint_tensors

    settings = read_ptuning_config(folder)
    state = {k[len(OFFICIAL_PREFIX):]: v for k, v in iter_checkpoint_tensors(folder) if k.startswith(OFFICIAL_PREFIX)}
    if "embedding.weight" not in state:
        raise GlmtuneError(f"{folder} has no {PREFIX_KEY}")
    enable_prefix(model, **settings)
    encoder = model.transformer.prefix_encoder
    own = encoder.state_dict()
    for key, value in state.items():
        if key not in own:
            raise GlmtuneError(f"{folder}: unexpected prefix weight {OFFICIAL_PREFIX + key}")
        if tuple(value.shape) != tuple(own[key].shape):
            raise GlmtuneError(f"{folder}: {OFFICIAL_PREFIX + key} has shape {tuple(value.shape)}, this model "
                               f"needs {tuple(own[key].shape)}")
    missing = sorted(set(own) - set(state))
    if missing:
        raise GlmtuneError(f"{folder}: prefix weights missing: {', '.join(OFFICIAL_PREFIX + k for k in missing)}")
    encoder.load_state_dict(state)
    return model


def thudm_config(config: Any) -> dict[str, Any]:
    """The THUDM ``config.json`` form of our config (what official P-Tuning folders carry)."""
    out: dict[str, Any] = {"architectures": ["ChatGLMModel"], "model_type": "chatglm"}
    out.update({k: getattr(config, k) for k in THUDM_FIELDS})
    out.update(pre_seq_len=config.pre_seq_len, prefix_projection=bool(config.prefix_projection))
    if config.prefix_hidden_size:
        out["prefix_hidden_size"] = config.prefix_hidden_size
    return out


def save_ptuning(model: Any, folder: str | Path) -> Path:
    """Write the prefix in the official layout, atomically: config.json + pytorch_model.bin."""
    prefix_parameters(model)  # clear error when there is no prefix
    state = {OFFICIAL_PREFIX + k: v.detach().to("cpu").contiguous().clone()
             for k, v in model.transformer.prefix_encoder.state_dict().items()}
    with atomic_dir(folder) as tmp:
        text = json.dumps(thudm_config(model.config), indent=2, sort_keys=True) + "\n"
        (tmp / "config.json").write_text(text, encoding="utf-8")
        torch.save(state, tmp / "pytorch_model.bin")
    return Path(folder)
