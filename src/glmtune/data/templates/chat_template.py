"""``glm4`` and ``hf``: the tokenizer's own Jinja chat template, with assistant-token masks.

When the template marks replies with ``{% generation %}`` the mask comes from
``apply_chat_template(return_assistant_tokens_mask=True)``. Otherwise each reply's tokens are found
by rendering growing prefixes of the conversation: the ids added by an assistant message (its
content plus whatever the template closes a turn with) are learned, the rest is context. That
needs a template whose renderings are prefixes of each other, which is checked.

Stop ids: the eos plus whatever the template ends an assistant turn with (found by rendering a probe
reply): a closing token (``<|im_end|>``, ``<end>``), or, for templates that close nothing (GLM-4),
the next turn's opening token (``<|user|>``). Training learns that same token after each reply (the
final reply of a conversation that a template leaves open gets the eos), so the model learns to
emit exactly what inference stops on.
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


PROBE = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hi"}]


class ChatTemplate(Template):
    name = "hf"

    def turn_end(self, tokenizer: Any) -> int | None:
        """The token the template puts after a reply (its own closer, else the next turn's opener)."""
        before = _ids(tokenizer, PROBE[:1], True)
        reply = _ids(tokenizer, PROBE, False)
        follow = _ids(tokenizer, [*PROBE, PROBE[0]], False)
        content = list(tokenizer.encode("hi", add_special_tokens=False))
        added = reply[len(before):] if reply[: len(before)] == before else reply
        for start in range(len(added) - len(content), -1, -1):
            if added[start:start + len(content)] == content:
                closing = added[start + len(content):]
                if closing:
                    return closing[0]
                break
        nxt = follow[len(reply):] if follow[: len(reply)] == reply else []
        return nxt[0] if nxt else None

    def stop_ids(self, tokenizer: Any) -> list[int]:
        self._check(tokenizer)
        stops = [self.eos_id(tokenizer)]
        end = self.turn_end(tokenizer)
        return stops + [end] if end is not None and end not in stops else stops

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
        stops = set(self.stop_ids(tokenizer))
        layout: Layout = []
        done: list[int] = []
        pending = [False]  # a learned reply not closed by a stop id: learn the next token if it is one
        for i in range(len(messages)):
            if i in learn:
                before = _ids(tokenizer, messages[:i], True) if i else []
                after = _ids(tokenizer, messages[: i + 1], False)
                self._append(layout, done, before, False, opts, f"messages[{i}]", stops, pending)
                self._append(layout, done, after, True, opts, f"messages[{i}]", stops, pending)
        final = _ids(tokenizer, messages, False)
        self._append(layout, done, final, False, opts, "messages", stops, pending)
        if pending[0]:  # the template leaves the last reply open: close it with the eos
            layout.append(Segment([self.eos_id(tokenizer)], True, STOP))
        return layout

    def _append(self, layout: Layout, done: list[int], full: list[int], learn: bool, opts: EncodeOptions,
                where: str, stops: set[int], pending: list[bool]) -> None:
        if full[: len(done)] != done:
            raise GlmtuneError(
                f"template {self.name!r}: the chat template's rendering up to {where} is not a prefix of the "
                "whole conversation's, so reply tokens cannot be located; add {% generation %} markers"
            )
        new = full[len(done):]
        done.extend(new)
        if not new:
            return
        if pending[0] and new[0] in stops:  # the next turn's opener ends the previous reply
            layout.append(Segment(new[:1], True, STOP))
            new = new[1:]
        pending[0] = False
        if not new:
            return
        if learn:
            if new[-1] in stops:
                layout.append(Segment(new[:-1], True, ANSWER))
                layout.append(Segment(new[-1:], True, STOP))
            else:
                layout.append(Segment(new, True, ANSWER))
                pending[0] = True
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
