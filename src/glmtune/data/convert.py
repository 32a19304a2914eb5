"""``glmtune convert``: any supported dataset -> glmtune's JSONL messages records.

Usage: ``glmtune convert INPUT... -o OUT.jsonl [--format F] [--map T=COL ...] [--val-size N|RATIO]``.
The CLI is a thin wrapper around :func:`convert_files`, which tests and scripts call directly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from glmtune.data.formats import FORMATS, Format, Options, detect
from glmtune.data.formats.columns import parse_mapping
from glmtune.data.records import RowError, make_record
from glmtune.data.report import ConvertReport, FileReport
from glmtune.data.sources import Row, read_rows
from glmtune.errors import DataError
from glmtune.utils.io import atomic_open

DETECT_ROWS = 100  # auto-detection: a vote of this many leading rows


def dev_path(output: Path) -> Path:
    """``OUT.jsonl`` -> ``OUT.dev.jsonl``."""
    return output.with_name(f"{output.stem}.dev{output.suffix}")


def _choose_format(
    path: Path, rows: list[Row], fmt: str, opts: Options, log: Callable[[str], None]
) -> Format:
    if fmt != "auto":
        return FORMATS.get(fmt)
    if opts.mapping:
        log(f"{path}: format: columns (from --map)")
        return FORMATS.get("columns")
    # Each leading row votes, so one broken row cannot change or block the choice.
    votes: Counter[str] = Counter()
    first_keys: dict[str, list[str]] = {}
    errors: list[DataError] = []
    for row in rows[:DETECT_ROWS]:
        if not isinstance(row.value, dict):
            continue
        try:
            fmt_row, used = detect(list(row.value), opts)
        except DataError as exc:
            errors.append(exc)
            continue
        votes[fmt_row.name] += 1
        first_keys.setdefault(fmt_row.name, used)
    if not votes:
        raise DataError(f"{path}: {errors[0] if errors else 'no JSON object rows to detect the format from'}")
    (name, n), *rest = votes.most_common()
    if rest and rest[0][1] == n:
        raise DataError(
            f"{path}: ambiguous format: rows fit {name} and {rest[0][0]} equally; choose one with --format"
        )
    sampled = sum(votes.values()) + len(errors)
    agree = "" if n == sampled else f", in {n} of {sampled} leading rows"
    log(f"{path}: format: {name} (auto-detected from keys {', '.join(first_keys[name])}{agree})")
    return FORMATS.get(name)


def _to_record(row: Row, path: Path, fmt: Format, opts: Options) -> dict[str, Any]:
    value = row.value
    if not isinstance(value, dict):
        raise RowError("row", "not an object", f" (got {type(value).__name__})")
    messages = fmt.to_messages(value, opts)
    rid = value.get("id")
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        rid = row.key if row.key is not None else f"{path.stem}-{row.number}"
    meta = value.get("meta") if isinstance(value.get("meta"), dict) else {}
    return make_record(messages, rid, {**meta, "source": path.name, "row": row.number, "format": fmt.name})


def _dev_count(val_size: int | float, total: int) -> int:
    if isinstance(val_size, float):
        if not 0 < val_size < 1:
            raise DataError(f"--val-size {val_size}: a ratio must be above 0 and below 1 (it is the share of "
                            "rows for the dev split; for a number of rows give an integer, e.g. 200)")
        n_dev = max(1, round(total * val_size))
    else:
        n_dev = val_size
    if not 0 < n_dev < total:
        raise DataError(f"--val-size {val_size}: cannot put {n_dev} of {total} rows in the dev split")
    return n_dev


def split(records: list[Any], val_size: int | float | None, seed: int) -> tuple[list[Any], list[Any]]:
    """Seeded train/dev split (no split for 0 or None); both parts keep the input order, so reruns match."""
    if not val_size:
        return records, []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    dev = set(order[: _dev_count(val_size, len(records))])
    return [r for i, r in enumerate(records) if i not in dev], [r for i, r in enumerate(records) if i in dev]


def _replaceable(path: Path) -> bool:
    """Missing, empty, or records JSONL as convert writes them (its first line is a messages record)."""
    if not path.exists():
        return True
    if not path.is_file():
        return False
    with path.open("rb") as fh:
        first = fh.readline(1 << 20)
    if not first.strip():
        return path.stat().st_size == len(first)
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and isinstance(record.get("messages"), list)


def convert_files(
    inputs: Sequence[str | Path],
    output: str | Path,
    fmt: str = "auto",
    *,
    options: Options | None = None,
    val_size: int | float | None = None,
    seed: int = 42,
    on_error: str = "error",
    lenient: bool = False,
    log: Callable[[str], None] = print,
    overwrite: bool = False,
) -> ConvertReport:
    """Convert ``inputs`` into ``output`` (and ``OUT.dev.jsonl`` with ``val_size``), written atomically."""
    opts = options or Options()
    if on_error not in ("error", "skip"):
        raise DataError(f"--on-error {on_error!r}: use 'error' or 'skip'")
    if fmt != "auto":
        FORMATS.get(fmt)  # unknown names fail before any file is read
    output = Path(output)
    outputs = [output, dev_path(output)] if val_size else [output]
    paths = [Path(p) for p in inputs]
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        if any(path.resolve() == out.resolve() for out in outputs):
            raise DataError(f"{path}: input and output are the same file")
    for out in outputs:
        if not overwrite and not _replaceable(out):
            raise DataError(f"{out} exists and is not a file glmtune convert wrote; choose another output, "
                            "or pass --overwrite to replace it")

    report = ConvertReport()

    def warn(msg: str) -> None:
        report.warnings.append(msg)
        print(f"warning: {msg}", file=sys.stderr)

    records: list[dict[str, Any]] = []
    for path in paths:
        malformed: list[str] = []

        def bad_line(message: str, malformed: list[str] = malformed) -> None:
            malformed.append(message)
            warn(f"{message} (skipped)")

        rows = read_rows(path, lenient=lenient, warn=warn, bad_line=bad_line if on_error == "skip" else None)
        file_report = FileReport(path, read=len(rows) + len(malformed))
        if malformed:
            file_report.skipped["malformed JSON line"] += len(malformed)
        report.inputs.append(file_report)
        if not rows:
            warn(f"{path}: no rows")
            continue
        chosen = _choose_format(path, rows, fmt, opts, log)
        file_report.format = chosen.name
        for row in rows:
            try:
                records.append(_to_record(row, path, chosen, opts))
            except RowError as exc:
                if on_error == "error":
                    where = f"{path}:{row.line}" if row.line else str(path)
                    raise DataError(
                        f"{where}: row {row.number}: {exc} (--on-error skip skips and counts such rows)"
                    ) from None
                file_report.skipped[exc.reason] += 1
            else:
                file_report.written += 1
    if not records:
        log(report.summary())
        raise DataError(f"no rows to write: {report.read} read, all skipped or empty")
    parts = split(records, val_size, seed)
    with contextlib.ExitStack() as stack:
        for out, part in zip(outputs, parts):
            fh = stack.enter_context(atomic_open(out))
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
            report.outputs[out] = len(part)
    return report


def parse_val_size(value: str) -> int | float:
    """``"200"`` -> 200 rows, ``"0.05"`` -> 5 percent."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a row count or a ratio, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glmtune convert", description=__doc__.split("\n")[0])
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help=".json, .jsonl, .csv or .parquet files, concatenated"
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.jsonl")
    p.add_argument("--format", default="auto", help=f"auto (default) or one of: {', '.join(FORMATS.names())}")
    p.add_argument(
        "--map",
        nargs="+",
        default=[],
        metavar="TARGET=COLUMN",
        help="columns format: e.g. --map user=content assistant=summary [system=COL]",
    )
    p.add_argument("--prompt-column", default="prompt", help="chatglm format (default: prompt)")
    p.add_argument("--response-column", default="response", help="chatglm format (default: response)")
    p.add_argument("--history-column", default=None, help="chatglm format (default: history, when present)")
    p.add_argument(
        "--val-size",
        type=parse_val_size,
        default=None,
        metavar="N|RATIO",
        help="write N rows (or this ratio) to OUT.dev.jsonl",
    )
    p.add_argument("--seed", type=int, default=42, help="seed of the train/dev split (default: 42)")
    p.add_argument(
        "--on-error",
        choices=("error", "skip"),
        default="error",
        help="a bad row stops the run (default) or is skipped and counted",
    )
    p.add_argument(
        "--lenient", action="store_true", help="accept trailing commas and comments in JSON, with a warning"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an output file glmtune did not write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mapping = parse_mapping(args.map) if args.map else {}
    if mapping and args.format not in ("auto", "columns"):
        raise DataError(f"--map is for --format columns, not {args.format}")
    opts = Options(args.prompt_column, args.response_column, args.history_column, mapping)
    report = convert_files(
        args.inputs,
        args.output,
        args.format,
        options=opts,
        val_size=args.val_size,
        seed=args.seed,
        on_error=args.on_error,
        lenient=args.lenient,
        overwrite=args.overwrite,
    )
    print(report.summary())
    return 0
