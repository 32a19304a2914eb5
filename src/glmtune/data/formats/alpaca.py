"""Alpaca rows (instruction/input/output), also used by Guanaco, alpaca-zh and BELLE.

An optional ``system`` column becomes a system message and an optional ``history`` column
(``[query, answer]`` pairs, as in LLaMA-Factory's alpaca files) becomes earlier turns.
"""

from __future__ import annotations

from typing import Any

from glmtune.data.formats.base import Message, Options, history, join_input, register, system, text


def alpaca_turn(row: dict[str, Any]) -> tuple[str, str]:
    """The user text (instruction, then input on a new line) and the output; shared with ``belle``."""
    user = join_input(text(row, "instruction"), text(row, "input", required=False))
    return user, text(row, "output")


@register("alpaca", required=("instruction", "output"), optional=("input", "system", "history"), priority=20)
def to_messages(row: dict[str, Any], opts: Options) -> list[Message]:
    user, answer = alpaca_turn(row)
    return [
        *system(row),
        *history(row, "history"),
        {"role": "user", "content": user},
        {"role": "assistant", "content": answer},
    ]
