"""A real ``glmtune serve`` on localhost (ChatGLM3 mini + two LoRA adapters), driven by the official
``openai`` client and by raw HTTP for the error cases."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

openai = pytest.importorskip("openai")

from glmtune.cli import main as cli  # noqa: E402
from glmtune.inference.engine import Engine  # noqa: E402
from glmtune.inference.settings import GenerationSettings  # noqa: E402

KEY = "test-key"
HELLO = [{"role": "user", "content": "你好"}]


def call(base: str, path: str, body: object = None, headers: dict | None = None, raw: bytes | None = None,
         method: str = "POST") -> tuple[int, dict]:
    """One request with the standard library (the openai client cannot send broken requests)."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    status, text = response.status, response.read().decode()
    conn.close()
    return status, json.loads(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def adapters(reference, tmp_path_factory):
    data = tmp_path_factory.mktemp("d") / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"{i} 加 {i}"},
                                                     {"role": "assistant", "content": f"{2 * i}"}]}) + "\n"
                            for i in range(4)))  # fmt: skip
    out = {}
    for name, lr in (("math", "5e-1"), ("poet", "9e-1")):
        out[name] = tmp_path_factory.mktemp("a") / name
        assert cli(["train", f"model={reference / 'checkpoints' / 'chatglm3-mini'}", "method=lora", f"data={data}",
                    f"output_dir={out[name]}", "max_steps=2", "batch_size=2", "report_to=[none]",
                    f"learning_rate={lr}", "cutoff_len=32"]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def server(reference, adapters, tmp_path_factory):
    port = free_port()
    model = reference / "checkpoints" / "chatglm3-mini"
    cmd = [sys.executable, "-m", "glmtune", "serve", "--model", str(model), "--port", str(port), "--api-key", KEY,
           "--adapter", f"math={adapters['math']}", "--adapter", f"poet={adapters['poet']}",
           "--max-concurrent", "2", "--max-queue", "2"]  # fmt: skip
    log = tmp_path_factory.mktemp("log") / "serve.log"
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    base = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if call(base, "/health", method="GET")[0] == 200:
                break
        except OSError:
            time.sleep(0.25)
    else:
        proc.kill()
        pytest.fail(f"server did not start:\n{log.read_text()}")
    yield base, model
    proc.terminate()  # SIGTERM: uvicorn shuts down gracefully, then re-raises the signal
    assert proc.wait(timeout=60) in (0, -15) and "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY)


def expected(model, adapter, messages, **settings):
    engine = Engine.load(model, adapter=adapter, device="cpu")
    return engine.generate([messages], GenerationSettings(temperature=0, **settings))[0]


def test_models_lists_base_and_adapters(client):
    listed = {m.id: m for m in client.models.list().data}
    assert set(listed) == {"chatglm3-mini", "math", "poet"}
    assert listed["math"].model_dump().get("parent") == "chatglm3-mini"


@pytest.mark.parametrize("name", ["chatglm3-mini", "math", "poet"])
def test_chat_per_adapter_equals_the_engine(client, server, adapters, name):
    reply = client.chat.completions.create(model=name, messages=HELLO, max_tokens=6, temperature=0)
    want = expected(server[1], adapters.get(name), HELLO, max_new_tokens=6)
    assert reply.choices[0].message.content == want.text
    assert reply.choices[0].finish_reason == want.finish_reason
    assert reply.usage.prompt_tokens == want.prompt_tokens and reply.usage.completion_tokens == 6


def test_adapters_really_differ(client):
    a, b = (client.chat.completions.create(model=n, messages=HELLO, max_tokens=6, temperature=0).choices[0]
            .message.content for n in ("math", "poet"))  # fmt: skip
    c = client.chat.completions.create(model="chatglm3-mini", messages=HELLO, max_tokens=6, temperature=0)
    assert len({a, b, c.choices[0].message.content}) > 1


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream(client, include_usage):
    whole = client.chat.completions.create(model="math", messages=HELLO, max_completion_tokens=6, temperature=0)
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(client.chat.completions.create(model="math", messages=HELLO, max_completion_tokens=6,
                                                 temperature=0, stream=True, **kwargs))  # fmt: skip
    assert len({c.id for c in chunks}) == 1 and chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    else:
        assert all(c.usage is None for c in chunks)


def test_stop_and_seed(client):
    full = client.chat.completions.create(model="math", messages=HELLO, max_tokens=8, temperature=0)
    text = full.choices[0].message.content
    stop = text[3:5]
    cut = client.chat.completions.create(model="math", messages=HELLO, max_tokens=8, temperature=0, stop=[stop])
    assert cut.choices[0].message.content == text[: text.index(stop)].strip()
    assert cut.choices[0].finish_reason == "stop"
    a, b = (client.chat.completions.create(model="math", messages=HELLO, max_tokens=6, temperature=1.0, seed=7)
            .choices[0].message.content for _ in range(2))  # fmt: skip
    assert a == b


def test_errors_in_openai_shape(server):
    base, _ = server
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"model": "math", "messages": HELLO}
    cases = [
        ({}, body, 401, "invalid_api_key"),
        (auth, {**body, "model": "nope"}, 404, "model_not_found"),
        (auth, {**body, "n": 2}, 400, None),
        (auth, {**body, "max_tokens": 100000}, 400, "context_length_exceeded"),
        (auth, {**body, "temperature": "hot"}, 400, None),
        (auth, {**body, "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
                "model": "chatglm3-mini", "messages": [{"role": "assistant", "content": "x"}]}, 400, None),
    ]
    for headers, payload, status, code in cases:
        got, answer = call(base, "/v1/chat/completions", payload, headers)
        assert got == status, (payload, answer)
        error = answer["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        if code:
            assert error["code"] == code
    got, answer = call(base, "/v1/chat/completions", raw=b"{not json", headers=auth)
    assert got == 400 and "error" in answer
    _, answer = call(base, "/v1/chat/completions", {**body, "max_tokens": 100000}, auth)
    assert "tokens" in answer["error"]["message"] and "context" in answer["error"]["message"]


def test_legacy_chatglm_api(server):
    base, _ = server
    status, body = call(base, "/", {"prompt": "你好", "history": [], "max_length": 30, "temperature": 0.01},
                        {"Authorization": f"Bearer {KEY}"})  # fmt: skip
    assert status == 200 and body["status"] == 200 and body["history"][0][0] == "你好"
    assert body["history"][0][1] == body["response"] and "time" in body


def test_disconnect_mid_stream_frees_the_slot(server):
    base, _ = server
    headers = {"Authorization": f"Bearer {KEY}"}
    long = {"model": "math", "messages": HELLO, "max_tokens": 400, "temperature": 0, "stream": True}
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(base)
    for _ in range(5):  # more than max_concurrent + max_queue: each abandoned stream must free its slot
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        conn.request("POST", "/v1/chat/completions", body=json.dumps(long),
                     headers={"Content-Type": "application/json", **headers})  # fmt: skip
        response = conn.getresponse()
        while b'"content"' not in response.readline():
            pass
        conn.close()  # hang up after the first delta
    start = time.monotonic()
    status, _ = call(base, "/v1/chat/completions", {**long, "stream": False, "max_tokens": 2}, headers)
    assert status == 200 and time.monotonic() - start < 30
