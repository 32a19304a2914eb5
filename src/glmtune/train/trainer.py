"""``GlmTrainer``: transformers' Trainer plus atomic checkpoints, a NaN guard, chunked loss and token counting."""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from glmtune.errors import GlmtuneError
from glmtune.train.loss import DEFAULT_CHUNK, chunked_causal_lm_loss

STAGING_PREFIX = ".tmp-"  # checkpoints are written to .tmp-checkpoint-N/checkpoint-N, then renamed


class NonFiniteLossError(GlmtuneError):
    """The training loss became NaN or infinite; nothing was saved from the broken step."""


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """Newest complete ``checkpoint-N`` folder in ``output_dir`` (staging folders never count)."""
    best: tuple[int, Path] | None = None
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    for child in folder.iterdir():
        m = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", child.name)
        if m and child.is_dir() and (child / "trainer_state.json").is_file():
            if best is None or int(m.group(1)) > best[0]:
                best = (int(m.group(1)), child)
    return best[1] if best else None


def clean_staging(output_dir: str | Path) -> None:
    """Remove half-written checkpoint folders a crash mid-save left behind."""
    folder = Path(output_dir)
    if folder.is_dir():
        for child in folder.glob(f"{STAGING_PREFIX}{PREFIX_CHECKPOINT_DIR}-*"):
            shutil.rmtree(child, ignore_errors=True)


class GlmTrainer(Trainer):
    """Trainer with the behaviour glmtune promises on top of transformers'.

    - checkpoints appear atomically: every rank writes into a staging folder which the main process
      renames into place once complete, so a crash mid-save leaves the previous checkpoint intact;
    - a NaN/inf loss stops the run with :class:`NonFiniteLossError` before the optimizer step;
    - ``chunked_loss`` computes the loss without all float32 logits at once (see ``train.loss``);
    - counts non-padding tokens for the tokens/s in ``train_log.jsonl``.
    """

    def __init__(self, *args: Any, chunked_loss: bool | int = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunk_size = 0 if chunked_loss is False else DEFAULT_CHUNK if chunked_loss is True else int(chunked_loss)
        self.tokens_seen = 0

    # --- loss ---
    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        if not self.chunk_size or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        use_items = self.model_accepts_loss_kwargs and num_items_in_batch is not None
        loss, outputs = chunked_causal_lm_loss(
            model, inputs, self.chunk_size, num_items_in_batch if use_items else None
        )
        if self.args.average_tokens_across_devices and use_items:
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def training_step(
        self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        mask = inputs.get("attention_mask")
        if mask is not None:
            self.tokens_seen += int(mask.sum())
        elif "input_ids" in inputs:
            self.tokens_seen += int(inputs["input_ids"].numel())
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not math.isfinite(float(loss)):
            step = self.state.global_step + 1
            good = self.last_good_checkpoint()
            raise NonFiniteLossError(
                f"loss became {float(loss)} at step {step}; stopped without saving this step. "
                f"Last good checkpoint: {good or 'none'}. Try a lower learning_rate, precision=bf16 or "
                f"fp32 instead of fp16, or a smaller max_grad_norm; resume with resume=auto."
            )
        return loss

    def last_good_checkpoint(self) -> Path | None:
        return last_checkpoint(self.args.output_dir)

    # --- atomic checkpoints ---
    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        run_dir = self._get_output_dir(trial=trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = os.path.join(run_dir, STAGING_PREFIX + name)
        original = self.args.output_dir
        self.args.output_dir = staging  # super() writes staging/checkpoint-N (every rank, its own files)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.output_dir = original
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            final = os.path.join(run_dir, name)
            if os.path.exists(final):  # re-saving the same step (e.g. after a resume)
                shutil.rmtree(final)
            os.replace(os.path.join(staging, name), final)
            shutil.rmtree(staging, ignore_errors=True)
            self._rotate(run_dir)
        self.accelerator.wait_for_everyone()

    def _rotate(self, run_dir: str) -> None:
        limit = self.args.save_total_limit
        if not limit:
            return
        found = []
        for child in Path(run_dir).iterdir():
            m = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", child.name)
            if m and child.is_dir():
                found.append((int(m.group(1)), child))
        for _, old in sorted(found)[:-limit]:
            shutil.rmtree(old, ignore_errors=True)
