"""Greedy sample answers printed at the end of a run (``sample_prompts``)."""

from __future__ import annotations

from typing import Any


def answer_prompts(
    model: Any, tokenizer: Any, prompts: list[str], template: str, max_new_tokens: int = 64
) -> list[tuple[str, str]]:
    """(prompt, greedy answer) pairs, built with the same chat template the model was trained on."""
    import torch

    import glmtune

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    answers = []
    try:
        for prompt in prompts:
            messages = [{"role": "user", "content": prompt}]
            if "build_chat_input" in dir(glmtune):
                inputs = glmtune.build_chat_input(tokenizer, messages, template=template)
            else:  # TEMPORARY until the encoding module lands
                from glmtune.train._fallback import build_chat_input

                inputs = build_chat_input(tokenizer, messages)
            if not isinstance(inputs, dict):
                inputs = {"input_ids": inputs}
            ids = torch.as_tensor(inputs["input_ids"], device=device)
            if ids.dim() == 1:
                ids = ids.unsqueeze(0)
            with torch.no_grad():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=inputs.get("eos_token_id", tokenizer.eos_token_id),
                    pad_token_id=tokenizer.pad_token_id,
                )
            answers.append((prompt, tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()))
    finally:
        model.train(was_training)
    return answers
