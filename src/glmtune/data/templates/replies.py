"""What a model's decoded reply means, per chat format: the official post-processing of each
generation's ``chat()`` (v1's punctuation rules, ChatGLM3's tool calls) and the explanation-based
``EXPLAIN: ... CONCLUSION: ...`` split. Never evaluates model output as code."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

TRAINING_DATE = ("[[训练时间]]", "2023年")  # every official process_response fills this placeholder
_V1_PUNCTUATION = ((",", "，"), ("!", "！"), (":", "："), (";", "；"), (r"\?", "？"))


@dataclass
class Reply:
    """A parsed reply: the text to show, and the tool calls a ChatGLM3 reply asked for."""

    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # [{"name", "arguments": {...}}]

    @property
    def conclusion(self) -> str | None:
        """The text after the last ``CONCLUSION:`` of an explanation-based answer (None without one)."""
        return explanation_parts(self.content)[1]

    @property
    def explanation(self) -> str | None:
        return explanation_parts(self.content)[0]


def explanation_parts(text: str) -> tuple[str | None, str | None]:
    """``(explain, conclusion)`` of ``" EXPLAIN: ... CONCLUSION: ..."``; None where a part is absent."""
    if "CONCLUSION:" not in text:
        return None, None
    head, conclusion = text.rsplit("CONCLUSION:", 1)
    explain = head.split("EXPLAIN:", 1)[1].strip() if "EXPLAIN:" in head else None
    return explain, conclusion.strip()


def plain(text: str) -> Reply:
    """ChatGLM2's process_response (and the default): strip, fill the training-date placeholder."""
    return Reply(text.strip().replace(*TRAINING_DATE))


def chatglm_v1(text: str) -> Reply:
    """ChatGLM-6B's process_response: half-width , ! : ; ? next to a CJK character become full-width."""
    text = text.strip().replace(*TRAINING_DATE)
    for half, full in _V1_PUNCTUATION:
        text = re.sub(rf"([\u4e00-\u9fff]){half}", rf"\1{full}", text)
        text = re.sub(rf"{half}([\u4e00-\u9fff])", rf"{full}\1", text)
    return Reply(text)


def tool_call_arguments(code: str) -> dict[str, Any] | None:
    """``tool_call(a=1, b="x")`` -> ``{"a": 1, "b": "x"}`` with literal values only (None otherwise)."""
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError:
        return None
    call = tree.body
    if not isinstance(call, ast.Call) or call.args:
        return None
    try:
        arguments = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
        # only what JSON can carry goes to clients (tuples become lists; sets, bytes, complex do not pass)
        return json.loads(json.dumps(arguments, ensure_ascii=False))
    except (ValueError, TypeError, MemoryError, RecursionError, SyntaxError):
        return None


def chatglm3(text: str, tools_given: bool = True) -> Reply:
    """ChatGLM3's process_response: each ``<|assistant|>`` part is ``metadata\\ncontent``; a part with
    metadata (the tool name) whose content is a ```` ``` ````-fenced ``tool_call(...)`` is a tool call."""
    contents: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in text.split("<|assistant|>"):
        metadata, content = part.split("\n", 1) if "\n" in part else ("", part)
        if metadata.strip() and tools_given:
            lines = content.strip().split("\n")
            code = "\n".join(lines[1:-1]) if len(lines) >= 2 and lines[0].startswith("```") else content
            arguments = tool_call_arguments(code)
            if arguments is not None:
                calls.append({"name": metadata.strip(), "arguments": arguments})
                continue
        contents.append(content.strip().replace(*TRAINING_DATE))
    return Reply("\n".join(c for c in contents if c), calls)
