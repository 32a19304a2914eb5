"""Read input rows from .json, .jsonl, .csv and .parquet, remembering where each row came from.

Every problem is reported against the file: undecodable bytes by byte offset, malformed JSON by
FILE:LINE:COLUMN with a hint for the usual hand-editing mistakes, a JSON array row by its line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmtune.data import lenient_json
from glmtune.errors import DataError

SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
# A one-key object whose list holds messages, not rows: it is a single conversation.
_ROW_LIST_KEYS = ("messages", "conversations")


@dataclass
class Row:
    """One input row: ``number`` counts from 1 within its file; ``line`` is None where unknown."""

    number: int
    line: int | None
    value: Any
    key: str | None = None  # the row's key when the file is a JSON object of rows


def read_rows(
    path: str | Path, lenient: bool = False, warn: Callable[[str], None] | None = None,
    bad_line: Callable[[str], None] | None = None,
) -> list[Row]:
    """Read all rows of one input file; ``warn`` receives one message per ``--lenient`` fix.

    With ``bad_line``, a malformed JSONL line is handed to it (as ``FILE:LINE:COL: ...``) and skipped
    instead of stopping the read; each JSONL line stands alone, so the next one still parses. A JSON
    array has nothing to resync on and always stops.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix not in SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; use one of {', '.join(SUFFIXES)}"
        )
    text = decode(path)
    if suffix == ".csv":
        return _read_csv(path, text)
    if lenient:
        text, fixes = lenient_json.relax(text)
        for line, what in fixes:
            (warn or (lambda _m: None))(f"{path}:{line}: {what} (--lenient)")
    if suffix == ".jsonl":
        return _read_jsonl(path, text, bad_line)
    return _read_json(path, text)


def decode(path: Path) -> str:
    """Decode UTF-8 (a BOM is allowed); bad bytes are reported by offset and line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: invalid UTF-8 byte {data[exc.start]:#04x} at byte offset {exc.start}; "
            "re-encode the file as UTF-8"
        ) from None


def _json_error(path: Path, exc: json.JSONDecodeError) -> DataError:
    text, pos = exc.doc, exc.pos
    before = text[:pos].rstrip()
    hint = ""
    if before.endswith(",") and text[pos : pos + 1] in ("]", "}") and "--lenient" not in exc.msg:
        hint = f" (a trailing comma before {text[pos]!r}? fix the file or pass --lenient)"
    return DataError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}{hint}")


def _read_jsonl(path: Path, text: str, bad_line: Callable[[str], None] | None = None) -> list[Row]:
    rows = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            message = f"{path}:{lineno}:{exc.colno}: malformed JSON: {exc.msg}"
            if bad_line is None:
                raise DataError(message) from None
            bad_line(message)
            continue
        rows.append(Row(len(rows) + 1, lineno, value))
    return rows


class _Lines:
    """Position -> line number, for positions visited in increasing order."""

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.line = text, 0, 1

    def at(self, pos: int) -> int:
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _fail(path: Path, text: str, pos: int, msg: str) -> DataError:
    return _json_error(path, json.JSONDecodeError(msg, text, pos))


def _read_json(path: Path, text: str) -> list[Row]:
    """Parse a top-level array element by element, so each row knows its line."""
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if i == len(text):
        raise DataError(f"{path}: empty file")
    if text[i] == "{":
        return _read_json_object(path, text, decoder, i)
    if text[i] != "[":
        raise _fail(path, text, i, "expected '[' (an array of rows) or '{' (an object of rows)")
    lines, rows = _Lines(text), []
    i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "]":
        return _after_end(path, text, i + 1, rows)
    while True:
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise _json_error(path, exc) from None
        rows.append(Row(len(rows) + 1, lines.at(i), value))
        i = _skip_ws(text, end)
        if i == len(text):
            raise _fail(path, text, i, "unexpected end of file, expected ',' or ']'")
        if text[i] == "]":
            return _after_end(path, text, i + 1, rows)
        if text[i] != ",":
            raise _fail(path, text, i, "expected ',' or ']' after a row")
        comma = i
        i = _skip_ws(text, i + 1)
        if i < len(text) and text[i] in "]}":
            comma_line = text.count("\n", 0, comma) + 1
            raise _fail(
                path,
                text,
                i,
                f"trailing comma before {text[i]!r} (the comma is on line {comma_line}); "
                "fix the file or pass --lenient to accept near-JSON",
            )


def _after_end(path: Path, text: str, i: int, rows: list[Row]) -> list[Row]:
    i = _skip_ws(text, i)
    if i != len(text):
        raise _fail(path, text, i, "extra data after the closing ']'")
    return rows


def _read_json_object(path: Path, text: str, decoder: json.JSONDecoder, start: int) -> list[Row]:
    """A ``.json`` object: JSON lines, ``{"key": row, ...}``, ``{"data": [rows]}`` or a single row."""
    try:
        first, end = decoder.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc) from None
    rest = _skip_ws(text, end)
    if rest < len(text):
        if text[rest] == "{":  # JSON lines saved as .json (BELLE publishes its data like this)
            return _read_jsonl(path, text)
        raise _fail(path, text, rest, "extra data after the top-level object")
    if first and all(isinstance(v, dict) for v in first.values()):
        return [Row(n, None, v, key=k) for n, (k, v) in enumerate(first.items(), 1)]
    if len(first) == 1:
        key, value = next(iter(first.items()))
        if key not in _ROW_LIST_KEYS and isinstance(value, list) and all(isinstance(r, dict) for r in value):
            return [Row(n, None, v) for n, v in enumerate(value, 1)]
    return [Row(1, text.count("\n", 0, start) + 1, first)]  # a single row


def _read_csv(path: Path, text: str) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        for value in reader:
            if None in value:
                raise DataError(f"{path}:{reader.line_num}: row has more cells than the header has columns")
            rows.append(Row(len(rows) + 1, reader.line_num, value))
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    return rows


def _read_parquet(path: Path) -> list[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: cannot read parquet: {exc}") from None
    return [Row(n, None, value) for n, value in enumerate(table.to_pylist(), 1)]
