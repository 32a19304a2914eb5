"""What every template shares: the segment layout, options, special-id lookup and turn splitting.

A template turns one conversation into one or more *layouts*: ordered lists of :class:`Segment`
(ids + whether they are learned + what role they play). Truncation and label masks are then
generic (``glmtune.data.truncation``), so a template only says *where* tokens go, never how to cut.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from glmtune.errors import DataError, GlmtuneError

MULTI_TURN_MODES = ("all", "last", "split")
TRUNCATE_SIDES = ("right", "left")

# Segment kinds.
PREFIX = "prefix"  # leading fixed tokens ([gMASK] sop, bos): never cut
PROMPT = "prompt"  # context: cut as a whole on ``truncate_side``
HEADER = "header"  # fixed tokens right before an answer (v1 [gMASK] <sop>, v3 <|assistant|>): never cut
ANSWER = "answer"  # learned reply content: cut from the end
STOP = "stop"  # the token that closes a reply (eos/eop or the next role token): never cut


@dataclass
class Segment:
    ids: list[int]
    learn: bool
    kind: str


Layout = list[Segment]


@dataclass
class EncodeOptions:
    """How conversations become training examples (shared by ``encode`` and ``glmtune tokenize``).

    Length limits: either ``max_source_length``/``max_target_length`` (the official scripts'
    per-generation semantics) or one ``cutoff_len`` for the whole example; never both.
    """

    multi_turn: str = "all"
    train_on_prompt: bool = False
    max_source_length: int | None = None
    max_target_length: int | None = None
    cutoff_len: int | None = None
    truncate_side: str = "right"  # prompt truncation: "right" keeps the head, "left" keeps the tail
    # chatglm (v1): build the "[Round 0]" prompt even with no history (official ptuning with a
    # history column); chat() itself uses the bare query.
    round_prompt_always: bool = False
    # chatglm3: learn observation (tool result) turns as finetune_hf.py does.
    train_on_observation: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, source: Any, **overrides: Any) -> EncodeOptions:
        """Options read by field name from ``source`` (a TrainConfig, an argparse namespace), so the
        train config and ``glmtune tokenize`` can never offer different encoding options."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "extra"]
        values = {n: getattr(source, n) for n in names if hasattr(source, n)}
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        if self.multi_turn not in MULTI_TURN_MODES:
            raise GlmtuneError(f"multi_turn {self.multi_turn!r}: choose one of {', '.join(MULTI_TURN_MODES)}")
        if self.truncate_side not in TRUNCATE_SIDES:
            raise GlmtuneError(f"truncate_side {self.truncate_side!r}: choose one of right, left")
        official = self.max_source_length is not None or self.max_target_length is not None
        if official and self.cutoff_len is not None:
            raise GlmtuneError("give either cutoff_len or max_source_length/max_target_length, not both")
        if official and (self.max_source_length is None or self.max_target_length is None):
            raise GlmtuneError("max_source_length and max_target_length go together")
        for name in ("max_source_length", "max_target_length", "cutoff_len"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise GlmtuneError(f"{name} must be a positive integer (got {value!r})")

    def key(self) -> dict[str, Any]:
        """The options as a plain dict (fingerprints, reports)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Template:
    """Base class: one subclass per prompt format, registered in ``TEMPLATES``."""

    name: str = ""

    def build_inference(self, tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
        raise NotImplementedError

    def build_layouts(self, tokenizer: Any, messages: list[dict[str, Any]], opts: EncodeOptions) -> list[Layout]:
        raise NotImplementedError

    # Official length semantics (max_source_length S, max_target_length T).
    def official_budgets(self, source: int, target: int) -> tuple[int, int] | None:
        """Content budgets (prompt ids, answer ids) for a one-answer layout, or None for a whole-sequence cut."""
        return None

    def official_total(self, source: int, target: int) -> int:
        """The whole-sequence limit used when ``official_budgets`` is None or for multi-answer layouts."""
        return source + target + 1

    # --- inference: the same format's side of generation (the engine uses only these) ---
    def stop_ids(self, tokenizer: Any) -> list[int]:
        """Ids generation stops on: what training learns to emit after a reply (the eos by default)."""
        return [self.eos_id(tokenizer)]

    def decode_reply(self, tokenizer: Any, ids: list[int]) -> str:
        """The generated ids (stop id excluded) as text, before :meth:`parse_reply`."""
        return tokenizer.decode(ids, skip_special_tokens=True)

    def parse_reply(self, text: str, messages: list[dict[str, Any]] | None = None) -> Any:
        """A :class:`~glmtune.data.templates.replies.Reply`: the official post-processing of this format."""
        from glmtune.data.templates.replies import plain

        return plain(text)

    def hold_stream(self, raw: str) -> bool:
        """True while a streamed reply may still turn out to be something else (e.g. a tool call)."""
        return False

    def eos_id(self, tokenizer: Any) -> int:
        eos = tokenizer.eos_token_id
        if eos is None:
            raise GlmtuneError(f"template {self.name!r}: the tokenizer has no eos token")
        return int(eos)


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Plain ids of ``text`` (no special tokens), as every official script calls it."""
    if not text:
        return []
    return list(tokenizer.encode(text, add_special_tokens=False))


def special_id(tokenizer: Any, token: str, fallback: int | None = None) -> int:
    """Id of a special token: the tokenizer's ``get_command`` (THUDM API), its vocab, then ``fallback``."""
    get_command = getattr(tokenizer, "get_command", None)
    if callable(get_command):
        try:
            value = get_command(token)
            if value is not None:
                return int(value)
        except (KeyError, ValueError, AssertionError, AttributeError):
            pass
    try:
        value = tokenizer.convert_tokens_to_ids(token)
    except (KeyError, ValueError):
        value = None
    if isinstance(value, int) and value != tokenizer.unk_token_id:
        return value
    if fallback is not None:
        return fallback
    raise GlmtuneError(f"the tokenizer has no special token {token!r}")


def content_of(msg: dict[str, Any], where: str) -> str:
    content = msg.get("content")
    if content is None:
        return ""
    if not isinstance(content, str):
        raise DataError(f"field '{where}.content': not a string")
    return content


def reject_system(template: str, messages: list[dict[str, Any]]) -> None:
    """A template without a system slot refuses a system message that says something (a blank one is skipped)."""
    for i, msg in enumerate(messages):
        if msg.get("role") == "system" and content_of(msg, f"messages[{i}]").strip():
            raise DataError(
                f"field 'messages[{i}].role': template {template!r} has no system slot; "
                "drop the system message or use a template with one (chatglm3, glm4, hf, alpaca-text)"
            )


def last_not_assistant(messages: list[dict[str, Any]]) -> DataError:
    """The error for a training conversation that does not end with a reply (one wording for every template)."""
    return DataError(f"field 'messages[{len(messages) - 1}].role': the last message must be the assistant's")


def user_assistant_pairs(
    template: str, messages: list[dict[str, Any]], inference: bool = False
) -> tuple[list[tuple[str, str]], str | None]:
    """``[(query, answer), ...]`` rounds of a strictly alternating user/assistant conversation.

    For inference the last message is the user's and is returned separately as the open query.
    """
    reject_system(template, messages)
    pairs: list[tuple[str, str]] = []
    query: str | None = None
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role == "system":  # blank (reject_system refused the others)
            continue
        where = f"messages[{i}]"
        expected = "user" if query is None else "assistant"
        if role != expected:
            raise DataError(
                f"field '{where}.role': template {template!r} needs alternating user/assistant turns "
                f"(expected {expected}, got {role!r})"
            )
        if query is None:
            query = content_of(msg, where)
        else:
            pairs.append((query, content_of(msg, where)))
            query = None
    if inference:
        if query is None:
            raise DataError("field 'messages': the last message must be the user's to build a chat prompt")
        return pairs, query
    if query is not None or not pairs:
        raise last_not_assistant(messages)
    return pairs, None


def selected_turns(n: int, mode: str) -> list[int]:
    """Indexes of the assistant turns that become separate examples for one-answer-per-example formats."""
    return list(range(n)) if mode == "split" else [n - 1]
