"""Any column layout, mapped on the command line: ``--map user=content assistant=summary``.

Targets are ``user``, ``assistant`` (both required) and ``system``; e.g. AdvertiseGen's
content/summary pairs. Never auto-detected: ``--map`` selects it.
"""

from __future__ import annotations

from typing import Any

from glmtune.data.formats.base import Message, Options, register, system, text
from glmtune.errors import DataError

TARGETS = ("system", "user", "assistant")


def parse_mapping(items: list[str]) -> dict[str, str]:
    """``["user=content", ...]`` -> ``{"user": "content", ...}`` with one clear error per mistake."""
    mapping: dict[str, str] = {}
    for item in items:
        target, sep, column = item.partition("=")
        if not sep or not column:
            raise DataError(f"--map {item!r}: expected TARGET=COLUMN, e.g. user=content")
        if target not in TARGETS:
            raise DataError(f"--map {item!r}: unknown target {target!r}; use {', '.join(TARGETS)}")
        mapping[target] = column
    missing = [t for t in ("user", "assistant") if t not in mapping]
    if missing:
        raise DataError(f"--map needs {' and '.join(t + '=COLUMN' for t in missing)}")
    return mapping


@register("columns", required=(), priority=0)
def to_messages(row: dict[str, Any], opts: Options) -> list[Message]:
    if not opts.mapping:
        raise DataError("--format columns needs --map user=COLUMN assistant=COLUMN")
    head = system(row, opts.mapping["system"]) if "system" in opts.mapping else []
    return [
        *head,
        {"role": "user", "content": text(row, opts.mapping["user"])},
        {"role": "assistant", "content": text(row, opts.mapping["assistant"])},
    ]
