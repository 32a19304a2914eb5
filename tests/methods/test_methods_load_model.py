"""The methods on a real (tiny) ChatGLM2 checkpoint through ``glmtune.load_model``, as the trainer uses them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from methods_helpers import changed, make_cfg, snapshot, train_step

from glmtune.errors import GlmtuneError
from glmtune.methods import get_method
from glmtune.methods.adapters import merge_adapter

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
    if name == "qlora":
        with pytest.raises(GlmtuneError, match="cannot merge LoRA into a 4/8-bit base"):
            merge_adapter(reloaded)
        return
    merged = merge_adapter(reloaded)
    assert type(merged).__name__ == "GlmForCausalLM" and not any(".lora_" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=IDS).logits, trained, atol=1e-5, rtol=0)


FAMILY_OF = {"chatglm-tiny": "chatglm", "chatglm2-tiny": "chatglm2", "chatglm3-tiny": "chatglm3"}


@pytest.mark.parametrize("name", sorted(FAMILY_OF))
@pytest.mark.parametrize("method_name", ["full", "freeze"])
def test_whole_model_output_reloads_on_its_own(reference: Path, tmp_path: Path, name: str, method_name: str) -> None:
    """A full/freeze output_dir is a model: same family, same logits through glmtune.load_model, not an adapter."""
    import glmtune
    from glmtune.models.info import describe

    base, family = reference / "models" / name, FAMILY_OF[name]
    method = get_method(method_name)
    model = method.apply(glmtune.load_model(base), make_cfg(method_name, model=str(base), family=family))
    before = snapshot(model)
    train_step(model, lr=0.01)
    assert changed(before, snapshot(model))
    method.save(model, tmp_path / "out")
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=IDS).logits
        reloaded = glmtune.load_model(tmp_path / "out")
        torch.testing.assert_close(reloaded(input_ids=IDS).logits, trained, atol=0, rtol=0)
    assert glmtune.detect_family(tmp_path / "out") == family
    info = describe(tmp_path / "out")
    assert (info["family"], info["adapter"], info["loadable"]) == (family, None, "yes")
    with pytest.raises(GlmtuneError, match=f"a whole model fine-tuned with method {method_name}, not an adapter"):
        glmtune.load_model(base, adapter=tmp_path / "out")


@pytest.mark.parametrize("method_name,kind", [("lora", "LoRA adapter"), ("ptuning", "P-Tuning v2 prefix")])
def test_adapter_output_is_not_a_model(reference: Path, tmp_path: Path, method_name: str, kind: str) -> None:
    import glmtune
    from glmtune.models.info import describe

    base = reference / "models" / "chatglm2-tiny"
    method = get_method(method_name)
    method.save(method.apply(glmtune.load_model(base), make_cfg(method_name, model=str(base))), tmp_path / "out")
    with pytest.raises(GlmtuneError, match=f"holds a {kind} for base model {base}, not a model: .*adapter="):
        glmtune.load_model(tmp_path / "out")
    info = describe(tmp_path / "out")  # no tokenizer saved: the family comes from glmtune_adapter.json
    assert info["family"] == "chatglm2" and info["adapter"] == f"a {kind} for base model {base}"
    assert info["loadable"].startswith(f"no (it holds a {kind}")
    with pytest.raises(GlmtuneError, match="holds a P-Tuning v2 prefix, not a model"):  # official folder
        glmtune.load_model(base / "ptuning")
