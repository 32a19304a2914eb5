"""The ``glmtune`` command: a thin dispatch table from subcommand to a ``main(argv) -> int``.

Each entry is imported lazily so ``glmtune convert`` never pays for importing torch.
A subcommand is added here only once it works.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from glmtune.errors import GlmtuneError

# name -> ("module:function", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("glmtune.data.convert:main", "convert datasets to glmtune's JSONL messages records"),
    "stats": ("glmtune.data.stats:main", "turns and text length distribution of a converted JSONL file"),
    "tokenize": ("glmtune.data.tokenize_cmd:main", "encode converted JSONL into a cached tokenized folder for train"),
    "info": ("glmtune.models.info:main", "family, size, dtype, vocab, special ids, context length of a checkpoint"),
    "export": ("glmtune.export_cli:main", "write a checkpoint (a LoRA merged in) as transformers Glm or THUDM layout, or a LoRA on THUDM names"),
    "train": ("glmtune.train.cli:main", "fine-tune a model: glmtune train CONFIG.yaml [key=value ...]"),
    "chat": ("glmtune.inference.chat_cli:main", "talk to a model (+ adapter) in the terminal, streamed"),
    "predict": ("glmtune.inference.predict_cli:main", "generate answers for a JSONL dev set (batched, resumable)"),
    "serve": ("glmtune.serve.cli:main", "OpenAI-compatible API (streaming, named LoRA adapters) on the engine"),
    "webui": ("glmtune.serve.webui:main", "a web chat page (Gradio) on the engine"),
    "eval": ("glmtune.evaluate.cli:main", "BLEU-4 and ROUGE-1/2/L of predictions against references (official ChatGLM metrics)"),
}


def _usage() -> str:
    width = max((len(n) for n in COMMANDS), default=8)
    lines = ["usage: glmtune <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'glmtune <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from glmtune import __version__

        print(f"glmtune {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"glmtune: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target, _ = COMMANDS[name]
    module_name, func_name = target.split(":")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # bitsandbytes warns at import on CPUs with AVX512-BF16 that its optional hub kernel cannot be
    # fetched (glmtune never downloads code); it falls back to its own kernel, so hide the noise.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(rest) or 0)
    except GlmtuneError as exc:
        print(f"glmtune {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"glmtune {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not a user error: one line here, the traceback in a file
        if os.environ.get("GLMTUNE_DEBUG"):
            raise
        where = _save_traceback(name)
        print(f"glmtune {name}: internal error: {type(exc).__name__}: {exc}".splitlines()[0][:500], file=sys.stderr)
        print(f"glmtune {name}: the full traceback is in {where} (GLMTUNE_DEBUG=1 prints it); please report it",
              file=sys.stderr)
        return 1


def _save_traceback(name: str) -> str:
    import tempfile
    import time
    import traceback

    fd, path = tempfile.mkstemp(prefix=f"glmtune-{name}-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"glmtune {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}")
    return path


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
