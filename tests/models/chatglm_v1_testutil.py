"""Shared helpers of the ChatGLM-6B (v1) tests: tiny random models and reference folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from glmtune.models.chatglm_v1.configuration import ChatGLMV1Config
from glmtune.models.chatglm_v1.modeling import ChatGLMV1ForCausalLM

MASK, GMASK, BOS, EOS, PAD = 100, 101, 104, 105, 3


def tiny_config(**overrides: Any) -> ChatGLMV1Config:
    fields: dict[str, Any] = dict(
        vocab_size=120, hidden_size=32, num_layers=2, num_attention_heads=4, inner_hidden_size=64,
        max_sequence_length=64, mask_token_id=MASK, gmask_token_id=GMASK, bos_token_id=BOS,
        eos_token_id=EOS, pad_token_id=PAD,
    )
    fields.update(overrides)
    return ChatGLMV1Config(**fields)


def tiny_model(seed: int = 0, std: float = 0.3, **overrides: Any) -> ChatGLMV1ForCausalLM:
    """A random model whose layers visibly matter (larger weights than the default init)."""
    torch.manual_seed(seed)
    model = ChatGLMV1ForCausalLM(tiny_config(**overrides))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layernorm" in name and name.endswith("weight"):
                param.copy_(1 + 0.1 * torch.randn_like(param))
            else:
                param.copy_(std * torch.randn_like(param))
    return model.eval()


def sample(length_prompt: int, length_answer: int, seed: int = 0) -> list[int]:
    """prompt + [gMASK, <sop>] + answer, ids in [5, 99]."""
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(5, 100, (length_prompt,), generator=gen).tolist()
    answer = torch.randint(5, 100, (length_answer,), generator=gen).tolist()
    return prompt + [GMASK, BOS] + answer


def v1_folders(root: Path) -> list[Path]:
    """Folders under ``root`` whose config.json is a THUDM ChatGLM-6B (v1) config."""
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        cfg_path = folder / "config.json"
        if cfg_path.is_file():
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            if cfg.get("model_type") == "chatglm" and "position_encoding_2d" in cfg:
                out.append(folder)
    return out
