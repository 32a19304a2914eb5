"""Seconds per step and non-padding tokens/s of ``glmtune train`` with and without the compute savers.

The model is the LLaMA-Factory comparison's tiny ChatGLM3 (4 layers, hidden 256, kv_channels 64, the
real 65,024-id tokenizer; ``_bench_common.build_models``), LoRA r=8 on alpaca-zh rows, fp32. Two runs on
the same data order:

- ``before``: ``chunked_loss=false padding_free=false`` (full logits at every position, padded batches);
- ``after``: the defaults (loss at labelled positions only, one unpadded row per batch).

Usage (venv active, ``GLMTUNE_REFERENCE`` and ``GLMTUNE_SHARED_DATA`` set):
    python benchmarks/train_speed.py [--rows 2000] [--steps 30] [--batch 4] [--cutoff 512] [--work DIR]

Steps after the first ``--warmup`` are timed (the runner in-process, so Python imports are not counted);
the 1-minute load average is sampled throughout, since other jobs on the machine skew the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import LoadSampler, build_models, prepare_data  # noqa: E402

VARIANTS = {"before": {"chunked_loss": "false", "padding_free": "false"}, "after": {}}


def step_timer() -> Any:
    """A callback recording (seconds, non-padding tokens) of every optimizer step of ``timer.trainer``."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[tuple[float, int]] = []
            self.trainer: Any = None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._t, self._tokens = time.perf_counter(), self.trainer.tokens_seen

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.steps.append((time.perf_counter() - self._t, self.trainer.tokens_seen - self._tokens))

    return StepTimer()


def run_variant(name: str, model: Path, data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from glmtune.config import load_config
    from glmtune.train import runner
    from glmtune.train.config import TrainConfig

    overrides = {"model": str(model), "data": str(data), "output_dir": str(out), "method": "lora", "lora.r": 8,
                 "batch_size": args.batch, "cutoff_len": args.cutoff, "max_steps": args.steps, "precision": "fp32",
                 "logging_steps": 1, "save_steps": 100000, "report_to": "[none]", "overwrite_output_dir": "true",
                 **VARIANTS[name]}  # fmt: skip
    cfg = load_config(TrainConfig, None, [f"{k}={v}" for k, v in overrides.items()])
    timer = step_timer()
    base = runner.GlmTrainer

    class Timed(base):  # type: ignore[misc,valid-type]  # hands itself to the timer (its token count)
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            timer.trainer = self

    runner.GlmTrainer = Timed
    try:
        with LoadSampler() as load:
            result = runner.run(cfg, callbacks=[timer])
    finally:
        runner.GlmTrainer = base
    timed = timer.steps[args.warmup:]
    secs = sum(s for s, _ in timed)
    tokens = sum(t for _, t in timed)
    return {"variant": name, "steps": len(timer.steps), "s_per_step": round(secs / len(timed), 3),
            "median_s_per_step": round(statistics.median(s for s, _ in timed), 3),
            "tokens_per_s": round(tokens / secs, 1), "first_loss": first_loss(out),
            "train_loss": round(result.train_loss, 4), "load_avg": load.summary()}  # fmt: skip


def first_loss(out: Path) -> float | None:
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines() if '"loss"' in x]
    return rows[0]["loss"] if rows else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--cutoff", type=int, default=512)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "glmtune-train-speed")
    args = p.parse_args()
    shared = os.environ.get("GLMTUNE_SHARED_DATA")
    if not shared:
        sys.exit("set GLMTUNE_SHARED_DATA (the folder with alpaca_zh_part0.json)")
    args.work.mkdir(parents=True, exist_ok=True)
    model, _ = build_models(args.work)
    train, _, _ = prepare_data(args.work, Path(shared) / "alpaca_zh_part0.json", args.rows, 1)
    for name in args.variants:
        print(json.dumps(run_variant(name, model, train, args.work / f"run-{name}", args)), flush=True)


if __name__ == "__main__":
    main()
