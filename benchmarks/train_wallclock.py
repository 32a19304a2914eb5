"""Wall time, training tokens/s and peak memory of one `glmtune train` run (default: the quickstart).

Usage (from the repo root, venv active):
    python benchmarks/train_wallclock.py                       # examples/quickstart.yaml, cold cache
    python benchmarks/train_wallclock.py CONFIG.yaml key=value ...

The built-in tiny base is rebuilt from scratch (a fresh GLMTUNE_CACHE) so the time includes training
its tokenizer. Prints one Markdown table row for BENCHMARKS.md. Nothing here is asserted in tests.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path


def main() -> None:
    args = sys.argv[1:] or ["examples/quickstart.yaml"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        env = dict(os.environ, GLMTUNE_CACHE=str(Path(tmp) / "cache"))
        cmd = [sys.executable, "-m", "glmtune", "train", *args, f"output_dir={out}"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(proc.stderr[-2000:])
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        lines = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    tps = [x["tokens_per_s"] for x in lines if "tokens_per_s" in x][1:]  # skip the warm-up step
    steps = max(x["step"] for x in lines)
    evals = [x for x in lines if "eval_loss" in x or "eval_before_loss" in x]
    before = next((x["eval_before_loss"] for x in evals if "eval_before_loss" in x), float("nan"))
    after = next((x["eval_loss"] for x in reversed(evals) if "eval_loss" in x), float("nan"))
    print(f"| {date.today()} | {platform.machine()}, {os.cpu_count()} cores, torch threads default "
          f"| `glmtune train {' '.join(args)}` | {steps} steps | wall {wall:.1f} s "
          f"| median {statistics.median(tps):.0f} train tokens/s | peak RSS {rss_mb:.0f} MB "
          f"| eval loss {before:.3f} -> {after:.3f} |")


if __name__ == "__main__":
    main()
