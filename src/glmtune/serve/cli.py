"""``glmtune serve --model M [--adapter NAME=PATH ...]``: an OpenAI-compatible API on the engine.

``GET /v1/models``, ``POST /v1/chat/completions`` (``stream: true`` for SSE), ``GET /health``, and
``POST /`` as the original ChatGLM ``api.py``. Several LoRA adapters share one copy of the base
model; a request picks one with its ``model`` field.
"""

from __future__ import annotations

import argparse
import os

from glmtune.errors import GlmtuneError
from glmtune.inference.settings import GenerationSettings, add_generation_args, settings_from_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glmtune serve", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="checkpoint folder (or a full fine-tune's output_dir)")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH",
                   help="a LoRA (or one P-Tuning) adapter served as model NAME (repeatable)")
    p.add_argument("--name", default=None, help="the base model's name in /v1/models (default: its folder name)")
    p.add_argument("--template", default=None, help="chat format (default: the one recorded at training)")
    p.add_argument("--family", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--quantization", default=None, choices=("4bit", "8bit"))
    p.add_argument("--device", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("GLMTUNE_API_KEY"), help="require 'Authorization: Bearer KEY'")
    p.add_argument("--max-concurrent", type=int, default=8, help="generations at once (batched together)")
    p.add_argument("--max-queue", type=int, default=32, help="requests waiting beyond that; more get 429")
    p.add_argument("--max-batch", type=int, default=8, help="largest batch of concurrent requests (1: no batching)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a request may take")
    add_generation_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    adapters = {}
    for item in args.adapter:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise GlmtuneError(f"--adapter {item!r}: give NAME=PATH")
        adapters[name] = path
    defaults: GenerationSettings = settings_from_args(args)
    import uvicorn

    from glmtune.serve.app import create_app
    from glmtune.serve.models import ServedModels

    served = ServedModels(args.model, adapters, name=args.name, template=args.template, family=args.family,
                          dtype=args.dtype, device=args.device, quantization=args.quantization)  # fmt: skip
    app = create_app(served, api_key=args.api_key, max_concurrent=args.max_concurrent, max_queue=args.max_queue,
                     timeout=args.timeout, max_batch=args.max_batch, defaults=defaults)  # fmt: skip
    print(f"glmtune serve: {', '.join(served.names())} on http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=30)
    return 0
