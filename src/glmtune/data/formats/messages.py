"""Rows already in glmtune's shape (``{"messages": [...]}``): validated and passed through."""

from __future__ import annotations

from typing import Any

from glmtune.data.formats.base import Message, Options, register
from glmtune.data.records import validate_record


@register("messages", required=("messages",), priority=40)
def to_messages(row: dict[str, Any], opts: Options) -> list[Message]:
    validate_record(row)
    return list(row["messages"])
