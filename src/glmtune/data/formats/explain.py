"""Explanation-based learning rows (instruction/input/explain/output), as in BaiYang-chatGLM2-6B.

The assistant text is exactly ``" EXPLAIN: " + explain + " CONCLUSION: " + output`` so evaluation
can split the conclusion off with :func:`split_conclusion`.
"""

from __future__ import annotations

from typing import Any

from glmtune.data.formats.base import Message, Options, join_input, register, system, text

EXPLAIN, CONCLUSION = " EXPLAIN: ", " CONCLUSION: "


def split_conclusion(answer: str) -> tuple[str, str]:
    """``(explanation, conclusion)`` of a generated answer; the whole text is the conclusion if unmarked."""
    head, sep, conclusion = answer.rpartition(CONCLUSION.strip())
    if not sep:
        return "", answer.strip()
    return head.replace(EXPLAIN.strip(), "", 1).strip(), conclusion.strip()


@register("explain", required=("instruction", "explain", "output"), optional=("input",), priority=50)
def to_messages(row: dict[str, Any], opts: Options) -> list[Message]:
    user = join_input(text(row, "instruction"), text(row, "input", required=False))
    answer = EXPLAIN + text(row, "explain") + CONCLUSION + text(row, "output")
    return [*system(row), {"role": "user", "content": user}, {"role": "assistant", "content": answer}]
