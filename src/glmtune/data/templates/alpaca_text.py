"""``alpaca-text`` for base models: ``### Instruction:`` / ``### Input:`` / ``### Response:`` plain text.

A system message becomes the preamble paragraph (a blank one is ignored). A user message may carry a separate ``input``
field (rendered under ``### Input:``); converted records usually hold instruction and input joined
in ``content``. Each reply ends with the tokenizer's eos so a base model learns to stop.

Pieces are encoded one by one (prompt text, reply text, eos), in training and at inference alike,
so the ids in front of every learned reply are exactly the inference prompt of the messages before
it: a past reply in the history is followed by the eos the model was trained to emit there.
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
    content_of,
    encode_text,
    last_not_assistant,
    selected_turns,
)
from glmtune.errors import DataError


def user_block(msg: dict[str, Any], where: str) -> str:
    text = f"### Instruction:\n{content_of(msg, where)}\n\n"
    extra = msg.get("input")
    if isinstance(extra, str) and extra.strip():
        text += f"### Input:\n{extra}\n\n"
    return text + "### Response:\n"


class AlpacaTextTemplate(Template):
    name = "alpaca-text"

    def _texts(self, messages: list[dict[str, Any]], inference: bool) -> list[tuple[str, str]]:
        """[(prompt text, reply text)] per round; the reply of an open inference round is ""."""
        rounds: list[tuple[str, str]] = []
        pending = ""
        for i, msg in enumerate(messages):
            role, where = msg.get("role"), f"messages[{i}]"
            if role == "system":
                if i != 0:
                    raise DataError(f"field '{where}.role': template 'alpaca-text' takes a system message first only")
                system = content_of(msg, where)
                pending += f"{system}\n\n" if system.strip() else ""  # a blank system message adds nothing
            elif role == "user":
                pending += ("\n\n" if rounds else "") + user_block(msg, where)
            elif role == "assistant":
                if not pending:
                    raise DataError(f"field '{where}.role': an assistant message must follow a user message")
                rounds.append((pending, content_of(msg, where)))
                pending = ""
            else:
                raise DataError(f"field '{where}.role': template 'alpaca-text' does not know role {role!r}")
        if inference:
            if not pending:
                raise DataError("field 'messages': the last message must be the user's to build a prompt")
            rounds.append((pending, ""))
        elif pending or not rounds:
            raise last_not_assistant(messages)
        return rounds

    def _prefix(self, tokenizer: Any) -> list[int]:
        bos = getattr(tokenizer, "bos_token_id", None)
        return [bos] if bos is not None else []

    def _context(self, tokenizer: Any, rounds: list[tuple[str, str]]) -> list[int]:
        """The ids of completed rounds, as the ``all`` layout has them: prompt, reply, eos each."""
        eos = self.eos_id(tokenizer)
        ids = self._prefix(tokenizer)
        for prompt, reply in rounds:
            ids += encode_text(tokenizer, prompt) + encode_text(tokenizer, reply) + [eos]
        return ids

    def build_inference(self, tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
        rounds = self._texts(messages, inference=True)
        return self._context(tokenizer, rounds[:-1]) + encode_text(tokenizer, rounds[-1][0])

    def build_layouts(self, tokenizer: Any, messages: list[dict[str, Any]], opts: EncodeOptions) -> list[Layout]:
        rounds = self._texts(messages, inference=False)
        eos = self.eos_id(tokenizer)
        if opts.multi_turn == "all":
            layout: Layout = [Segment(self._prefix(tokenizer), False, PREFIX)]
            for prompt, reply in rounds:
                layout.append(Segment(encode_text(tokenizer, prompt), opts.train_on_prompt, PROMPT))
                layout.append(Segment(encode_text(tokenizer, reply), True, ANSWER))
                layout.append(Segment([eos], True, STOP))
            return [layout]
        layouts = []
        for k in selected_turns(len(rounds), opts.multi_turn):
            context = self._context(tokenizer, rounds[:k]) + encode_text(tokenizer, rounds[k][0])
            layouts.append([
                Segment(context, opts.train_on_prompt, PROMPT),
                Segment(encode_text(tokenizer, rounds[k][1]), True, ANSWER),
                Segment([eos], True, STOP),
            ])
        return layouts
