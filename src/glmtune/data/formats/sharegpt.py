"""ShareGPT rows: ``conversations`` of ``{"from": ..., "value": ...}`` turns.

Function calls and their results are kept, not dropped: ``function_call`` becomes an assistant
message whose content is the call text (plus OpenAI-style ``tool_calls`` when the text is a JSON
``{"name", "arguments"}`` object) and ``observation`` becomes a ``tool`` message.
"""

from __future__ import annotations

import json
from typing import Any

from glmtune.data.formats.base import Message, Options, register, system
from glmtune.data.records import RowError

ROLE_OF = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
    "function": "tool",
}


def _tool_calls(value: str) -> list[dict[str, Any]] | None:
    try:
        call = json.loads(value)
    except ValueError:
        return None
    if not (isinstance(call, dict) and isinstance(call.get("name"), str)):
        return None
    args = call.get("arguments", {})
    args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return [{"type": "function", "function": {"name": call["name"], "arguments": args}}]


@register("sharegpt", required=("conversations",), optional=("system",), priority=40)
def to_messages(row: dict[str, Any], opts: Options) -> list[Message]:
    turns = row.get("conversations")
    if turns is None:
        raise RowError("conversations", "missing")
    if not isinstance(turns, list) or not turns:
        raise RowError("conversations", "wrong type", " (expected a non-empty list of turns)")
    out: list[Message] = system(row)
    for i, turn in enumerate(turns):
        where = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise RowError(where, "wrong type", " (expected an object with from/value)")
        who, value = turn.get("from"), turn.get("value")
        if who not in ROLE_OF:
            raise RowError(f"{where}.from", "unknown role", f" {who!r} (known: {', '.join(ROLE_OF)})")
        if not isinstance(value, str):
            raise RowError(f"{where}.value", "missing" if value is None else "wrong type")
        if not value.strip() and ROLE_OF[who] in ("user", "assistant"):
            raise RowError(f"{where}.value", "empty", f" {who} text")
        msg: Message = {"role": ROLE_OF[who], "content": value}
        if who == "function_call" and (calls := _tool_calls(value)):
            msg["tool_calls"] = calls
        out.append(msg)
    return out
