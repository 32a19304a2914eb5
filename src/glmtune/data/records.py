"""The one record format every dataset is converted to, and reading it back with clear errors.

A record is ``{"messages": [{"role": ..., "content": ...}, ...], "id": ..., "meta": {...}}`` with at
least one user and one assistant message, the last one the assistant's. Training and ``stats`` read
converted JSONL through :func:`read_records`, so a hand-edited file fails with file, line and field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glmtune.errors import DataError

ROLES = ("system", "user", "assistant", "tool")
_INDEX = re.compile(r"\[\d+\]")


class RowError(DataError):
    """One input row cannot be converted; ``reason`` is the short key it is counted under when skipped."""

    def __init__(self, field: str, problem: str, detail: str = "") -> None:
        self.field = field
        # Counted without list indices, so skips group as "empty 'messages[].content'".
        self.reason = f"{problem} '{_INDEX.sub('[]', field)}'"
        super().__init__(f"field '{field}': {problem}{detail}")


def make_record(messages: list[dict[str, Any]], id: str | int, meta: dict[str, Any]) -> dict[str, Any]:
    """Build a record and check it, so no converter can emit something training would reject."""
    record = {"messages": messages, "id": id, "meta": meta}
    validate_record(record)
    return record


def validate_record(record: Any) -> None:
    """Raise :class:`RowError` naming the offending field if ``record`` is not a valid conversation."""
    if not isinstance(record, dict):
        raise RowError("record", "not an object", f" (got {type(record).__name__})")
    messages = record.get("messages")
    if messages is None:
        raise RowError("messages", "missing")
    if not isinstance(messages, list) or not messages:
        raise RowError("messages", "not a non-empty list")
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise RowError(where, "not an object")
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            raise RowError(f"{where}.role", "unknown role", f" {role!r} (allowed: {', '.join(ROLES)})")
        if not isinstance(content, str):
            raise RowError(f"{where}.content", "missing or not a string")
        if role in ("user", "assistant") and not content.strip():
            raise RowError(f"{where}.content", "empty", f" {role} text")
    roles = [m["role"] for m in messages]
    if "user" not in roles:
        raise RowError("messages", "no user message")
    if roles[-1] != "assistant":
        raise RowError(f"messages[{len(roles) - 1}].role", "last message is not the assistant's")
    if "meta" in record and not isinstance(record["meta"], dict):
        raise RowError("meta", "not an object")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, value)`` for each non-blank line; malformed JSON names FILE:LINE:COLUMN."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid UTF-8 byte {raw[exc.start]:#04x}") from None
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None


def _raw_data_hint(path: str | Path, record: Any) -> str:
    """When a file is raw instruction data rather than converted records, say so and how to convert it."""
    from glmtune.data.formats import FORMATS  # noqa: F401 - registers the formats
    from glmtune.data.formats.base import Options, detect

    row = record[0] if isinstance(record, list) and record and isinstance(record[0], dict) else record
    if not isinstance(row, dict) or "messages" in row:
        return ""
    try:
        fmt, _ = detect(list(row), Options())
        looks = f"it looks like {fmt.name} data"
    except DataError:
        looks = "it is not glmtune's records format"
    return (f"{path} is not a converted records file (JSONL, one {{\"messages\": [...]}} per line): {looks}; "
            f"run 'glmtune convert {path} -o DATA.jsonl' first and use DATA.jsonl")


def numbered_records(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` of a converted JSONL file, validated; errors name FILE:LINE."""
    records = []
    for lineno, record in iter_jsonl(path):
        try:
            validate_record(record)
        except RowError as exc:
            hint = _raw_data_hint(path, record) if not records else ""
            if hint:
                raise DataError(hint) from None
            raise DataError(f"{path}:{lineno}: {exc}") from None
        records.append((lineno, record))
    if not records:
        raise DataError(f"{path}: no records")
    return records


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a converted JSONL file (the output of ``glmtune convert``)."""
    return [record for _, record in numbered_records(path)]
