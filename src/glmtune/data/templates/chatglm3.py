"""ChatGLM3-6B: ``[gMASK] sop`` then per message ``<|role|>`` + ``{metadata}\\n`` + content.

Inference is the official ``build_chat_input`` (system ``tools`` appended as indented JSON, then
``<|assistant|>``). Training follows ``finetune_hf.py``'s mask: a message's role token is not
learned; the content of every assistant turn (and observation turn, unless
``train_on_observation=False``) is, and so is the token right after it (the next role token or
the final eos) as the stop signal. ``last``/``split`` learn one assistant turn per example.
"""

from __future__ import annotations

import json
from typing import Any

from glmtune.data.templates.base import (
    ANSWER,
    HEADER,
    PREFIX,
    PROMPT,
    STOP,
    EncodeOptions,
    Layout,
    Segment,
    Template,
    content_of,
    last_not_assistant,
    special_id,
)
from glmtune.data.templates.chatglm2 import gmask_sop
from glmtune.errors import DataError

ROLE_TOKENS = {"system": 64794, "user": 64795, "assistant": 64796, "observation": 64797}
ROLE_NAMES = {"system": "system", "user": "user", "assistant": "assistant", "tool": "observation",
              "observation": "observation"}


class ChatGLM3Template(Template):
    name = "chatglm3"

    def _role_ids(self, tokenizer: Any) -> dict[str, int]:
        return {role: special_id(tokenizer, f"<|{role}|>", fallback) for role, fallback in ROLE_TOKENS.items()}

    def message_parts(self, tokenizer: Any, msg: dict[str, Any], where: str) -> tuple[str, list[int], list[int]]:
        """(role, ``<|role|>`` + ``{metadata}\\n`` ids, content ids) as ``build_single_message`` builds them."""
        role = ROLE_NAMES.get(msg.get("role", ""))
        if role is None:
            raise DataError(f"field '{where}.role': template 'chatglm3' does not know role {msg.get('role')!r}")
        content = content_of(msg, where)
        tools = msg.get("tools")
        if role == "system" and tools:
            content = content + "\n" + json.dumps(tools, indent=4, ensure_ascii=False)
        metadata = msg.get("metadata") or ""
        if not isinstance(metadata, str):
            raise DataError(f"field '{where}.metadata': not a string")
        role_ids = self._role_ids(tokenizer)
        header = [role_ids[role], *tokenizer.encode(f"{metadata}\n", add_special_tokens=False)]
        body = list(tokenizer.encode(content, add_special_tokens=False)) if content else []
        return role, header, body

    prefix = staticmethod(gmask_sop)

    def stop_ids(self, tokenizer: Any) -> list[int]:
        """eos, and the role tokens that end an assistant turn: ``<|user|>`` and ``<|observation|>``
        (after a tool call), exactly what chat() passes as eos_token_id."""
        roles = self._role_ids(tokenizer)
        return [self.eos_id(tokenizer), roles["user"], roles["observation"]]

    def decode_reply(self, tokenizer: Any, ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=False)  # keeps <|assistant|> between parts

    def hold_stream(self, raw: str) -> bool:
        """Until the metadata line is complete, and for a reply with metadata (a tool call), wait."""
        return "\n" not in raw or bool(raw.split("\n", 1)[0].strip())

    def parse_reply(self, text: str, messages: list[dict[str, Any]] | None = None) -> Any:
        from glmtune.data.templates.replies import chatglm3

        tools = any(m.get("role") == "system" and m.get("tools") for m in messages or [])
        return chatglm3(text, tools_given=tools or messages is None)

    def build_inference(self, tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
        if not messages or messages[-1].get("role") not in ("user", "tool", "observation"):
            raise DataError("field 'messages': the last message must be the user's (or a tool result)")
        ids = self.prefix(tokenizer)
        for i, msg in enumerate(messages):
            _, header, body = self.message_parts(tokenizer, msg, f"messages[{i}]")
            ids += header + body
        return ids + [self._role_ids(tokenizer)["assistant"]]

    def build_layouts(self, tokenizer: Any, messages: list[dict[str, Any]], opts: EncodeOptions) -> list[Layout]:
        parts = [self.message_parts(tokenizer, m, f"messages[{i}]") for i, m in enumerate(messages)]
        learnable = [i for i, (role, _, _) in enumerate(parts) if role == "assistant"]
        if not learnable or parts[-1][0] != "assistant":
            raise last_not_assistant(messages)
        if opts.multi_turn == "all":
            obs = [i for i, (role, _, _) in enumerate(parts) if role == "observation"] if opts.train_on_observation else []
            return [self._layout(tokenizer, parts, set(learnable) | set(obs), opts)]
        ends = learnable if opts.multi_turn == "split" else learnable[-1:]
        return [self._layout(tokenizer, parts[: k + 1], {k}, opts) for k in ends]

    def _layout(self, tokenizer: Any, parts: list[tuple[str, list[int], list[int]]], learn: set[int],
                opts: EncodeOptions) -> Layout:
        layout: Layout = [Segment(self.prefix(tokenizer), False, PREFIX)]
        prev_learned = False
        for i, (_, header, body) in enumerate(parts):
            role_tok, meta = header[:1], header[1:]
            if i in learn:
                # role token: a stop if it follows a learned turn, else a fixed header
                layout.append(Segment(role_tok, prev_learned, STOP if prev_learned else HEADER))
                layout.append(Segment(meta + body, True, ANSWER))
            else:
                if prev_learned:
                    layout.append(Segment(role_tok, True, STOP))
                    layout.append(Segment(meta + body, opts.train_on_prompt, PROMPT))
                else:
                    layout.append(Segment(header + body, opts.train_on_prompt, PROMPT))
            prev_learned = i in learn
        layout.append(Segment([self.eos_id(tokenizer)], prev_learned, STOP))
        return layout
