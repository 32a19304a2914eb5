"""What every format shares: the registry, options, auto-detection and typed field access."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from glmtune.data.records import RowError
from glmtune.errors import DataError
from glmtune.registry import Registry

Message = dict[str, Any]


@dataclass
class Options:
    """Format options from the command line (chatglm column names, the ``columns`` mapping)."""

    prompt_column: str = "prompt"
    response_column: str = "response"
    history_column: str | None = None  # None: use "history" when the rows have it
    mapping: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Format:
    """A registered input format.

    ``required(opts)`` lists the keys a row must have for auto-detection (empty: never auto-detected);
    among matching formats the highest ``priority`` wins, so the more specific shape is chosen.
    """

    name: str
    to_messages: Callable[[dict[str, Any], Options], list[Message]]
    required: Callable[[Options], tuple[str, ...]]
    optional: tuple[str, ...] = ()
    priority: int = 0


FORMATS: Registry[Format] = Registry("data format")


def register(
    name: str,
    required: tuple[str, ...] | Callable[[Options], tuple[str, ...]],
    optional: tuple[str, ...] = (),
    priority: int = 0,
) -> Callable[[Callable[[dict[str, Any], Options], list[Message]]], Callable[..., list[Message]]]:
    """Decorator registering a ``row, opts -> messages`` function as a format."""
    req = required if callable(required) else (lambda _opts, keys=tuple(required): keys)

    def deco(func: Callable[[dict[str, Any], Options], list[Message]]) -> Callable[..., list[Message]]:
        FORMATS.register(name)(Format(name, func, req, optional, priority))
        return func

    return deco


def detect(keys: list[str], opts: Options) -> tuple[Format, list[str]]:
    """Choose the format for rows sharing ``keys``; return it with the keys that decided it, in row order."""
    matches = [f for _, f in FORMATS.items() if f.required(opts) and set(f.required(opts)) <= set(keys)]
    top = max((f.priority for f in matches), default=None)
    best = [f for f in matches if f.priority == top]
    seen = ", ".join(keys) or "(none)"
    if len(best) == 1:
        fmt = best[0]
        used = [k for k in keys if k in (*fmt.required(opts), *fmt.optional)]
        return fmt, used
    if best:
        names = ", ".join(f.name for f in best)
        raise DataError(f"ambiguous format: rows with keys {seen} fit {names}; choose one with --format")
    raise DataError(
        f"cannot detect the format from keys {seen}; choose --format from {', '.join(FORMATS.names())} "
        "(e.g. --format columns --map user=COLUMN assistant=COLUMN)"
    )


def text(row: dict[str, Any], name: str, required: bool = True) -> str:
    """The string in ``row[name]``; a required one must be present and non-blank, an optional one may be null."""
    if name not in row or row[name] is None:
        if required:
            raise RowError(name, "missing")
        return ""
    value = row[name]
    if not isinstance(value, str):
        raise RowError(name, "wrong type", f" (expected a string, got {type(value).__name__})")
    if required and not value.strip():
        raise RowError(name, "empty")
    return value


def join_input(instruction: str, input_: str) -> str:
    """Alpaca convention: the input, when given, follows the instruction on a new line."""
    return f"{instruction}\n{input_}" if input_.strip() else instruction


def system(row: dict[str, Any], name: str = "system") -> list[Message]:
    """An optional system column as a leading system message (nothing when absent or blank)."""
    value = text(row, name, required=False)
    return [{"role": "system", "content": value}] if value.strip() else []


def history(row: dict[str, Any], name: str) -> list[Message]:
    """ChatGLM/alpaca history: a list of ``[query, answer]`` pairs -> alternating user/assistant."""
    pairs = row.get(name)
    if pairs is None:
        return []
    if not isinstance(pairs, list):
        raise RowError(
            name, "wrong type", f" (expected a list of [query, answer] pairs, got {type(pairs).__name__})"
        )
    out: list[Message] = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise RowError(f"{name}[{i}]", "wrong type", " (expected a [query, answer] pair of strings)")
        for role, part, content in (("user", 0, pair[0]), ("assistant", 1, pair[1])):
            if not content.strip():
                raise RowError(f"{name}[{i}][{part}]", "empty", f" {role} text")
            out.append({"role": role, "content": content})
    return out
