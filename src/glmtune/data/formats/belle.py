"""BELLE rows: ``input``/``target`` pairs (its older releases); alpaca-shaped BELLE rows also work here."""

from __future__ import annotations

from typing import Any

from glmtune.data.formats.alpaca import alpaca_turn
from glmtune.data.formats.base import Message, Options, register, system, text


@register("belle", required=("input", "target"), priority=30)
def to_messages(row: dict[str, Any], opts: Options) -> list[Message]:
    if "target" not in row and "output" in row:
        user, answer = alpaca_turn(row)
    else:
        user, answer = text(row, "input"), text(row, "target")
    return [*system(row), {"role": "user", "content": user}, {"role": "assistant", "content": answer}]
