"""Reading input files: every supported type, and every way a file can be broken."""

from __future__ import annotations

import json

import pytest

from glmtune.data.sources import read_rows
from glmtune.errors import DataError


def test_json_array_rows_know_their_lines(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n {"a": 1},\n\n {"a": 2}\n]\n', encoding="utf-8")
    rows = read_rows(path)
    assert [(r.number, r.line, r.value) for r in rows] == [(1, 2, {"a": 1}), (2, 4, {"a": 2})]


def test_json_object_of_rows_keeps_keys_and_data_list(tmp_path):
    path = tmp_path / "o.json"
    path.write_text(json.dumps({"x1": {"a": 1}, "x2": {"a": 2}}), encoding="utf-8")
    assert [(r.key, r.value) for r in read_rows(path)] == [("x1", {"a": 1}), ("x2", {"a": 2})]
    path.write_text(json.dumps({"data": [{"a": 1}, {"a": 2}]}), encoding="utf-8")
    assert [r.value for r in read_rows(path)] == [{"a": 1}, {"a": 2}]
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}), encoding="utf-8")
    assert len(read_rows(path)) == 1  # a single conversation, not one row per message


def test_jsonl_and_json_lines_saved_as_json(tmp_path):
    for name in ("l.jsonl", "belle.json"):
        path = tmp_path / name
        path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
        assert [(r.line, r.value) for r in read_rows(path)] == [(1, {"a": 1}), (3, {"a": 2})]


def test_csv_and_parquet(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('content,summary\n"a, b",x\nc,"multi\nline"\n', encoding="utf-8")
    rows = read_rows(path)
    assert [r.value for r in rows] == [
        {"content": "a, b", "summary": "x"},
        {"content": "c", "summary": "multi\nline"},
    ]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": ["p1", "p2"], "response": ["r1", "r2"]}), tmp_path / "t.parquet")
    assert [r.value for r in read_rows(tmp_path / "t.parquet")][1] == {"prompt": "p2", "response": "r2"}


def test_csv_row_with_extra_cells(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("a,b\n1,2\n1,2,3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.csv:3: row has more cells"):
        read_rows(path)


def test_utf8_bom_is_accepted_and_bad_bytes_give_offset(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf[{"a": 1}]')
    assert read_rows(path)[0].value == {"a": 1}
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"a": "ok"}\n{"a": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin1\.jsonl:2: invalid UTF-8 byte 0xe9 at byte offset 22"):
        read_rows(path)


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        (
            '[\n {"a": 1},\n {"a": 2},\n]',
            ":4:1:",
            r"trailing comma before '\]' \(the comma is on line 3\).*--lenient",
        ),
        ('[\n {"a": 1,}\n]', ":2:10:", r"a trailing comma before '}'\? .*--lenient"),
        ('[\n {"a": 1}\n {"a": 2}\n]', ":3:2:", "expected ',' or ']'"),
        ('[\n {"a": "x}\n]', ":2:11:", "Invalid control character"),
        ('[{"a": 1}', ":1:10:", "unexpected end of file"),
        ('[{"a": 1}] x', ":1:12:", "extra data"),
        ("oops", ":1:1:", "expected '\\['"),
    ],
)
def test_malformed_json_names_file_line_column(tmp_path, text, where, what):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=rf"bad\.json{where} malformed JSON: .*{what}"):
        read_rows(path)


def test_malformed_jsonl_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": 1 "b": 2}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2:9: malformed JSON: Expecting ',' delimiter"):
        read_rows(path)


def test_lenient_reading_warns_with_line(tmp_path):
    path = tmp_path / "near.json"
    path.write_text('[\n // a comment\n {"a": 1},\n]\n', encoding="utf-8")
    warnings: list[str] = []
    assert [r.value for r in read_rows(path, lenient=True, warn=warnings.append)] == [{"a": 1}]
    assert warnings == [
        f"{path}:2: removed comment (--lenient)",
        f"{path}:3: removed trailing comma (--lenient)",
    ]


def test_missing_file_and_unsupported_type(tmp_path):
    with pytest.raises(DataError, match="nope.json: no such file"):
        read_rows(tmp_path / "nope.json")
    (tmp_path / "x.txt").write_text("hi", encoding="utf-8")
    with pytest.raises(DataError, match=r"unsupported file type '\.txt'"):
        read_rows(tmp_path / "x.txt")
    (tmp_path / "e.json").write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError, match="empty file"):
        read_rows(tmp_path / "e.json")


def test_unreadable_parquet_is_one_clear_error(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"broken\.parquet: cannot read parquet: "):
        read_rows(path)
