"""Reply parsing per chat format (the official post-processing), and safe streaming deltas."""

from __future__ import annotations

from types import SimpleNamespace

from glmtune.data.templates.replies import chatglm3, chatglm_v1, explanation_parts, plain, tool_call_arguments
from glmtune.inference.streaming import IncrementalText


def test_v1_punctuation_and_training_date():
    assert chatglm_v1(" 你好,世界!今天是[[训练时间]]: ok, fine ").content == "你好，世界！今天是2023年： ok, fine"
    assert chatglm_v1("what?好").content == "what？好" and chatglm_v1("a, b").content == "a, b"
    assert plain("  你好,世界  ").content == "你好,世界"  # ChatGLM2 keeps punctuation


def test_chatglm3_tool_call_is_parsed_without_evaluating_code():
    text = 'get_weather\n```python\ntool_call(location="北京", days=3, units=None)\n```'
    reply = chatglm3(text)
    assert reply.content == "" and reply.tool_calls == [{"name": "get_weather",
                                                          "arguments": {"location": "北京", "days": 3, "units": None}}]
    # anything but literal keyword arguments is not a tool call (and is never run)
    assert tool_call_arguments("tool_call(x=__import__('os').system('echo hi'))") is None
    assert chatglm3("\n你好").content == "你好" and chatglm3("\n你好").tool_calls == []
    two = chatglm3("\n我来查一下。<|assistant|>search\n```python\ntool_call(q='x')\n```")
    assert two.content == "我来查一下。" and two.tool_calls == [{"name": "search", "arguments": {"q": "x"}}]


def test_explanation_split():
    assert explanation_parts(" EXPLAIN: because. CONCLUSION: yes ") == ("because.", "yes")
    assert explanation_parts("no structure") == (None, None)
    assert plain(" EXPLAIN: a CONCLUSION: b").conclusion == "b"


def stream_token_by_token(reference, text: str, template: str) -> list[str]:
    """The deltas IncrementalText hands out when ``text``'s ids arrive one at a time (real ChatGLM2 tokenizer)."""
    import glmtune
    from glmtune.data.templates import resolve_template

    tok = glmtune.load_tokenizer(reference / "checkpoints" / "chatglm2-mini")
    engine = SimpleNamespace(tokenizer=tok, template=resolve_template(tok, template), stop_ids=[2])
    incremental = IncrementalText(engine, [], SimpleNamespace(stop=[]))
    deltas = []
    for token in tok.encode(text, add_special_tokens=False):
        incremental.add([token])
        deltas.append(incremental.flush())
    return [*deltas, incremental.flush(final=True)]


def test_streaming_never_splits_a_character_and_holds_what_may_change(reference):
    deltas = stream_token_by_token(reference, "😀好,吗", "chatglm")  # the emoji is several byte pieces
    assert all("\ufffd" not in d for d in deltas)
    # v1's rules turn "好," into "好，" only once the comma is followed by text: it is never sent early
    assert "".join(deltas) == "😀好，吗" and "," not in "".join(deltas)


def test_tool_call_arguments_must_be_json():
    assert tool_call_arguments("tool_call(a={[1]: 2})") is None  # unhashable: no crash
    assert tool_call_arguments("tool_call(a={1, 2})") is None and tool_call_arguments("tool_call(a=1j)") is None
    assert tool_call_arguments("tool_call(a=(1, 2))") == {"a": [1, 2]}
    assert chatglm3("f\n```python\ntool_call(a={[1]: 2})\n```").tool_calls == []


def test_streaming_holds_back_the_start_of_the_training_date_placeholder(reference):
    deltas = stream_token_by_token(reference, "我的训练时间是[[训练时间]]左右。", "chatglm2")
    assert "".join(deltas) == "我的训练时间是2023年左右。" and "[" not in "".join(deltas)
