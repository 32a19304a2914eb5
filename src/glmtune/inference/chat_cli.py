"""``glmtune chat --model M [--adapter A]``: talk to a model in the terminal, as the official cli_demo.

Interactive (a TTY): streamed replies, history kept; ``clear`` forgets it, ``exit`` quits. Piped
(stdin not a TTY): every input line is one independent question, one answer line each, so scripts
can use it.
"""

from __future__ import annotations

import argparse
import sys

from glmtune.inference.settings import add_generation_args, add_model_args, settings_from_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glmtune chat", description=__doc__.split("\n")[0])
    add_model_args(p)
    add_generation_args(p)
    p.add_argument("--history", action="store_true", help="piped input: keep the history between lines")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    from glmtune.inference.engine import Engine

    engine = Engine.load(args.model, adapter=args.adapter, template=args.template, family=args.family,
                         dtype=args.dtype, device=args.device, quantization=args.quantization)  # fmt: skip
    interactive = sys.stdin.isatty()
    keep_history = interactive or args.history
    history: list[dict[str, str]] = []
    if interactive:
        print(f"glmtune chat: {args.model}{f' + {args.adapter}' if args.adapter else ''} "
              f"(format {engine.template.name}). Type 'clear' to forget the history, 'exit' to quit.")  # fmt: skip
    while True:
        if interactive:
            try:
                line = input("\nUser: ")
            except EOFError:
                print()
                return 0
        else:
            line = sys.stdin.readline()
            if not line:
                return 0
            line = line.rstrip("\n")
        query = line.strip()
        if not query:
            continue
        if query in ("exit", "quit"):
            return 0
        if query == "clear":
            history = []
            if interactive:
                print("(history cleared)")
            continue
        messages = [*history, {"role": "user", "content": query}]
        if interactive:
            print("\nAssistant: ", end="", flush=True)
        parts = []
        for delta in engine.stream(messages, settings):
            parts.append(delta)
            if interactive:
                print(delta, end="", flush=True)
        reply = "".join(parts)
        calls = engine.last.tool_calls if engine.last else []
        if interactive:
            print()
            for call in calls:
                print(f"(tool call: {call['name']}({call['arguments']}))")
        else:
            print(reply.replace("\n", "\\n") if not calls else f"{reply} [tool calls: {calls}]", flush=True)
        if keep_history:
            history = [*messages, {"role": "assistant", "content": reply}]
