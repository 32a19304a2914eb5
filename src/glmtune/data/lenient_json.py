"""Turn near-JSON (trailing commas, ``//`` and ``/* */`` comments) into JSON, saying what was fixed.

Published instruction sets are often hand-edited; ``--lenient`` accepts them but every fix is
reported with its line, so nothing changes silently. Removed characters become spaces (newlines are
kept), so line and column numbers of any remaining error still point into the original file.
"""

from __future__ import annotations

import re

# Strings are matched first so that commas and slashes inside them are left alone.
_TOKEN = re.compile(
    r"""
      (?P<string>"(?:[^"\\\n]|\\.)*")
    | (?P<line_comment>//[^\n]*)
    | (?P<block_comment>/\*.*?\*/)
    | (?P<comma>,(?=(?:\s|//[^\n]*|/\*.*?\*/)*[\]}]))
    """,
    re.VERBOSE | re.DOTALL,
)


def _blank(text: str) -> str:
    return "".join("\n" if ch == "\n" else " " for ch in text)


def relax(text: str) -> tuple[str, list[tuple[int, str]]]:
    """Return ``(json_text, fixes)`` where each fix is ``(line, description)``."""
    fixes: list[tuple[int, str]] = []
    line, pos = 1, 0

    def repl(m: re.Match[str]) -> str:
        nonlocal line, pos
        kind = m.lastgroup
        if kind == "string":
            return m.group()
        line += text.count("\n", pos, m.start())
        pos = m.start()
        if kind == "comma":
            fixes.append((line, "removed trailing comma"))
            return " "
        fixes.append((line, "removed comment"))
        return _blank(m.group())

    return _TOKEN.sub(repl, text), fixes
