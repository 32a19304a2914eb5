"""The official ChatGLM fine-tuning columns: prompt/response plus an optional history of pairs.

Column names follow the official scripts' ``--prompt-column``, ``--response-column`` and
``--history-column``; without the last, a ``history`` column is used when the row has one.
"""

from __future__ import annotations

from typing import Any

from glmtune.data.formats.base import Message, Options, history, register, text
from glmtune.data.records import RowError


def _required(opts: Options) -> tuple[str, ...]:
    return (opts.prompt_column, opts.response_column)


@register("chatglm", required=_required, optional=("history",), priority=30)
def to_messages(row: dict[str, Any], opts: Options) -> list[Message]:
    prompt, response = text(row, opts.prompt_column), text(row, opts.response_column)
    if opts.history_column is not None and opts.history_column not in row:
        raise RowError(opts.history_column, "missing")
    past = history(row, opts.history_column or "history")
    return [*past, {"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
