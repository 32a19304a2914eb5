"""The record format and reading converted JSONL back."""

from __future__ import annotations

import json

import pytest

from glmtune.data.records import RowError, read_records, validate_record
from glmtune.errors import DataError

OK = {
    "messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}],
    "id": 1,
    "meta": {},
}


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ([], "not an object 'record'"),
        ({"id": 1}, "missing 'messages'"),
        ({"messages": []}, "not a non-empty list 'messages'"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "unknown role 'messages[].role'"),
        ({"messages": [{"role": "user", "content": 1}]}, "missing or not a string 'messages[].content'"),
        (
            {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": ""}]},
            "empty 'messages[].content'",
        ),  # fmt: skip
        (
            {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]},
            "no user message 'messages'",
        ),  # fmt: skip
        (
            {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "u"}]},
            "last message is not the assistant's 'messages[].role'",
        ),  # fmt: skip
        ({**OK, "meta": []}, "not an object 'meta'"),
    ],
)
def test_validate_record_reasons(record, reason):
    with pytest.raises(RowError) as info:
        validate_record(record)
    assert info.value.reason == reason


def test_read_records_errors_name_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        json.dumps(OK) + "\n\n" + json.dumps({"messages": [OK["messages"][0]]}) + "\n", encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"d\.jsonl:3: field 'messages\[0\]\.role': last message"):
        read_records(path)
    path.write_text(json.dumps(OK) + "\n", encoding="utf-8")
    assert read_records(path) == [OK]
    path.write_text("{oops\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl:1:2: malformed JSON"):
        read_records(path)
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no records"):
        read_records(path)
    with pytest.raises(DataError, match="no such file"):
        read_records(tmp_path / "none.jsonl")
