"""Tiny models of every ChatGLM generation, token rows and tuning-method setups for the loss tests."""

from __future__ import annotations

import importlib

import torch

from glmtune.data.collate import Collator

FAMILIES = {"chatglm": "chatglm-mini", "chatglm2": "chatglm2-mini", "chatglm3": "chatglm3-mini"}
PREFIX = {"chatglm": "glmtune.models.chatglm_v1.prefix", "chatglm2": "glmtune.models.glm_mapping.prefix",
          "chatglm3": "glmtune.models.glm_mapping.prefix"}  # fmt: skip


def tiny_glm4() -> torch.nn.Module:
    """A random 2-layer GLM-4-shaped ``GlmForCausalLM`` (GLM-4 runs on transformers as is)."""
    from transformers import GlmConfig, GlmForCausalLM

    torch.manual_seed(0)
    config = GlmConfig(vocab_size=3000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, pad_token_id=0)  # fmt: skip
    return GlmForCausalLM(config).float().eval()


def family_model(reference, family: str) -> tuple[torch.nn.Module, object]:
    """(fp32 model in eval mode, tokenizer or None) of a tiny checkpoint of ``family``."""
    import glmtune

    if family == "glm4":
        return tiny_glm4(), None
    folder = reference / "checkpoints" / FAMILIES[family]
    torch.manual_seed(0)
    return glmtune.load_model(folder, dtype=torch.float32).eval(), glmtune.load_tokenizer(folder)


def examples(model, tokenizer, lengths=((9, 4), (14, 6), (6, 3))) -> list[dict[str, list[int]]]:
    """Token rows of the given (length, prompt length), prompt labels -100 (v1: prompt [gMASK] <sop> answer)."""
    gen = torch.Generator().manual_seed(1)
    rows = []
    for n, prompt in lengths:
        ids = torch.randint(10, 2900, (n,), generator=gen).tolist()
        if family_name(tokenizer) == "chatglm":
            ids[prompt - 2: prompt] = [model.config.gmask_token_id, model.config.bos_token_id]
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return rows


def family_name(tokenizer) -> str:
    from glmtune.data.templates import family_of

    return "glm4" if tokenizer is None else family_of(tokenizer)


def padded(model, tokenizer, rows) -> dict[str, torch.Tensor]:
    """The padded batch ``glmtune train`` builds (GLM-4 without tokenizer: right padding, pad id 0)."""
    if tokenizer is not None:
        return Collator(tokenizer, config=model.config)(rows)
    length = max(len(r["input_ids"]) for r in rows)
    return {
        "input_ids": torch.tensor([r["input_ids"] + [0] * (length - len(r["input_ids"])) for r in rows]),
        "labels": torch.tensor([r["labels"] + [-100] * (length - len(r["labels"])) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * (length - len(r["input_ids"])) for r in rows]),
    }


def apply_method(model, family: str, method: str):
    """The trainable part of each tuning method, set up directly (the methods' own tests cover their configs)."""
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        target = ["query_key_value"] if family == "chatglm" else ["q_proj", "v_proj"]
        torch.manual_seed(2)
        return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=target, init_lora_weights=False))
    if method == "ptuning":
        torch.manual_seed(2)
        model = importlib.import_module(PREFIX[family]).enable_prefix(model, 4) or model
        model.eval()  # no prefix dropout: both losses see the same prefix
    for name, param in model.named_parameters():
        param.requires_grad_(method == "full" or (method == "freeze" and ".1." in name) or
                             (method == "ptuning" and "prefix_encoder" in name))
    return model


