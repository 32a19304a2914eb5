"""``GlmTrainer``: transformers' Trainer plus atomic checkpoints, a NaN guard, chunked loss and token counting."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from glmtune.errors import GlmtuneError
from glmtune.train.loss import DEFAULT_CHUNK, chunked_causal_lm_loss

NO_GATHER = ("deepspeed: ZeRO-3 weights cannot be gathered for the final save; set "
             '"stage3_gather_16bit_weights_on_model_save": true in its zero_optimization')
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


def weights_finite(folder: Path) -> bool:
    """Every floating tensor in the folder's weight files is finite."""
    from safetensors import safe_open

    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open is not a dict
                tensor = fh.get_tensor(key)
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    return False
    for path in folder.glob("*.bin"):
        if path.name.startswith(("optimizer", "scheduler", "rng_state", "training_args")):
            continue
        state = torch.load(path, map_location="cpu", weights_only=True)
        if any(t.is_floating_point() and not torch.isfinite(t).all() for t in state.values() if torch.is_tensor(t)):
            return False
    return True


def _test_nan_hook(loss: torch.Tensor, step: int, rank: int) -> torch.Tensor:
    """Test-only: ``GLMTUNE_TEST_NAN_STEP=N`` (+ ``GLMTUNE_TEST_NAN_RANK=R``, default 0) makes rank R's loss
    NaN at step N, so the multi-process test can show one rank's NaN stops every rank."""
    if os.environ.get("GLMTUNE_TEST_NAN_STEP") == str(step) and os.environ.get("GLMTUNE_TEST_NAN_RANK", "0") == str(rank):
        return loss * float("nan")
    return loss


class _FiniteGradients(TrainerCallback):
    """Stops before the optimizer step when a gradient is NaN/inf although the loss was finite: that
    step would make every weight NaN and the next checkpoint useless. (fp16 runs skip this: there the
    loss scaler skips such steps itself; DeepSpeed keeps gradients in its own buffers.)"""

    def __init__(self, trainer: GlmTrainer) -> None:
        self.trainer = trainer

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if args.fp16 or self.trainer.is_deepspeed_enabled or model is None:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        finite = torch.stack([torch.isfinite(g).all() for g in grads]).all() if grads else torch.tensor(True)
        if not self.trainer._all_ranks_finite(finite):
            self.trainer.stop_non_finite("the gradient became NaN/inf (the loss was still finite)")


class GlmTrainer(Trainer):
    """Trainer with the behaviour glmtune promises on top of transformers'.

    - checkpoints appear atomically: every rank writes into a staging folder which the main process
      renames into place once complete, so a crash mid-save leaves the previous checkpoint intact;
    - a NaN/inf loss or gradient (on any rank) stops every rank with :class:`NonFiniteLossError` before
      the optimizer step, naming the newest checkpoint whose weights are all finite;
    - ``chunked_loss`` computes the loss without all float32 logits at once (see ``train.loss``);
    - counts non-padding tokens for the tokens/s in ``train_log.jsonl``.
    """

    def __init__(self, *args: Any, chunked_loss: bool | int = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunk_size = 0 if chunked_loss is False else DEFAULT_CHUNK if chunked_loss is True else int(chunked_loss)
        self.tokens_seen = 0
        self.add_callback(_FiniteGradients(self))

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
        self.tokens_seen += self._real_tokens(inputs)
        loss = super().training_step(model, inputs, num_items_in_batch)
        loss = _test_nan_hook(loss, self.state.global_step + 1, self.accelerator.process_index)
        finite = torch.isfinite(loss.detach()).all()
        if not self._all_ranks_finite(finite):
            self.stop_non_finite(f"loss became {float(loss)}" if not finite else "loss became NaN/inf on another rank")
        return loss

    def _real_tokens(self, inputs: dict[str, Any]) -> int:
        """Non-padding tokens of a batch (for tokens/s). A packed batch's 4-D block mask is no count of
        tokens (its float form holds -inf), so those count the ids that are not the collator's padding."""
        mask, ids = inputs.get("attention_mask"), inputs.get("input_ids")
        if mask is not None and mask.dim() == 2:
            return int(mask.sum())
        if ids is None:
            return 0
        pad = getattr(self.data_collator, "pad_id", None)
        return int((ids != pad).sum()) if pad is not None else int(ids.numel())

    def _all_ranks_finite(self, flag: torch.Tensor) -> bool:
        """One verdict for every rank (a rank that raised alone would leave the others in a collective)."""
        if self.accelerator.num_processes > 1:
            flag = self.accelerator.reduce(flag.to(self.accelerator.device, torch.float32), reduction="sum")
            return bool(flag.item() == self.accelerator.num_processes)
        return bool(flag)

    def stop_non_finite(self, what: str) -> None:
        step = self.state.global_step + 1
        good = self.last_good_checkpoint()
        raise NonFiniteLossError(
            f"{what} at step {step}; stopped before the optimizer step, nothing of it saved. "
            f"Last good checkpoint: {good or 'none'}. Try a lower learning_rate, precision=bf16 or "
            f"fp32 instead of fp16, or a smaller max_grad_norm; resume with resume=auto."
        )

    def last_good_checkpoint(self) -> Path | None:
        """The newest checkpoint whose weights are all finite (an older guard could let one slip)."""
        found = sorted(Path(self.args.output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"),
                       key=lambda p: int(p.name.rsplit("-", 1)[-1]) if p.name.rsplit("-", 1)[-1].isdigit() else -1)
        for folder in reversed(found):
            if (folder / "trainer_state.json").is_file() and weights_finite(folder):
                return folder
        return None

    # --- final save ---
    def save_final(self, output_dir: str, writer: Callable[[str, dict[str, Any] | None], None]) -> bool:
        """``save_model`` on every rank, so ZeRO-3 / FSDP shards are gathered by the Trainer, with ``writer(dir,
        state_dict)`` (the method's own format) in place of ``save_pretrained``; True where it wrote."""
        zero = self.accelerator.deepspeed_config.get("zero_optimization", {}) if self.is_deepspeed_enabled else {}
        if zero.get("stage") == 3 and not zero.get("stage3_gather_16bit_weights_on_model_save", False):
            raise GlmtuneError(NO_GATHER)  # every rank, before any collective: none is left waiting
        self._final_writer, self._final_written = writer, False
        try:
            self.save_model(output_dir)
        finally:
            self._final_writer = None
        return self._final_written

    def _save(self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None) -> None:
        writer = getattr(self, "_final_writer", None)
        if writer is None:  # checkpoints keep the Trainer's own format
            return super()._save(output_dir, state_dict)
        if not self.args.should_save:
            return
        if state_dict is not None and not state_dict:  # DeepSpeed's "could not gather" dummy: never write it
            raise GlmtuneError(NO_GATHER)
        writer(output_dir or self.args.output_dir, state_dict)
        self._final_written = True

    # --- atomic checkpoints ---
    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        if not self.is_deepspeed_enabled:  # a checkpoint is only worth writing if its weights are finite
            trained = [p.detach() for p in model.parameters() if p.requires_grad]
            finite = torch.stack([torch.isfinite(p).all() for p in trained]).all() if trained else torch.tensor(True)
            if not self._all_ranks_finite(finite):
                self.stop_non_finite("the weights became NaN/inf (checkpoint not written)")
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
