"""OpenAI chat messages and tools <-> glmtune conversations and replies."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from glmtune.serve.schemas import ApiError, ChatCompletionRequest

# ChatGLM3's official system prompt when tools are given without a system message
TOOLS_SYSTEM = "Answer the following questions as best as you can. You have access to the following tools:"


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")


def _tool_call_text(call: dict[str, Any]) -> tuple[str, str]:
    """An OpenAI tool call as ChatGLM3 writes one: metadata = the name, content = ``tool_call(...)``."""
    function = call.get("function") or {}
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except json.JSONDecodeError:
        raise ApiError(400, "tool_calls[].function.arguments must be a JSON object", param="messages") from None
    args = ", ".join(f"{k}={v!r}" for k, v in (arguments or {}).items())
    return function.get("name", ""), f"```python\ntool_call({args})\n```"


def to_messages(request: ChatCompletionRequest, supports_tools: bool) -> list[dict[str, Any]]:
    """The request's conversation in glmtune's messages shape (tools into ChatGLM3's system slot)."""
    if request.tools and not supports_tools:
        raise ApiError(400, "this model's chat format has no tool calling (only ChatGLM3 was trained for it); "
                            "send the request without 'tools'", param="tools")  # fmt: skip
    messages: list[dict[str, Any]] = []
    for i, msg in enumerate(request.messages):
        role = {"developer": "system", "function": "tool"}.get(msg.role, msg.role)
        if role == "assistant" and msg.tool_calls:
            for call in msg.tool_calls:
                name, content = _tool_call_text(call)
                messages.append({"role": "assistant", "metadata": name, "content": content})
            continue
        messages.append({"role": role, "content": _text(msg.content)})
        if role == "tool" and not supports_tools:
            raise ApiError(400, "tool messages need a model trained for tool calling (ChatGLM3)", param=f"messages[{i}]")
    if request.tools:
        tools = [t.get("function", t) for t in request.tools]
        if messages and messages[0]["role"] == "system":
            messages[0] = {**messages[0], "tools": tools}
        else:
            messages.insert(0, {"role": "system", "content": TOOLS_SYSTEM, "tools": tools})
    if messages[-1]["role"] not in ("user", "tool"):
        raise ApiError(400, "the last message must be the user's (or a tool result)", param="messages")
    return messages


def openai_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
            for c in calls]  # fmt: skip


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(model: str, completion: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": completion.text}
    finish = completion.finish_reason
    if completion.tool_calls:
        message["tool_calls"] = openai_tool_calls(completion.tool_calls)
        message["content"] = completion.text or None
        finish = "tool_calls"
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage(completion.prompt_tokens, completion.completion_tokens)}  # fmt: skip


def chunk(cid: str, model: str, delta: dict[str, Any] | None, finish: str | None = None,
          usage_: dict[str, int] | None = None) -> str:
    body: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                            "model": model,
                            "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage_ is not None:
        body["usage"] = usage_
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
