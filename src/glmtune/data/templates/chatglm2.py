"""ChatGLM2-6B: ``[gMASK] sop`` + ``[Round i]\\n\\n问：…\\n\\n答：…\\n\\n`` rounds from 1 + answer + eos.

Inference and ``multi_turn="last"``/``"split"`` training are the official ones (``chat()`` and
``ptuning/main.py``: the whole round prompt encoded at once, only its answer learned).

``multi_turn="all"`` puts every round in one sequence, laid out exactly as the official
``stream_chat(past_key_values=...)`` continues a conversation: round 1's prompt, the reply (encoded
on its own, as training encodes replies), then ``"\\n\\n[Round i]\\n\\n问：…\\n\\n答："`` encoded with
its leading dummy-prefix piece dropped (``build_stream_inputs``). Every reply is learned in place;
only the last one is closed by eos (earlier ones are followed by the next round's prompt).
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
        if opts.multi_turn == "all" and len(pairs) > 1:
            layout: Layout = [prefix]
            for i, (query, answer) in enumerate(pairs):
                if i == 0:
                    prompt = encode_text(tokenizer, build_prompt(query, []))
                else:
                    prompt = encode_text(tokenizer, f"\n\n[Round {i + 1}]\n\n问：{query}\n\n答：")[1:]
                layout.append(Segment(prompt, learn_prompt, PROMPT))
                layout.append(Segment(encode_text(tokenizer, answer), True, ANSWER))
            layout.append(eos)
            return [layout]
        layouts = []
        for k in selected_turns(len(pairs), opts.multi_turn):
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
