"""Each reader: the messages it builds, how it is detected, and the field its errors name."""

from __future__ import annotations

import json

import pytest

from glmtune.data.formats import FORMATS, Options, detect
from glmtune.data.formats.columns import parse_mapping
from glmtune.data.formats.explain import split_conclusion
from glmtune.data.records import RowError
from glmtune.errors import DataError


def convert(fmt: str, row: dict, **opts) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in FORMATS.get(fmt).to_messages(row, Options(**opts))]


def test_alpaca_joins_input_and_keeps_system_and_history():
    assert convert("alpaca", {"instruction": "Add", "input": "1 + 2", "output": "3"}) == [
        ("user", "Add\n1 + 2"), ("assistant", "3")]  # fmt: skip
    row = {"instruction": "Hi", "input": "", "output": "Yo", "system": "Be brief.", "history": [["q", "a"]]}
    assert convert("alpaca", row) == [("system", "Be brief."), ("user", "q"), ("assistant", "a"),
                                      ("user", "Hi"), ("assistant", "Yo")]  # fmt: skip
    assert convert("alpaca", {"instruction": "Hi", "input": None, "output": "Yo"})[0] == ("user", "Hi")


def test_belle_input_target_and_alpaca_shape():
    assert convert("belle", {"input": "问题", "target": "回答"}) == [("user", "问题"), ("assistant", "回答")]
    assert convert("belle", {"instruction": "写诗", "input": "", "output": "好"}) == [
        ("user", "写诗"),
        ("assistant", "好"),
    ]


def test_chatglm_columns_and_history():
    row = {"prompt": "p", "response": "r", "history": [["q1", "a1"], ["q2", "a2"]]}
    assert convert("chatglm", row) == [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2"),
                                       ("user", "p"), ("assistant", "r")]  # fmt: skip
    row = {"q": "p", "a": "r", "h": [["x", "y"]]}
    assert convert("chatglm", row, prompt_column="q", response_column="a", history_column="h")[:2] == [
        ("user", "x"), ("assistant", "y")]  # fmt: skip
    with pytest.raises(RowError, match=r"field 'h': missing"):
        convert("chatglm", {"prompt": "p", "response": "r"}, history_column="h")
    with pytest.raises(RowError, match=r"field 'history\[0\]': wrong type"):
        convert("chatglm", {"prompt": "p", "response": "r", "history": [["only one"]]})
    with pytest.raises(RowError, match=r"field 'history\[0\]\[1\]': empty"):
        convert("chatglm", {"prompt": "p", "response": "r", "history": [["q", " "]]})


def test_sharegpt_roles_and_tool_calls():
    call = json.dumps({"name": "calc", "arguments": {"x": 1}})
    row = {"conversations": [
        {"from": "system", "value": "S"}, {"from": "human", "value": "h"}, {"from": "function_call", "value": call},
        {"from": "observation", "value": "42"}, {"from": "gpt", "value": "g"}]}  # fmt: skip
    msgs = FORMATS.get("sharegpt").to_messages(row, Options())
    assert [(m["role"], m["content"]) for m in msgs] == [
        ("system", "S"), ("user", "h"), ("assistant", call), ("tool", "42"), ("assistant", "g")]  # fmt: skip
    assert msgs[2]["tool_calls"] == [
        {"type": "function", "function": {"name": "calc", "arguments": '{"x": 1}'}}
    ]
    with pytest.raises(RowError, match=r"field 'conversations\[1\]\.from': unknown role 'robot'"):
        convert(
            "sharegpt", {"conversations": [{"from": "human", "value": "h"}, {"from": "robot", "value": "r"}]}
        )
    with pytest.raises(RowError, match=r"field 'conversations\[0\]\.value': missing"):
        convert("sharegpt", {"conversations": [{"from": "human"}]})


def test_messages_pass_through_and_are_validated():
    msgs = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
    assert FORMATS.get("messages").to_messages({"messages": msgs}, Options()) == msgs
    with pytest.raises(RowError, match=r"'messages\[1\]\.role': last message is not the assistant's"):
        convert("messages", {"messages": msgs[:1] + [{"role": "user", "content": "again"}]})


def test_columns_mapping():
    opts = {"mapping": parse_mapping(["user=content", "assistant=summary"])}
    assert convert("columns", {"content": "类型#裙", "summary": "好看"}, **opts) == [
        ("user", "类型#裙"), ("assistant", "好看")]  # fmt: skip
    with pytest.raises(DataError, match="--map needs assistant=COLUMN"):
        parse_mapping(["user=content"])
    with pytest.raises(DataError, match="unknown target 'bot'"):
        parse_mapping(["user=a", "bot=b"])


def test_explain_assistant_text_is_exact_and_splits_back():
    row = {"instruction": "算术：", "input": "2*3", "explain": "2乘3", "output": "6"}
    assert convert("explain", row) == [("user", "算术：\n2*3"), ("assistant", " EXPLAIN: 2乘3 CONCLUSION: 6")]
    assert split_conclusion(" EXPLAIN: 2乘3 CONCLUSION: 6") == ("2乘3", "6")
    assert split_conclusion("just 6") == ("", "just 6")


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        ({"instruction": "i", "input": ""}, "output", "missing"),
        ({"instruction": "i", "output": 3}, "output", "wrong type"),
        ({"instruction": " ", "output": "o"}, "instruction", "empty"),
        ({"instruction": "i", "output": ""}, "output", "empty"),
        ({"instruction": "i", "input": ["x"], "output": "o"}, "input", "wrong type"),
    ],
)
def test_row_errors_name_the_field(row, field, problem):
    with pytest.raises(RowError) as info:
        convert("alpaca", row)
    assert info.value.field == field and info.value.reason == f"{problem} '{field}'"


@pytest.mark.parametrize(
    ("keys", "name"),
    [
        (["instruction", "input", "output"], "alpaca"),
        (["instruction", "input", "output", "text"], "alpaca"),
        (["instruction", "input", "explain", "output"], "explain"),
        (["input", "target"], "belle"),
        (["prompt", "response", "history"], "chatglm"),
        (["id", "conversations"], "sharegpt"),
        (["messages", "id"], "messages"),
    ],
)
def test_detection(keys, name):
    assert detect(keys, Options())[0].name == name


def test_detection_reports_keys_and_fails_clearly():
    assert detect(["instruction", "input", "output", "text"], Options())[1] == [
        "instruction",
        "input",
        "output",
    ]
    assert detect(["q", "a"], Options(prompt_column="q", response_column="a"))[0].name == "chatglm"
    with pytest.raises(
        DataError, match=r"cannot detect the format from keys content, summary; choose --format"
    ):
        detect(["content", "summary"], Options())
    with pytest.raises(DataError, match="ambiguous format: .* fit sharegpt, messages|messages, sharegpt"):
        detect(["messages", "conversations"], Options())
