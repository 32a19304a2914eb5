"""Schemathesis fuzzes the live server's OpenAPI schema (bounded): no 5xx, no crash.

The model is the scripted ChatGLM3 of test_serve_tools (fast and deterministic); everything else is
the real app on a real uvicorn: validation, conversion, chat format, batching, streaming, errors."""

from __future__ import annotations

import socket
import threading
import time

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from test_serve_tools import REPLY, OneModel, ScriptedModel  # noqa: E402


@pytest.fixture(scope="module")
def live_schema(reference):
    import uvicorn

    import glmtune
    from glmtune.inference.engine import Engine
    from glmtune.serve.app import create_app

    tok = glmtune.load_tokenizer(reference / "checkpoints" / "chatglm3-mini")
    engine = Engine(ScriptedModel(tok.encode(REPLY, add_special_tokens=False), 64797), tok, "chatglm3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(OneModel(engine), timeout=30), host="127.0.0.1", port=port,
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")
    server.should_exit = True
    thread.join(timeout=10)


def test_no_server_errors(live_schema):
    operations = [result.ok() for result in live_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/models", "/health", "/"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate(checks=[not_a_server_error], timeout=60)

        check()
