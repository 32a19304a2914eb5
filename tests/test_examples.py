"""Every examples/*.yaml parses, and each one's method trains a few steps on the tiny model.

The 6B examples are run with ``model=`` pointed at the built-in tiny ChatGLM2 (ChatGLM2
architecture), small data, and no DeepSpeed or FSDP (GPU only); everything else (method, method block, gradient
checkpointing, chunked loss, precision choice) stays as the example sets it. ChatGLM-6B v1 specifics
(its own module and the query_key_value target name) are covered by the model and method tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from glmtune.config import load_config
from glmtune.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
LR = {"full": 3e-3, "freeze": 3e-3, "lora": 1e-2, "qlora": 1e-2, "ptuning": 0.1}


def test_every_example_parses():
    assert len(EXAMPLES) >= 7
    for path in EXAMPLES:
        cfg = load_config(TrainConfig, path)
        assert cfg.model and cfg.data, path
    methods = {load_config(TrainConfig, p).method for p in EXAMPLES}
    assert methods == {"lora", "qlora", "freeze", "ptuning", "full"}
    for name in ("zero2", "zero3"):
        assert json.loads((REPO / "examples" / "deepspeed" / f"{name}.json").read_text())["zero_optimization"]
    zero3 = json.loads((REPO / "examples" / "deepspeed" / "zero3.json").read_text())["zero_optimization"]
    assert zero3["stage"] == 3 and zero3["stage3_gather_16bit_weights_on_model_save"] is True  # final save gathers
    sharded = {p.name: (c.deepspeed, c.fsdp) for p in EXAMPLES for c in [load_config(TrainConfig, p)] if c.deepspeed or c.fsdp}
    assert sharded["chatglm3-6b-full-fsdp.yaml"] == (None, "full_shard auto_wrap")
    assert all((REPO / ds).is_file() for ds, _ in sharded.values() if ds)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import os

    os.environ.setdefault("GLMTUNE_CACHE", str(tmp_path_factory.mktemp("cache")))
    from glmtune.models.tiny import builtin_path

    rows = json.loads((REPO / "examples" / "data" / "alpaca_bilingual.json").read_text(encoding="utf-8"))[:32]
    data = tmp_path_factory.mktemp("data") / "small.json"
    data.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return builtin_path("tiny-chatglm2"), data


def _norm(name: str) -> str:
    return name.removeprefix("base_model.model.").replace(".base_layer", "")


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.name != "quickstart.yaml"], ids=lambda p: p.stem)
def test_example_method_trains_on_tiny_model(path, tiny, tmp_path):
    import glmtune
    from glmtune.train.runner import run

    model_dir, data = tiny
    method = load_config(TrainConfig, path).method
    overrides = [
        f"model={model_dir}", "family=null", f"data={data}", "data_format=auto", "eval_data=null", "val_size=0",
        f"output_dir={tmp_path / 'out'}", "max_steps=5", "num_epochs=1", "batch_size=4", "grad_accum=1",
        f"learning_rate={LR[method]}", "warmup_ratio=0", "lr_scheduler=constant", "logging_steps=1",
        "save_steps=100", "precision=fp32", "deepspeed=null", "fsdp=null", "report_to=[none]", "sample_prompts=[]",
        "cutoff_len=64", "max_source_length=null", "max_target_length=null", "packing=false",
        "lora.target_modules=null", "freeze.trainable_layers=1", "ptuning.pre_seq_len=4",
    ]  # fmt: skip
    cfg = load_config(TrainConfig, path, overrides)
    before = {k: v.clone() for k, v in glmtune.load_model(model_dir, dtype=torch.float32).state_dict().items()}
    result = run(cfg)
    losses = [r["loss"] for r in map(json.loads, (result.output_dir / "train_log.jsonl").read_text().splitlines())
              if "loss" in r]  # fmt: skip
    assert losses[-1] < losses[0], losses
    model = result.trainer.accelerator.unwrap_model(result.trainer.model)
    changed, new = set(), set()
    for name, param in model.named_parameters():
        key = _norm(name)
        if key not in before:
            new.add(key)
        elif param.dtype == before[key].dtype and not torch.equal(param.detach().cpu(), before[key]):
            changed.add(key)
    if method == "full":
        assert changed and not new
        assert any("layers.0." in n for n in changed) and any("layers.1." in n for n in changed)
    elif method == "freeze":
        assert changed and not new and all(".layers.1." in n for n in changed), sorted(changed)
    else:  # lora / qlora / ptuning: the base is untouched, only new parameters train
        assert not changed, sorted(changed)
        assert new and all(p.requires_grad for n, p in model.named_parameters() if _norm(n) in new)
