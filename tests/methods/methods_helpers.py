"""Helpers for the method tests (a unique module name: pytest puts every test folder on sys.path)."""

from __future__ import annotations

import types
from typing import Any

import torch

from glmtune.methods import FreezeConfig, LoraConfig, PTuningConfig, QLoraConfig

VOCAB = 128


def tiny_config() -> Any:
    from transformers import GlmConfig

    return GlmConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=8, pad_token_id=0,
                     eos_token_id=2, bos_token_id=None, tie_word_embeddings=False)


def make_cfg(method: str = "lora", **kw: Any) -> types.SimpleNamespace:
    """The attributes of the trainer's TrainConfig that methods read."""
    base: dict[str, Any] = dict(
        method=method, adapter=None, gradient_checkpointing=False, precision="fp32", family="chatglm2",
        model="tiny-base", lora=LoraConfig(dropout=0.0), qlora=QLoraConfig(), freeze=FreezeConfig(),
        ptuning=PTuningConfig(pre_seq_len=4),
    )
    base.update(kw)
    return types.SimpleNamespace(**base)


def batch(seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (2, 7), generator=gen)


def snapshot(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().float().clone() for n, p in model.named_parameters()}


def train_step(model: Any, lr: float = 0.05, steps: int = 1) -> float:
    """``steps`` AdamW steps on a fixed batch; returns the last loss (checked finite by callers)."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ids = batch()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        opt.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
    return float(loss.detach())


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {n for n in before if not torch.equal(before[n], after[n])}


def logits(model: Any, ids: torch.Tensor | None = None) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=batch(2) if ids is None else ids).logits.float()
