"""``torchrun --nproc_per_node 2 -m glmtune train`` on CPU (gloo): both ranks train, rank 0 writes once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[2]


def _torchrun(tmp_path: Path, *overrides: str, **env_extra: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m glmtune train quickstart.yaml`` on 32 rows, with ``overrides``."""
    rows = json.loads((REPO / "examples" / "data" / "alpaca_bilingual.json").read_text(encoding="utf-8"))[:32]
    data = tmp_path / "small.json"
    data.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLMTUNE_CACHE": os.environ.get("GLMTUNE_CACHE", str(tmp_path / "cache")),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **env_extra}  # fmt: skip
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "glmtune", "train", str(REPO / "examples" / "quickstart.yaml"),
        f"data={data}", f"output_dir={tmp_path / 'out'}", "batch_size=2", "logging_steps=1",
        "eval_before=false", "sample_prompts=[]", "report_to=[none]", "num_proc=1", *overrides,
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Full fine-tuning under DDP; the final weights (saved through the Trainer) reload complete and finite."""
    import glmtune
    from glmtune.models.tiny import builtin_path

    monkeypatch.setenv("GLMTUNE_CACHE", os.environ.get("GLMTUNE_CACHE", str(tmp_path / "cache")))
    out = tmp_path / "out"
    proc = _torchrun(tmp_path, "max_steps=4", "save_steps=2", "eval_steps=4", "val_size=4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "model.safetensors").is_file() and (out / "loss.png").is_file()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]  # save_total_limit 1
    assert (out / "checkpoint-4" / "rng_state_0.pth").is_file() and (out / "checkpoint-4" / "rng_state_1.pth").is_file()
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]  # written once, by rank 0
    assert proc.stdout.count("done: 4 steps") == 2  # both ranks finished
    assert not list(out.glob(".tmp-*"))
    base = glmtune.load_model(builtin_path("tiny-chatglm2"), dtype=torch.float32).state_dict()
    saved = glmtune.load_model(out, dtype=torch.float32).state_dict()
    assert set(saved) == set(base)
    assert all(saved[k].shape == base[k].shape and saved[k].numel() and torch.isfinite(saved[k]).all() for k in base)
    assert any(not torch.equal(saved[k], base[k]) for k in base)


def _reload_logits(model: object) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([[5, 6, 7, 8, 9]])).logits


@pytest.mark.slow
def test_two_process_ddp_lora(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LoRA under DDP: one adapter written by rank 0, trained (its B matrices left zero), and it loads."""
    import glmtune
    from glmtune.models.tiny import builtin_path

    monkeypatch.setenv("GLMTUNE_CACHE", os.environ.get("GLMTUNE_CACHE", str(tmp_path / "cache")))
    out = tmp_path / "out"
    proc = _torchrun(tmp_path, "method=lora", "learning_rate=1e-2", "max_steps=2", "save_steps=2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    assert proc.stdout.count("done: 2 steps") == 2
    with safe_open(str(out / "adapter_model.safetensors"), framework="pt") as fh:
        b_norms = [fh.get_tensor(k).abs().sum() for k in fh.keys() if "lora_B" in k]  # noqa: SIM118
    assert b_norms and all(n > 0 for n in b_norms)
    base = glmtune.load_model(builtin_path("tiny-chatglm2"), dtype=torch.float32)
    tuned = glmtune.load_model(builtin_path("tiny-chatglm2"), adapter=out, dtype=torch.float32)
    after = _reload_logits(tuned)
    assert torch.isfinite(after).all() and not torch.allclose(_reload_logits(base), after)


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    """Only rank 1 sees a NaN loss (at step 3): both ranks stop with the one-line error, nobody hangs in a
    collective, and the step-2 checkpoint stays, finite."""
    from glmtune.train.trainer import weights_finite

    out = tmp_path / "out"
    proc = _torchrun(tmp_path, "max_steps=6", "save_steps=2", "save_total_limit=3",
                     GLMTUNE_TEST_NAN_RANK="1", GLMTUNE_TEST_NAN_STEP="3")
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    errors = sorted(line for line in proc.stderr.splitlines() if line.startswith("glmtune train: error: loss became"))
    assert len(errors) == 2, log[-3000:]  # rank 0 (finite loss) stops too, saying why
    assert errors[0].startswith("glmtune train: error: loss became NaN/inf on another rank at step 3"), errors
    assert errors[1].startswith("glmtune train: error: loss became nan at step 3"), errors
    assert all("at step 3" in e and "checkpoint-2" in e for e in errors), errors
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert weights_finite(out / "checkpoint-2")
    assert not (out / "model.safetensors").exists()
