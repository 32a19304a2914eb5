"""ChatGLM2-6B: ``[gMASK] sop`` + ``[Round i]\\n\\n问：…\\n\\n答：…\\n\\n`` rounds from 1 + answer + eos.

Inference and training are the official ones (``chat()`` and ``ptuning/main.py``): the whole
round prompt, history included, encoded at once, and only its answer learned. ``multi_turn="all"``
therefore gives one example per assistant turn (as ``split``): one sequence holding every round
could only be the ``stream_chat`` continuation layout, whose ids differ from the ``chat()`` prompt
the model is later asked with (the history is re-encoded as one text there).
"""

from __future__ import annotations

from typing import Any

from glmtune.data.templates.base import (
    ANSWER,
    PREFIX,
    PROMPT,
    STOP,
    EncodeOptions,
    Layout,
    Segment,
    Template,
    encode_text,
    selected_turns,
    special_id,
    user_assistant_pairs,
)


def build_prompt(query: str, history: list[tuple[str, str]]) -> str:
    """The official ChatGLM2 ``tokenizer.build_prompt(query, history)`` text."""
    text = "".join(f"[Round {i}]\n\n问：{q}\n\n答：{a}\n\n" for i, (q, a) in enumerate(history, 1))
    return text + f"[Round {len(history) + 1}]\n\n问：{query}\n\n答："


def gmask_sop(tokenizer: Any) -> list[int]:
    """``[gMASK] sop``: the ids ChatGLM2 and ChatGLM3 put in front of every sequence."""
    return [special_id(tokenizer, "[gMASK]", 64790), special_id(tokenizer, "sop", 64792)]


class ChatGLM2Template(Template):
    name = "chatglm2"

    prefix = staticmethod(gmask_sop)

    def build_inference(self, tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
        history, query = user_assistant_pairs(self.name, messages, inference=True)
        return self.prefix(tokenizer) + encode_text(tokenizer, build_prompt(query or "", history))

    def build_layouts(self, tokenizer: Any, messages: list[dict[str, Any]], opts: EncodeOptions) -> list[Layout]:
        pairs, _ = user_assistant_pairs(self.name, messages)
        learn_prompt = opts.train_on_prompt
        prefix = Segment(self.prefix(tokenizer), False, PREFIX)
        eos = Segment([self.eos_id(tokenizer)], True, STOP)
        layouts = []
        for k in selected_turns(len(pairs), "last" if opts.multi_turn == "last" else "split"):
            query, answer = pairs[k]
            layouts.append(
                [
                    prefix,
                    Segment(encode_text(tokenizer, build_prompt(query, pairs[:k])), learn_prompt, PROMPT),
                    Segment(encode_text(tokenizer, answer), True, ANSWER),
                    eos,
                ]
            )
        return layouts

    def official_budgets(self, source: int, target: int) -> tuple[int, int]:
        # ptuning/main.py: [gMASK, sop] count toward max_source_length; the answer is cut to T, then + eos
        return source - 2, target
