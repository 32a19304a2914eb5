"""Public encoding API: ``encode``, ``encode_all``, ``encode_conversation`` and ``build_chat_input``.

``build_chat_input`` is the inference prompt (what the official ``chat()`` feeds ``generate``);
training examples use the same template code, so train and inference formats cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from glmtune.data.templates import EncodeOptions, Template, resolve_template
from glmtune.data.truncation import to_example, truncate
from glmtune.errors import DataError

__all__ = ["EncodeOptions", "Encoded", "build_chat_input", "encode", "encode_all", "encode_conversation"]


@dataclass
class Encoded:
    """The examples of one conversation plus how many were cut or dropped by truncation."""

    examples: list[dict[str, list[int]]] = field(default_factory=list)
    truncated: int = 0
    dropped: int = 0


def _messages(messages: Any) -> list[dict[str, Any]]:
    if isinstance(messages, dict) and "messages" in messages:
        messages = messages["messages"]
    if not isinstance(messages, list) or not messages:
        raise DataError("field 'messages': expected a non-empty list of {role, content} messages")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or "role" not in msg:
            raise DataError(f"field 'messages[{i}]': expected an object with role and content")
    return messages


def _options(options: EncodeOptions | None, kwargs: dict[str, Any]) -> EncodeOptions:
    if options is None:
        return EncodeOptions(**kwargs)
    if kwargs:
        values = options.key()
        values.update(kwargs)
        return EncodeOptions(**values)
    return options


def encode_conversation(
    tokenizer: Any,
    messages: Any,
    template: str | Template | None = None,
    options: EncodeOptions | None = None,
    **kwargs: Any,
) -> Encoded:
    """All training examples of one conversation with truncation counts (what the dataset builder uses)."""
    tpl = resolve_template(tokenizer, template)
    opts = _options(options, kwargs)
    eos = tpl.eos_id(tokenizer)
    result = Encoded()
    for layout in tpl.build_layouts(tokenizer, _messages(messages), opts):
        cut_layout, cut = truncate(layout, tpl, opts, eos)
        example = to_example(cut_layout)
        result.truncated += int(cut)
        if example is None:
            result.dropped += 1
        else:
            result.examples.append(example)
    return result


def encode_all(
    tokenizer: Any, messages: Any, template: str | Template | None = None, multi_turn: str = "all", **kwargs: Any
) -> list[dict[str, list[int]]]:
    """Every example of the conversation (several for ``multi_turn="split"``; none if all were dropped)."""
    return encode_conversation(tokenizer, messages, template, multi_turn=multi_turn, **kwargs).examples


def encode(
    tokenizer: Any, messages: Any, template: str | Template | None = None, multi_turn: str = "all", **kwargs: Any
) -> dict[str, list[int]] | list[dict[str, list[int]]] | None:
    """``{"input_ids", "labels"}`` for one conversation (a list of role/content messages).

    ``template=None`` picks the tokenizer family's template. Options: ``multi_turn`` ("all",
    "last", "split"), ``train_on_prompt``, ``max_source_length``/``max_target_length`` or
    ``cutoff_len``, ``truncate_side``, ``round_prompt_always`` (chatglm), ``train_on_observation``
    (chatglm3). Returns a list when the conversation gives several examples (``split``, or
    ``chatglm`` multi-turn, whose architecture learns one answer per sequence) and None when
    truncation left nothing to learn.
    """
    examples = encode_all(tokenizer, messages, template, multi_turn=multi_turn, **kwargs)
    if not examples:
        return None
    return examples[0] if len(examples) == 1 else examples


def build_chat_input(tokenizer: Any, messages: Any, template: str | Template | None = None) -> list[int]:
    """Ids of the inference prompt for a conversation whose last message is the user's (as ``chat()`` builds it)."""
    return resolve_template(tokenizer, template).build_inference(tokenizer, _messages(messages))
