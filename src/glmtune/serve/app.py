"""The FastAPI app: OpenAI-compatible chat completions (SSE streaming), models, health, and the
original ChatGLM ``api.py`` endpoint. Every prompt goes through the engine's chat format."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from glmtune.errors import DataError, GlmtuneError
from glmtune.inference.settings import GenerationSettings
from glmtune.serve.batcher import Batcher
from glmtune.serve.convert import chunk, completion_body, openai_tool_calls, to_messages, usage
from glmtune.serve.schemas import ApiError, ChatCompletionRequest, LegacyRequest


class Limits:
    """At most ``concurrent`` generations, ``queue`` more waiting; beyond that 429 with Retry-After."""

    def __init__(self, concurrent: int, queue: int) -> None:
        self.slots = asyncio.Semaphore(concurrent)
        self.capacity, self.inside = concurrent + queue, 0

    async def __aenter__(self) -> None:
        await self.acquire()

    async def acquire(self) -> None:
        if self.inside >= self.capacity:
            raise ApiError(429, "the server is busy: too many requests in flight; retry shortly",
                           type_="rate_limit_error", code="rate_limit_exceeded", headers={"Retry-After": "1"})
        self.inside += 1
        try:
            await self.slots.acquire()
        except BaseException:
            self.inside -= 1
            raise

    async def __aexit__(self, *exc: Any) -> None:
        self.release()

    def release(self) -> None:
        self.slots.release()
        self.inside -= 1


def create_app(served: Any, api_key: str | None = None, max_concurrent: int = 8, max_queue: int = 32,
               timeout: float = 600.0, max_batch: int = 8, defaults: GenerationSettings | None = None) -> FastAPI:
    defaults = defaults or GenerationSettings()
    limits = Limits(max_concurrent, max_queue)

    def run_batch(key: tuple[str, GenerationSettings, Any], conversations: list[list[dict[str, Any]]]) -> list[Any]:
        name, settings, _ = key
        with served.use(name) as engine:
            return engine.generate(conversations, settings, batch_size=max_batch)

    batcher = Batcher(run_batch, max_batch=max_batch)
    app = FastAPI(title="glmtune serve", version="1", on_startup=[batcher.start], on_shutdown=[batcher.stop])
    app.state.served, app.state.batcher = served, batcher

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            where = first.get("loc", [None, "?"])[-1]
            error = ApiError(400, f"malformed JSON body (at character {where}): {first.get('ctx', {}).get('error', '')}")
            return JSONResponse(error.body(), status_code=400)
        param = ".".join(str(p) for p in first.get("loc", [])[1:]) or None
        return JSONResponse(ApiError(400, f"{param or 'body'}: {first.get('msg', 'invalid request')}",
                                     param=param).body(), status_code=400)  # fmt: skip

    @app.exception_handler(GlmtuneError)
    async def glmtune_error(_: Request, exc: GlmtuneError) -> JSONResponse:
        # request problems are ApiErrors or DataErrors (a conversation the format cannot build);
        # anything else glmtune raises while generating is the server's fault
        status = 400 if isinstance(exc, DataError) else 500
        kind = "invalid_request_error" if status == 400 else "server_error"
        return JSONResponse(ApiError(status, str(exc), type_=kind).body(), status_code=status)

    @app.middleware("http")
    async def auth(request: Request, call_next: Any) -> Any:
        if api_key and request.url.path not in ("/health", "/docs", "/openapi.json"):
            if request.headers.get("authorization", "") != f"Bearer {api_key}":
                error = ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')",
                                 type_="authentication_error", code="invalid_api_key")
                return JSONResponse(error.body(), status_code=401)
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": served.names()}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "glmtune", **(
            {"parent": served.parent[n]} if served.parent.get(n) else {})} for n in served.names()]
        return {"object": "list", "data": data}

    def prepare(body: ChatCompletionRequest) -> tuple[str, list[dict[str, Any]], GenerationSettings, int]:
        if body.model not in served.names():
            raise ApiError(404, f"model {body.model!r} does not exist; available: {', '.join(served.names())}",
                           param="model", code="model_not_found")  # fmt: skip
        if body.n not in (None, 1):
            raise ApiError(400, "n: only n=1 is supported (one choice per request)", param="n")
        engine = served.engines[body.model]
        messages = to_messages(body, supports_tools=engine.template.name == "chatglm3")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        settings = defaults.with_(max_new_tokens=body.max_completion_tokens or body.max_tokens,
                                  temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=stop)
        prompt = len(engine.prompt_ids(messages, settings))
        context = served.context_length()
        if context and prompt + settings.max_new_tokens > context:
            raise ApiError(400, f"the prompt has {prompt} tokens and max_tokens is {settings.max_new_tokens}: "
                                f"together more than the model's context of {context} tokens", param="messages",
                           code="context_length_exceeded")  # fmt: skip
        return body.model, messages, settings, prompt

    @app.post("/v1/chat/completions")
    async def chat(body: ChatCompletionRequest, request: Request) -> Any:
        name, messages, settings, _ = prepare(body)
        if body.stream:  # the slot is taken before the 200 goes out, so a busy server can still say 429
            await limits.acquire()
            return StreamingResponse(stream(name, messages, settings, body, request), media_type="text/event-stream")
        return completion_body(name, await generate(name, settings, messages))

    async def generate(name: str, settings: GenerationSettings, messages: list[dict[str, Any]]) -> Any:
        # a seeded request runs alone: batched rows would share one random stream
        key = (name, settings, uuid.uuid4().hex if settings.seed is not None else None)
        async with limits:
            try:
                return await asyncio.wait_for(batcher.submit(key, messages), timeout)
            except asyncio.TimeoutError:
                raise ApiError(504, f"generation took longer than {timeout:.0f}s", type_="timeout") from None

    async def stream(name: str, messages: list[dict[str, Any]], settings: GenerationSettings,
                     body: ChatCompletionRequest, request: Request) -> Any:
        cid, queue = f"chatcmpl-{uuid.uuid4().hex}", asyncio.Queue()
        loop, stop = asyncio.get_running_loop(), threading.Event()
        try:
            def work() -> None:
                try:
                    with served.use(name) as engine:
                        deltas = engine.stream(messages, settings, cancel=stop)
                        for delta in deltas:
                            loop.call_soon_threadsafe(queue.put_nowait, ("delta", delta))
                            if stop.is_set():
                                deltas.close()  # ends the generation at the next token
                                break
                        loop.call_soon_threadsafe(queue.put_nowait, ("done", engine.last))
                except Exception as exc:  # noqa: BLE001 - reported in the stream
                    loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

            thread = threading.Thread(target=work, daemon=True)
            start = time.monotonic()
            thread.start()
            try:
                yield chunk(cid, name, {"role": "assistant", "content": ""})
                while True:
                    try:
                        kind, value = await asyncio.wait_for(queue.get(), timeout - (time.monotonic() - start))
                    except asyncio.TimeoutError:
                        error = ApiError(504, f"generation took longer than {timeout:.0f}s", type_="timeout")
                        yield f"data: {json.dumps(error.body())}\n\n"
                        break
                    if kind == "delta" and value:
                        yield chunk(cid, name, {"content": value})
                    elif kind == "error":
                        yield f"data: {json.dumps(ApiError(500, str(value), type_='server_error').body())}\n\n"
                        break
                    elif kind == "done":
                        finish = value.finish_reason if value else "stop"
                        if value and value.tool_calls:
                            calls = [{"index": i, **c} for i, c in enumerate(openai_tool_calls(value.tool_calls))]
                            yield chunk(cid, name, {"tool_calls": calls})
                            finish = "tool_calls"
                        yield chunk(cid, name, {}, finish)
                        if body.stream_options and body.stream_options.include_usage and value:
                            yield chunk(cid, name, None, usage_=usage(value.prompt_tokens, value.completion_tokens))
                        yield "data: [DONE]\n\n"
                        break
            finally:
                stop.set()  # a client that went away frees its slot: the generation stops at the next token
                await asyncio.to_thread(thread.join)
        finally:
            limits.release()

    @app.post("/")
    async def legacy(body: LegacyRequest) -> dict[str, Any]:
        """The original ChatGLM api.py: {"prompt", "history", ...} -> {"response", "history", "status", "time"}."""
        name = served.names()[0]
        messages = [m for q, a in body.history for m in ({"role": "user", "content": q},
                                                          {"role": "assistant", "content": a})]
        messages.append({"role": "user", "content": body.prompt})
        engine = served.engines[name]
        prompt = len(engine.prompt_ids(messages))
        budget = (body.max_length - prompt) if body.max_length else defaults.max_new_tokens
        if budget < 1:
            raise ApiError(400, f"max_length {body.max_length} leaves no room after the {prompt}-token prompt",
                           param="max_length")  # fmt: skip
        settings = defaults.with_(max_new_tokens=budget, temperature=body.temperature, top_p=body.top_p)
        completion = await generate(name, settings, messages)
        history = [*map(list, body.history), [body.prompt, completion.text]]
        return {"response": completion.text, "history": history, "status": 200,
                "time": time.strftime("%Y-%m-%d %H:%M:%S")}

    return app
