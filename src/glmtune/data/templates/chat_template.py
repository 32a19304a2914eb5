"""``glm4`` and ``hf``: the tokenizer's own Jinja chat template, with assistant-token masks.

When the template marks replies with ``{% generation %}`` the mask comes from
``apply_chat_template(return_assistant_tokens_mask=True)``. Otherwise each reply's tokens are found
by rendering growing prefixes of the conversation: the ids added by an assistant message (its
content plus whatever the template closes a turn with) are learned, the rest is context. That
needs a template whose renderings are prefixes of each other, which is checked.
"""

from __future__ import annotations

from typing import Any

from glmtune.data.templates.base import (
    ANSWER,
    PROMPT,
    STOP,
    EncodeOptions,
    Layout,
    Segment,
    Template,
    last_not_assistant,
)
from glmtune.errors import GlmtuneError


def _ids(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=generation_prompt, return_dict=True
    )
    return list(out["input_ids"])


class ChatTemplate(Template):
    name = "hf"

    def _check(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise GlmtuneError(
                f"template {self.name!r} needs a tokenizer with a chat_template; this one has none "
                "(use alpaca-text for base models)"
            )

    def build_inference(self, tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
        self._check(tokenizer)
        return _ids(tokenizer, messages, True)

    def build_layouts(self, tokenizer: Any, messages: list[dict[str, Any]], opts: EncodeOptions) -> list[Layout]:
        self._check(tokenizer)
        assistant = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        if not assistant or assistant[-1] != len(messages) - 1:
            raise last_not_assistant(messages)
        if opts.multi_turn == "all":
            return [self._layout(tokenizer, messages, set(assistant), opts)]
        ends = assistant if opts.multi_turn == "split" else assistant[-1:]
        return [self._layout(tokenizer, messages[: k + 1], {k}, opts) for k in ends]

    def _layout(self, tokenizer: Any, messages: list[dict[str, Any]], learn: set[int],
                opts: EncodeOptions) -> Layout:
        if "{% generation %}" in str(tokenizer.chat_template).replace("{%- generation %}", "{% generation %}"):
            return self._layout_from_mask(tokenizer, messages, learn, opts)
        layout: Layout = []
        done: list[int] = []
        for i in range(len(messages)):
            if i in learn:
                before = _ids(tokenizer, messages[:i], True) if i else []
                after = _ids(tokenizer, messages[: i + 1], False)
                self._append(layout, done, before, False, opts, f"messages[{i}]")
                self._append(layout, done, after, True, opts, f"messages[{i}]")
        final = _ids(tokenizer, messages, False)
        self._append(layout, done, final, False, opts, "messages")
        return layout

    def _append(self, layout: Layout, done: list[int], full: list[int], learn: bool, opts: EncodeOptions,
                where: str) -> None:
        if full[: len(done)] != done:
            raise GlmtuneError(
                f"template {self.name!r}: the chat template's rendering up to {where} is not a prefix of the "
                "whole conversation's, so reply tokens cannot be located; add {% generation %} markers"
            )
        new = full[len(done):]
        done.extend(new)
        if not new:
            return
        if learn:
            layout.append(Segment(new[:-1], True, ANSWER))
            layout.append(Segment(new[-1:], True, STOP))
        else:
            layout.append(Segment(new, opts.train_on_prompt, PROMPT))

    def _layout_from_mask(self, tokenizer: Any, messages: list[dict[str, Any]], learn: set[int],
                          opts: EncodeOptions) -> Layout:
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
        if len(learn) < sum(1 for m in messages if m.get("role") == "assistant"):
            # one-answer example: only the last reply's mask run counts
            runs = [i for i in range(len(mask)) if mask[i] and (i == 0 or not mask[i - 1])]
            keep_from = runs[-1] if runs else len(mask)
            mask = [m if i >= keep_from else 0 for i, m in enumerate(mask)]
        layout: Layout = []
        start = 0
        for i in range(1, len(ids) + 1):
            if i == len(ids) or mask[i] != mask[start]:
                chunk = ids[start:i]
                if mask[start]:
                    layout.append(Segment(chunk[:-1], True, ANSWER))
                    layout.append(Segment(chunk[-1:], True, STOP))
                else:
                    layout.append(Segment(chunk, opts.train_on_prompt, PROMPT))
                start = i
        return layout


class Glm4Template(ChatTemplate):
    name = "glm4"
