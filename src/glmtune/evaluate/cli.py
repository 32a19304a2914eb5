"""``glmtune eval PREDS.jsonl``: BLEU-4 and ROUGE-1/2/L of predictions against references.

PREDS.jsonl holds one JSON object per line with string fields ``prediction`` and ``reference`` (other
keys such as ``id`` or ``messages`` are ignored). Scores follow THUDM's official ChatGLM scripts; see
:mod:`glmtune.evaluate.metrics` for the two variants and why ``ptuning`` is the default.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from glmtune.errors import DataError
from glmtune.utils.io import atomic_open

FIELDS = ("prediction", "reference")
SKIP_HINT = "(--on-error skip skips and counts such rows)"


class _BadRow(Exception):
    """A row that cannot be scored; ``reason`` groups the skip counts, ``detail`` names the field."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(detail or reason)
        self.reason = reason


def _pair(line: str) -> tuple[str, str]:
    try:
        row: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _BadRow("malformed JSON line", f"malformed JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(row, dict):
        raise _BadRow("not a JSON object", f"not a JSON object (got {type(row).__name__})")
    values = []
    for field in FIELDS:
        if field not in row:
            raise _BadRow(f"field {field!r} missing")
        value = row[field]
        if not isinstance(value, str):
            raise _BadRow(
                f"field {field!r} not a string", f"field {field!r}: not a string (got {type(value).__name__})"
            )
        values.append(value)
    return values[0], values[1]


def read_pairs(path: Path, on_error: str = "error") -> tuple[list[tuple[str, str]], Counter[str]]:
    """``(prediction, reference)`` pairs of a JSONL file and, with ``on_error='skip'``, skips by reason."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    pairs: list[tuple[str, str]] = []
    skipped: Counter[str] = Counter()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            pairs.append(_pair(line))
        except _BadRow as exc:
            if on_error != "skip":
                raise DataError(f"{path}:{number}: {exc} {SKIP_HINT}") from None
            skipped[exc.reason] += 1
    return pairs, skipped


def format_report(report: dict[str, Any]) -> str:
    """One aligned ``name  value`` line per entry, metrics with 4 decimals."""
    width = max(len(k) for k in report)
    lines = []
    for key, value in report.items():
        if isinstance(value, float):
            lines.append(f"{key:<{width}}  {value:>9.4f}")
        elif isinstance(value, int):
            lines.append(f"{key:<{width}}  {value:>9d}")
        else:
            lines.append(f"{key:<{width}}  {value!s:>9}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from glmtune.evaluate.metrics import DEFAULT_VARIANT, VARIANTS, aggregate

    p = argparse.ArgumentParser(prog="glmtune eval", description=__doc__.split("\n")[0])
    p.add_argument("preds", metavar="PREDS.jsonl", help="one JSON object per line with prediction, reference")
    p.add_argument("-o", "--output", metavar="REPORT.json", help="also write the report as JSON")
    p.add_argument(
        "--variant",
        choices=list(VARIANTS),
        default=DEFAULT_VARIANT,
        help="ptuning: ChatGLM-6B/2-6B ptuning/main.py, character BLEU (default); "
        "chatglm3: ChatGLM3 finetune_hf.py, word BLEU",
    )
    p.add_argument(
        "--on-error",
        choices=("error", "skip"),
        default="error",
        help="a bad line stops the run (default) or is skipped and counted",
    )
    args = p.parse_args(argv)
    path = Path(args.preds)
    pairs, skipped = read_pairs(path, args.on_error)
    n_skipped = sum(skipped.values())
    if not pairs:
        raise DataError(f"{path}: no rows to score ({n_skipped} skipped)")
    report: dict[str, Any] = aggregate(pairs, args.variant)
    report["skipped"] = n_skipped
    print(f"{path}: {report['rows']} row(s) scored")
    print(format_report(report))
    for reason, count in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  skipped {count} row(s): {reason}")
    if args.output:
        with atomic_open(args.output) as fh:
            json.dump({**report, "skipped_reasons": dict(skipped)}, fh, ensure_ascii=False, indent=2)
            fh.write("\n")
        print(f"wrote {args.output}")
    return 0
