"""Tokenization throughput: convert + `glmtune tokenize` on an alpaca-style file, timed.

Usage (from the repo root, venv active):
    python benchmarks/tokenize_throughput.py --data ../shared/data/alpaca_zh_part0.json \
        --model ../shared/reference/checkpoints/chatglm2-mini --num-proc 2

The model folder only has to hold the real tokenizer files (the weights are never loaded).
Prints one Markdown table row for BENCHMARKS.md. No timing is asserted anywhere in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--num-proc", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from glmtune.data.convert import convert_files
    from glmtune.data.templates import EncodeOptions
    from glmtune.data.tokenized import build_tokenized_dataset
    from glmtune.models.loading import load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "data.jsonl"
        t0 = time.perf_counter()
        convert_files([args.data], jsonl, on_error="skip")
        t_convert = time.perf_counter() - t0
        rows = sum(1 for _ in jsonl.open(encoding="utf-8"))
        tokenizer = load_tokenizer(args.model)
        times = []
        for i in range(args.repeat):
            out = Path(tmp) / f"tok{i}"
            t0 = time.perf_counter()
            _, report = build_tokenized_dataset(
                tokenizer, [str(jsonl)], None, EncodeOptions(cutoff_len=1024), num_proc=args.num_proc,
                output_dir=str(out), progress=False,
            )
            times.append(time.perf_counter() - t0)
        meta = json.loads((Path(tmp) / "tok0" / "glmtune_tokenized.json").read_text())
    best = min(times)
    lengths = meta["report"]["lengths"]
    tokens = f"mean {lengths['mean']}, p50 {lengths['p50']}, p99 {lengths['p99']} tokens/example"
    print(f"| {date.today()} | {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
          f"| {Path(args.data).name} | {rows} rows | convert {t_convert:.2f} s "
          f"| tokenize best of {args.repeat}: {best:.2f} s ({rows / best:.0f} rows/s, num_proc={args.num_proc}) "
          f"| {tokens} |")


if __name__ == "__main__":
    main()
