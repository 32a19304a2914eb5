"""The runner end to end on the tiny model: outputs, atomic checkpoints, NaN guard, exact resume."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from transformers import TrainerCallback

from glmtune.train.callbacks import read_log
from glmtune.train.runner import run
from glmtune.train.trainer import GlmTrainer, NonFiniteLossError


def test_run_writes_everything(make_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # TensorBoard must not write into the current directory
    cfg = make_cfg(max_steps=6, save_steps=2, save_total_limit=2, val_size=8, eval_steps=3, eval_before=True,
                   report_to="[tensorboard]", sample_prompts='["What is the capital of France?"]',
                   max_new_tokens=4)  # fmt: skip
    result = run(cfg)
    out = result.output_dir
    assert result.global_step == 6 and result.eval_before is not None and result.eval_after is not None
    assert result.eval_after < result.eval_before
    for name in ("model.safetensors", "config.json", "tokenizer.model", "tokenizer_config.json",
                 "glmtune_train_config.yaml", "train_log.jsonl", "loss.png"):  # fmt: skip
        assert (out / name).is_file(), name
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    assert not list(out.glob(".tmp-*"))
    events = list((out / "runs").rglob("events.out.tfevents.*"))
    assert events and not (tmp_path / "runs").exists()
    assert any(b"eval/before_loss" in p.read_bytes() for p in events)  # the pre-training eval is there too
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert {"step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(train_rows[0])
    assert all(r["tokens_per_s"] > 0 for r in train_rows)
    assert [r["step"] for r in rows if "eval_loss" in r][:2] == [3, 6]
    assert result.samples and isinstance(result.samples[0][1], str)


def test_crash_mid_save_keeps_last_good_checkpoint(make_cfg, monkeypatch):
    calls = {"n": 0}
    original = GlmTrainer._save_rng_state

    def flaky(self, output_dir):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return original(self, output_dir)

    monkeypatch.setattr(GlmTrainer, "_save_rng_state", flaky)
    cfg = make_cfg(max_steps=6, save_steps=2)
    with pytest.raises(OSError, match="disk full"):
        run(cfg)
    out = Path(cfg.output_dir)
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()
    assert (out / ".tmp-checkpoint-4").is_dir()  # the half-written one, never visible as checkpoint-4
    monkeypatch.setattr(GlmTrainer, "_save_rng_state", original)
    result = run(make_cfg(max_steps=6, save_steps=2, resume="auto"))
    assert result.global_step == 6 and not list(out.glob(".tmp-*"))


def test_nan_loss_stops_with_clear_message(make_cfg, monkeypatch):
    original = GlmTrainer.compute_loss

    def poisoned(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = original(self, model, inputs, return_outputs, num_items_in_batch)
        return loss * float("nan") if self.state.global_step >= 3 else loss

    monkeypatch.setattr(GlmTrainer, "compute_loss", poisoned)
    cfg = make_cfg(max_steps=6, save_steps=2)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 4.*checkpoint-2.*learning_rate"):
        run(cfg)
    assert [p.name for p in Path(cfg.output_dir).glob("checkpoint-*")] == ["checkpoint-2"]


def test_diverging_run_never_saves_non_finite_weights(tiny_model, small_data, tmp_path, capsys):
    """learning_rate=1e8: the gradient goes NaN while the loss is still finite; the run stops before that
    optimizer step, and the checkpoint it names has only finite tensors."""
    import torch
    from safetensors.torch import load_file
    from train_overrides import base_overrides

    from glmtune.cli import main as cli

    out = tmp_path / "diverge"
    code = cli(["train", *base_overrides(tiny_model, small_data, out, learning_rate="1e8", save_steps=2, max_steps=8,
                                         max_grad_norm=0)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "stopped before the optimizer step" in err, err
    named = re.search(r"Last good checkpoint: (\S+)\.", err).group(1)
    for folder in out.glob("checkpoint-*"):  # every checkpoint written, not only the one named
        for path in folder.glob("*.safetensors"):
            assert all(torch.isfinite(t).all() for t in load_file(str(path)).values()), path
    assert named == "none" or Path(named).is_dir()


class _PoisonGradient(TrainerCallback):
    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step == 1:  # during step 2: the loss was finite, one gradient is not
            next(p for p in model.parameters() if p.requires_grad).grad.fill_(float("nan"))


def test_a_nan_gradient_with_a_finite_loss_stops_before_the_step(make_cfg):
    cfg = make_cfg(max_steps=6, save_steps=2)
    with pytest.raises(NonFiniteLossError, match=r"gradient became NaN/inf .* at step 2.*Last good checkpoint: none"):
        run(cfg, callbacks=[_PoisonGradient()])
    assert not list(Path(cfg.output_dir).glob("checkpoint-*"))  # checkpoint-2 would have held NaN weights


class _Crash(TrainerCallback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt(f"killed at step {self.at}")


@pytest.mark.slow
def test_resume_reproduces_uninterrupted_run(make_cfg):
    common = {"max_steps": 10, "save_steps": 4, "lr_scheduler": "cosine", "warmup_ratio": 0.1}
    straight = run(make_cfg("straight", **common))
    cfg = make_cfg("interrupted", **common)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, callbacks=[_Crash(7)])
    resumed = run(make_cfg("interrupted", resume="auto", **common))
    assert resumed.global_step == 10
    a = {r["step"]: r for r in read_log(straight.output_dir / "train_log.jsonl") if "loss" in r}
    b = {r["step"]: r for r in read_log(resumed.output_dir / "train_log.jsonl") if "loss" in r}
    assert sorted(b) == list(range(1, 11))
    for step in range(5, 11):  # the steps the resumed run recomputed after checkpoint-4
        assert math.isclose(a[step]["loss"], b[step]["loss"], abs_tol=1e-6), (step, a[step], b[step])
        assert math.isclose(a[step]["lr"], b[step]["lr"], abs_tol=1e-12)
