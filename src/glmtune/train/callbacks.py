"""Trainer callbacks: ``train_log.jsonl`` (one JSON line per log step, with tokens/s)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

LOG_NAME = "train_log.jsonl"
_KEYS = {"loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm"}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN; keep it readable
    return value


class JsonlLogCallback(TrainerCallback):
    """Append ``{step, epoch, loss, lr, grad_norm, tokens_per_s}`` (or eval metrics) to train_log.jsonl.

    ``tokens_per_s`` counts non-padding tokens fed to the model (all processes) per wall-clock second
    since the previous log line. Only the main process writes.
    """

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / LOG_NAME
        self.trainer: Any = None  # set by the runner, for the token counter
        self._last_time = time.perf_counter()
        self._last_tokens = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._last_time = time.perf_counter()
        self._last_tokens = self.trainer.tokens_seen if self.trainer is not None else 0

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        row: dict[str, Any] = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        if any(k.startswith("eval_") for k in logs):
            row.update({k: v for k, v in logs.items() if k.startswith("eval_")})
        elif "loss" in logs:
            row.update({out: logs[k] for k, out in _KEYS.items() if k in logs})
            now = time.perf_counter()
            if self.trainer is not None:
                tokens = (self.trainer.tokens_seen - self._last_tokens) * max(1, args.world_size)
                row["tokens_per_s"] = round(tokens / max(now - self._last_time, 1e-9), 1)
                self._last_tokens = self.trainer.tokens_seen
            self._last_time = now
        else:
            row.update({k: v for k, v in logs.items() if k in ("train_loss", "train_runtime")})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
            fh.flush()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a train_log.jsonl; for a resumed run the later line for a step wins."""
    path = Path(path)
    if not path.is_file():
        return []
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if "eval_before_loss" in row:  # the untrained model's eval: the curve's first eval point
                row["eval_loss"] = row.pop("eval_before_loss")
            kind = "eval" if "eval_loss" in row else "train" if "loss" in row else "summary"
            rows[(row["step"], kind)] = row
    return [rows[k] for k in sorted(rows)]
