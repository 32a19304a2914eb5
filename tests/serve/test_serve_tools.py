"""ChatGLM3 tool calls through the API, read by the official openai client as ``tool_calls``.

The reference minis have random weights and never write a tool call, so the model here is scripted:
it emits the ids of a real ChatGLM3 tool-call reply (the real tokenizer, chat format and server)."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest

openai = pytest.importorskip("openai")

REPLY = "get_weather\n```python\ntool_call(location='北京', days=2)\n```"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "天气",
                                           "parameters": {"type": "object", "properties": {"location": {}}}}}]


class ScriptedModel:
    """Answers every prompt with ``reply`` ids + a stop id, through transformers' streamer protocol."""

    def __init__(self, reply_ids: list[int], stop: int) -> None:
        import torch

        self.reply, self.stop = reply_ids, stop
        self.config = SimpleNamespace(max_position_embeddings=8192)
        self.prompts: list[list[int]] = []
        self._param = torch.nn.Parameter(torch.zeros(1))

    def eval(self):
        return self

    def parameters(self):
        return iter([self._param])

    def generate(self, input_ids, attention_mask, streamer=None, **kwargs):
        import torch

        self.prompts.append(input_ids[0][attention_mask[0].bool()].tolist())
        new = torch.tensor([self.reply + [self.stop]] * input_ids.shape[0])
        if streamer is not None:
            streamer.put(input_ids)
            for column in new.T:
                streamer.put(column)
            streamer.end()
        return torch.cat([input_ids, new], dim=1)


class OneModel:
    def __init__(self, engine) -> None:
        self.engine, self.parent, self.engines = engine, {"glm3": None}, {"glm3": engine}

    def names(self):
        return ["glm3"]

    def use(self, name):
        import contextlib

        return contextlib.nullcontext(self.engine)

    def context_length(self):
        return 8192


@pytest.fixture(scope="module")
def client(reference):
    import uvicorn

    import glmtune
    from glmtune.inference.engine import Engine
    from glmtune.serve.app import create_app

    tok = glmtune.load_tokenizer(reference / "checkpoints" / "chatglm3-mini")
    ids = tok.encode(REPLY, add_special_tokens=False)
    engine = Engine(ScriptedModel(ids, 64797), tok, "chatglm3")  # <|observation|> ends a tool call turn
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(OneModel(engine)), host="127.0.0.1", port=port,
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x"), engine
    server.should_exit = True
    thread.join(timeout=10)


def test_tool_call_comes_back_as_tool_calls(client):
    api, engine = client
    reply = api.chat.completions.create(model="glm3", messages=[{"role": "user", "content": "北京天气？"}],
                                        tools=TOOLS, temperature=0)  # fmt: skip
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert __import__("json").loads(call.function.arguments) == {"location": "北京", "days": 2}
    # the tools went into ChatGLM3's official system prompt
    prompt = engine.tokenizer.decode(engine.model.prompts[-1])
    assert "get_weather" in prompt and "You have access to the following tools" in prompt


def test_streamed_tool_call_and_the_observation_round_trip(client):
    api, engine = client
    chunks = list(api.chat.completions.create(model="glm3", messages=[{"role": "user", "content": "北京天气？"}],
                                              tools=TOOLS, temperature=0, stream=True))  # fmt: skip
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "get_weather"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    # send the result back as a tool message: it reaches the model as an observation turn
    history = [{"role": "user", "content": "北京天气？"},
               {"role": "assistant", "content": None, "tool_calls": [calls[0].model_dump()]},
               {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temperature": 20}'}]
    api.chat.completions.create(model="glm3", messages=history, tools=TOOLS, temperature=0)
    ids = engine.model.prompts[-1]
    assert 64797 in ids and ids[-1] == 64796  # <|observation|> turn, then <|assistant|>
    assert "tool_call(location='北京', days=2)" in engine.tokenizer.decode(ids)


def test_beyond_the_limits_is_429_with_retry_after(reference):
    """max_concurrent=1, max_queue=0: while one generation runs, the next request is told to retry."""
    import http.client
    import json

    import uvicorn

    import glmtune
    from glmtune.inference.engine import Engine
    from glmtune.serve.app import create_app

    tok = glmtune.load_tokenizer(reference / "checkpoints" / "chatglm3-mini")

    class Slow(ScriptedModel):
        def generate(self, *args, **kwargs):
            time.sleep(1.5)
            return super().generate(*args, **kwargs)

    engine = Engine(Slow(tok.encode("\n你好", add_special_tokens=False), 2), tok, "chatglm3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(OneModel(engine), max_concurrent=1, max_queue=0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def post(stream: bool = False) -> tuple[int, dict, str | None]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v1/chat/completions", json.dumps({"model": "glm3", "stream": stream, "messages": [
            {"role": "user", "content": "hi"}]}), {"Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if r.status != 200 or not stream else {}, r.getheader("Retry-After")

    try:
        first: list = []
        worker = threading.Thread(target=lambda: first.append(post()))
        worker.start()
        time.sleep(0.5)  # the first request is generating
        status, body, retry = post()
        streamed = post(stream=True)  # a stream is refused before its 200 goes out
        worker.join()
        assert status == 429 and retry == "1" and body["error"]["code"] == "rate_limit_exceeded"
        assert streamed[0] == 429 and streamed[2] == "1"
        assert first[0][0] == 200 and first[0][1]["choices"][0]["message"]["content"] == "你好"
        assert post()[0] == 200  # the slot is free again
    finally:
        server.should_exit = True
        thread.join(timeout=10)
