"""ChatGLM-6B (v1): ``[Round i]\\n问：…\\n答：…\\n`` rounds from 0, then ``[gMASK] <sop> answer <eop>``.

Inference is what the official ``chat()`` feeds ``generate``: the bare query when there is no
history, else the round prompt; the tokenizer appends ``[gMASK] <sop>``. Training follows
``ptuning/main.py``: ``prompt + [gMASK, <sop>] + answer + [<eop>]``, learned from ``<sop>`` on.

GLM v1 attends bidirectionally over everything before ``<sop>``, so a sequence can hold only one
learned answer: ``multi_turn="all"`` therefore gives one example per assistant turn (as ``split``).
"""

from __future__ import annotations

from typing import Any

from glmtune.data.templates.base import (
    ANSWER,
    HEADER,
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
from glmtune.errors import GlmtuneError


def build_prompt(query: str, history: list[tuple[str, str]], always_rounds: bool = False) -> str:
    """The official v1 prompt text (``chat()``; ptuning with a history column when ``always_rounds``)."""
    if not history and not always_rounds:
        return query
    text = "".join(f"[Round {i}]\n问：{q}\n答：{a}\n" for i, (q, a) in enumerate(history))
    return text + f"[Round {len(history)}]\n问：{query}\n答："


class ChatGLMTemplate(Template):
    name = "chatglm"

    @staticmethod
    def specials(tokenizer: Any) -> tuple[int, int, int]:
        return (
            special_id(tokenizer, "[gMASK]", 130001),
            special_id(tokenizer, "<sop>", 130004),
            special_id(tokenizer, "<eop>", 130005),
        )

    def build_inference(self, tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
        history, query = user_assistant_pairs(self.name, messages, inference=True)
        gmask, sop, _ = self.specials(tokenizer)
        return encode_text(tokenizer, build_prompt(query or "", history)) + [gmask, sop]

    def build_layouts(self, tokenizer: Any, messages: list[dict[str, Any]], opts: EncodeOptions) -> list[Layout]:
        if opts.train_on_prompt:
            raise GlmtuneError(
                "template 'chatglm': train_on_prompt is not possible: GLM v1 attends bidirectionally "
                "over the prompt, so prompt tokens would be learned from themselves"
            )
        pairs, _ = user_assistant_pairs(self.name, messages)
        gmask, sop, eop = self.specials(tokenizer)
        layouts = []
        for k in selected_turns(len(pairs), "last" if opts.multi_turn == "last" else "split"):
            query, answer = pairs[k]
            prompt = build_prompt(query, pairs[:k], always_rounds=opts.round_prompt_always)
            layouts.append(
                [
                    Segment(encode_text(tokenizer, prompt), False, PROMPT),
                    Segment([gmask], False, HEADER),
                    Segment([sop], True, HEADER),
                    Segment(encode_text(tokenizer, answer), True, ANSWER),
                    Segment([eop], True, STOP),
                ]
            )
        return layouts

    def official_budgets(self, source: int, target: int) -> tuple[int, int]:
        # ptuning/main.py: a_ids[:S-1], b_ids[:T-2]
        return source - 1, target - 2

    def official_total(self, source: int, target: int) -> int:
        return source + target

    def parse_reply(self, text: str, messages: list[dict[str, Any]] | None = None) -> Any:
        from glmtune.data.templates.replies import chatglm_v1

        return chatglm_v1(text)

    def eos_id(self, tokenizer: Any) -> int:
        return self.specials(tokenizer)[2]
