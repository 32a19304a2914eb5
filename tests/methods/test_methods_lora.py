"""LoRA: only the adapter trains, targets resolve per family, save/attach round-trips, checkpointing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from methods_helpers import batch, changed, logits, make_cfg, snapshot, train_step

from glmtune.errors import ConfigError
from glmtune.methods import LoraConfig, get_method
from glmtune.methods.adapters import attach_adapter, merge_adapter
from glmtune.methods.targets import default_targets, resolve_targets


def test_one_step_changes_only_lora(tiny) -> None:
    model = get_method("lora").apply(tiny, make_cfg())
    before = snapshot(model)
    loss = train_step(model)
    assert torch.isfinite(torch.tensor(loss))
    moved = changed(before, snapshot(model))
    assert moved and all(".lora_" in n for n in moved)
    targeted = {n.split(".")[-4] for n in before if ".lora_" in n}
    assert targeted == {"q_proj", "k_proj", "v_proj"}  # the chatglm2 default


def test_summary_counts_only_the_adapter(tiny) -> None:
    method = get_method("lora")
    model = method.apply(tiny, make_cfg())
    text = method.trainable_summary(model)
    lora = sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)
    assert text.startswith(f"trainable {lora / 1e3:.1f}K / ") and text.endswith("%)")


def test_all_linear_and_modules_to_save(tiny) -> None:
    cfg = make_cfg(lora=LoraConfig(target_modules="all-linear", modules_to_save=["lm_head"], dropout=0.0))
    model = get_method("lora").apply(tiny, cfg)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    kinds = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names if ".lora_" in n}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"}
    assert any("lm_head.modules_to_save" in n for n in names)


def test_unknown_target_lists_the_linear_layers(tiny) -> None:
    with pytest.raises(ConfigError, match=r"'query_key_value' not found .*q_proj, k_proj, v_proj, o_proj"):
        resolve_targets(tiny, ["query_key_value"], "chatglm2")
    with pytest.raises(ConfigError, match="matches no linear layer"):
        resolve_targets(tiny, r".*\.nothing", None)


def test_default_targets_per_family(tiny) -> None:
    assert default_targets(tiny, "chatglm") == ["query_key_value"]
    assert default_targets(tiny, "chatglm3") == ["q_proj", "k_proj", "v_proj"]
    assert default_targets(tiny, "hf") == "all-linear"
    assert default_targets(tiny, None) == ["q_proj", "k_proj", "v_proj"]  # guessed from module names


def test_save_attach_continue(tiny, tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import GlmForCausalLM

    method = get_method("lora")
    model = method.apply(tiny, make_cfg())
    train_step(model, steps=2)
    trained = logits(model)
    out = tmp_path / "adapter"
    method.save(model, out)
    assert {"adapter_model.safetensors", "adapter_config.json", "glmtune_adapter.json"} <= {
        p.name for p in out.iterdir()}
    info = json.loads((out / "glmtune_adapter.json").read_text())
    assert info == {"method": "lora", "family": "chatglm2", "base_model": "tiny-base", "template": None}

    loaded = attach_adapter(GlmForCausalLM.from_pretrained(tiny_dir), out)
    assert not any(p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(logits(loaded), trained, atol=1e-6, rtol=0)
    merged = merge_adapter(loaded)
    assert type(merged) is GlmForCausalLM
    torch.testing.assert_close(logits(merged), trained, atol=1e-5, rtol=0)

    resumed = method.apply(GlmForCausalLM.from_pretrained(tiny_dir), make_cfg(adapter=str(out)))
    torch.testing.assert_close(logits(resumed), trained, atol=1e-6, rtol=0)
    before = snapshot(resumed)
    train_step(resumed)
    moved = changed(before, snapshot(resumed))
    assert moved and all(".lora_" in n for n in moved)


def test_continue_needs_a_lora_folder(tiny, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no LoRA adapter"):
        get_method("lora").apply(tiny, make_cfg(adapter=str(tmp_path)))


def test_save_keeps_other_files_of_the_run_folder(tiny, tmp_path: Path) -> None:
    (tmp_path / "trainer_log.jsonl").write_text("{}\n")
    method = get_method("lora")
    model = method.apply(tiny, make_cfg())
    method.save(model, tmp_path)
    assert (tmp_path / "trainer_log.jsonl").read_text() == "{}\n"
    assert (tmp_path / "adapter_model.safetensors").is_file()
    assert not [p for p in tmp_path.parent.iterdir() if p.name.startswith(f".{tmp_path.name}.")]


def grads_after_backward(model) -> dict[str, torch.Tensor]:
    model.train()
    ids = batch()
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_gradient_checkpointing_gives_the_same_grads(tiny_dir: Path) -> None:
    from transformers import GlmForCausalLM

    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(3)  # same LoRA init in both runs
        model = get_method("lora").apply(GlmForCausalLM.from_pretrained(tiny_dir),
                                         make_cfg(gradient_checkpointing=checkpointing))
        with torch.no_grad():  # non-zero B so that A gets a gradient too
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.1)
        grads.append(grads_after_backward(model))
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 12
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=0)
        assert grads[0][name].abs().sum() > 0


def test_fp16_base_trains_float32_adapter(tiny) -> None:
    cfg = make_cfg(lora=LoraConfig(modules_to_save=["lm_head"]))
    model = get_method("lora").apply(tiny.half(), cfg)
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
