"""The methods on a real (tiny) ChatGLM2 checkpoint through ``glmtune.load_model``, as the trainer uses them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from methods_helpers import changed, make_cfg, snapshot, train_step

from glmtune.methods import get_method

IDS = torch.tensor([[1001, 1003, 857, 163, 812, 253]])


@pytest.mark.parametrize("name", ["lora", "qlora"])
def test_train_save_and_load_with_adapter(reference: Path, tmp_path: Path, name: str) -> None:
    import glmtune

    if name == "qlora":
        pytest.importorskip("bitsandbytes")
    base = reference / "models" / "chatglm2-tiny"
    method = get_method(name)
    cfg = make_cfg(name, model=str(base), gradient_checkpointing=True)
    model = method.apply(glmtune.load_model(base, **method.model_load_kwargs(cfg)), cfg)
    before = snapshot(model)
    assert torch.isfinite(torch.tensor(train_step(model, lr=0.01)))
    assert all(".lora_" in n for n in changed(before, snapshot(model)))
    method.save(model, tmp_path / "out")
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=IDS).logits
        reloaded = glmtune.load_model(base, adapter=tmp_path / "out", **method.model_load_kwargs(cfg))
        torch.testing.assert_close(reloaded(input_ids=IDS).logits, trained, atol=1e-6, rtol=0)
