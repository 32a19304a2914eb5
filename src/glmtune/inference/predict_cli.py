"""``glmtune predict --model M [--adapter A] --data D.jsonl -o preds.jsonl``: answers for a dev set.

Each input conversation (converted records JSONL) is answered from the messages before its last
assistant message; that message is the reference. Output rows: ``id``, ``messages`` (the prompt),
``reference``, ``prediction`` (+ ``tool_calls``, ``finish_reason``, token counts). Rows are appended
a batch at a time, so a killed run loses at most the batch in flight, and running the same command
again skips the ids already written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from glmtune.errors import DataError
from glmtune.inference.settings import add_generation_args, add_model_args, settings_from_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glmtune predict", description=__doc__.split("\n")[0])
    add_model_args(p)
    p.add_argument("--data", required=True, help="converted records JSONL (glmtune convert's output)")
    p.add_argument("-o", "--output", required=True, metavar="PREDS.jsonl")
    p.add_argument("--max-samples", type=int, default=None, help="answer only the first N rows")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--on-error", choices=("error", "skip"), default="error", help="a bad row stops or is skipped")
    p.add_argument("--overwrite", action="store_true", help="start over / replace a file glmtune did not write")
    p.add_argument("--no-progress", action="store_true")
    add_generation_args(p)
    return p


def read_rows(path: Path, on_error: str, skipped: Counter[str]) -> list[dict[str, Any]]:
    """(id, prompt messages, reference) rows; bad rows stop (FILE:LINE) or are counted by reason."""
    from glmtune.data.records import RowError, _raw_data_hint, iter_jsonl, validate_record

    rows = []
    for line, record in iter_jsonl(path):
        try:
            validate_record(record)
        except RowError as exc:
            hint = _raw_data_hint(path, record) if not rows and not skipped else ""
            if hint:
                raise DataError(hint) from None
            if on_error == "error":
                raise DataError(f"{path}:{line}: {exc} (--on-error skip skips and counts such rows)") from None
            skipped[exc.reason] += 1
            continue
        messages = record["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        rows.append({"id": record.get("id", f"{path.name}:{line}"), "messages": messages[:last],
                     "reference": messages[last]["content"]})  # fmt: skip
    return rows


def done_ids(path: Path, overwrite: bool, made_by: dict[str, Any] | None = None) -> set[Any]:
    """Ids already in an earlier run's output (a torn last line is dropped); refuses foreign files and
    rows another model, adapter or generation setting made (their answers would be mixed with these)."""
    if not path.exists() or overwrite:
        return set()
    ids, good = set(), 0
    with path.open("rb") as fh:
        for raw in fh:
            try:
                row = json.loads(raw)
            except ValueError:
                break  # a line cut by a kill: everything after it is rewritten
            if not isinstance(row, dict) or not {"id", "prediction"} <= set(row):
                raise DataError(f"{path} exists and is not a glmtune predict output; choose another -o, or pass "
                                "--overwrite to replace it")  # fmt: skip
            if made_by is not None and row.get("generated_by") != made_by:
                raise DataError(f"{path} holds predictions made by {row.get('generated_by')}, not by this command's "
                                f"{made_by}; choose another -o, or pass --overwrite to start over")  # fmt: skip
            ids.add(json.dumps(row["id"]))
            good += len(raw)
    if good != path.stat().st_size:
        with path.open("r+b") as fh:
            fh.truncate(good)
    return ids


def append_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    """One write + fsync per batch: the file only ever grows by whole batches."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    out, data = Path(args.output), Path(args.data)
    if out.resolve() == data.resolve():
        raise DataError("-o must differ from --data")
    skipped: Counter[str] = Counter()
    rows = read_rows(data, args.on_error, skipped)
    if args.max_samples is not None:
        rows = rows[: args.max_samples]
    from dataclasses import asdict

    made_by = {"model": args.model, "adapter": args.adapter, "template": args.template, "settings": asdict(settings)}
    seen = done_ids(out, args.overwrite, made_by)
    if args.overwrite and out.exists():
        out.unlink()
    todo = [r for r in rows if json.dumps(r["id"]) not in seen]
    print(f"{len(rows)} rows, {len(rows) - len(todo)} already in {out}, {len(todo)} to answer"
          + "".join(f"; skipped {n} row(s): {why}" for why, n in skipped.items()), file=sys.stderr)
    if not todo:
        return 0
    from tqdm import tqdm

    from glmtune.inference.engine import Engine

    engine = Engine.load(args.model, adapter=args.adapter, template=args.template, family=args.family,
                         dtype=args.dtype, device=args.device, quantization=args.quantization)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    start, tokens = time.perf_counter(), 0
    bar = tqdm(total=len(todo), unit="row", disable=args.no_progress, file=sys.stderr)
    for i in range(0, len(todo), args.batch_size):
        batch = todo[i:i + args.batch_size]
        completions = engine.generate([r["messages"] for r in batch], settings, batch_size=args.batch_size)
        lines = []
        for row, c in zip(batch, completions):
            tokens += c.completion_tokens
            lines.append({**row, "prediction": c.text, "tool_calls": c.tool_calls, "finish_reason": c.finish_reason,
                          "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                          "generated_by": made_by})  # fmt: skip
        append_lines(out, lines)
        bar.update(len(batch))
        bar.set_postfix(tokens_per_s=f"{tokens / max(time.perf_counter() - start, 1e-9):.1f}")
    bar.close()
    elapsed = time.perf_counter() - start
    print(f"wrote {len(todo)} predictions to {out} ({len(todo) / elapsed:.2f} rows/s, "
          f"{tokens / elapsed:.1f} tokens/s)")  # fmt: skip
    return 0
