"""``glmtune webui --model M [--adapter A]``: a Gradio chat page on the engine (no HTTP hop).

Streaming replies, history, a system prompt (formats with a system slot) and the generation
settings (max tokens, temperature, top_p). Prompts come from the engine's chat format only.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from glmtune.inference.settings import (
    GenerationSettings,
    add_generation_args,
    add_model_args,
    settings_from_args,
)


def history_messages(history: list[Any]) -> list[dict[str, str]]:
    """Gradio's chat history (messages dicts; content may be a list of parts) as plain messages."""
    out = []
    for item in history:
        role, content = item.get("role"), item.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
        if role in ("user", "assistant") and isinstance(content, str):
            out.append({"role": role, "content": content})
    return out


def build_ui(engine: Any, defaults: GenerationSettings, title: str) -> Any:
    import gradio as gr

    def respond(message: Any, history: list[Any], system: str, max_tokens: float, temperature: float,
                top_p: float) -> Iterator[str]:
        text = message.get("text", "") if isinstance(message, dict) else str(message)
        messages = [*history_messages(history), {"role": "user", "content": text}]
        settings = defaults.with_(max_new_tokens=int(max_tokens), temperature=float(temperature), top_p=float(top_p),
                                  system=system.strip() or None)  # fmt: skip
        reply = ""
        for delta in engine.stream(messages, settings):
            reply += delta
            yield reply
        if engine.last is not None and engine.last.tool_calls:
            yield reply + "".join(f"\n\n(tool call: {c['name']}({c['arguments']}))" for c in engine.last.tool_calls)

    system_slot = engine.template.name in ("chatglm3", "glm4", "hf", "alpaca-text")
    return gr.ChatInterface(
        respond,
        title=title,
        additional_inputs=[
            gr.Textbox(value=defaults.system or "", label="System prompt", visible=system_slot),
            gr.Slider(1, 4096, value=defaults.max_new_tokens, step=1, label="Max new tokens"),
            gr.Slider(0.0, 2.0, value=defaults.temperature, step=0.05, label="Temperature (0 = greedy)"),
            gr.Slider(0.05, 1.0, value=defaults.top_p, step=0.05, label="Top p"),
        ],
        fill_height=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="glmtune webui", description=__doc__.split("\n")[0])
    add_model_args(p)
    add_generation_args(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    args = p.parse_args(argv)
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline machine
    from glmtune.inference.engine import Engine

    engine = Engine.load(args.model, adapter=args.adapter, template=args.template, family=args.family,
                         dtype=args.dtype, device=args.device, quantization=args.quantization)  # fmt: skip
    title = f"glmtune: {args.model}" + (f" + {args.adapter}" if args.adapter else "")
    ui = build_ui(engine, settings_from_args(args), title)
    print(f"glmtune webui on http://{args.host}:{args.port}", flush=True)
    ui.queue().launch(server_name=args.host, server_port=args.port, share=False, show_error=True)
    return 0
