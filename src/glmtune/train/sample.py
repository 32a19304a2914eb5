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
            prompt_ids = glmtune.build_chat_input(tokenizer, messages, template=template)
            ids = torch.as_tensor([prompt_ids], device=device)
            with torch.no_grad():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=_stop_ids(model, tokenizer),
                    pad_token_id=tokenizer.pad_token_id,
                )
            answers.append((prompt, tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()))
    finally:
        model.train(was_training)
    return answers


def _stop_ids(model: Any, tokenizer: Any) -> Any:
    """The generation config's stop ids (ChatGLM3 also stops on <|user|>/<|observation|>), else eos."""
    gen = getattr(model, "generation_config", None)
    ids = getattr(gen, "eos_token_id", None) if gen is not None else None
    return ids if ids is not None else tokenizer.eos_token_id
