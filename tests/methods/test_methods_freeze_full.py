"""freeze trains only the chosen blocks/modules; full trains everything with float32 masters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from methods_helpers import changed, logits, make_cfg, snapshot, train_step

from glmtune.errors import ConfigError, GlmtuneError
from glmtune.methods import FreezeConfig, get_method
from glmtune.methods.freeze import find_layer_list, name_matches


def test_layer_list_is_found(tiny) -> None:
    name, layers = find_layer_list(tiny)
    assert name == "model.layers" and len(layers) == 2


def test_last_layer_only(tiny) -> None:
    model = get_method("freeze").apply(tiny, make_cfg("freeze", freeze=FreezeConfig(trainable_layers=1)))
    before = snapshot(model)
    assert torch.isfinite(torch.tensor(train_step(model)))
    moved = changed(before, snapshot(model))
    assert moved and all(n.startswith("model.layers.1.") for n in moved)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in before if n.startswith("model.layers.1.")}


def test_named_modules_and_embeddings(tiny) -> None:
    block = FreezeConfig(trainable_modules=["mlp", "*.layers.0.self_attn.q_proj.*"], train_embeddings=True)
    model = get_method("freeze").apply(tiny, make_cfg("freeze", freeze=block))
    before = snapshot(model)
    train_step(model)
    moved = changed(before, snapshot(model))
    expected = {n for n in before if ".mlp." in n or n.startswith("model.layers.0.self_attn.q_proj.")}
    expected |= {"model.embed_tokens.weight", "lm_head.weight"}
    assert moved == expected


def test_name_matching_uses_whole_parts() -> None:
    assert name_matches("model.layers.1.mlp.down_proj.weight", "layers.1")
    assert not name_matches("model.layers.11.mlp.down_proj.weight", "layers.1")
    assert name_matches("model.layers.11.mlp.down_proj.weight", "*.layers.1?.*")


def test_freeze_errors(tiny) -> None:
    with pytest.raises(ConfigError, match="freeze.trainable_modules: 'attention' matches no parameter"):
        get_method("freeze").apply(tiny, make_cfg("freeze", freeze=FreezeConfig(trainable_modules=["attention"])))
    with pytest.raises(ConfigError, match="freeze.trainable_layers is 5 but the model has 2 layers"):
        get_method("freeze").apply(tiny, make_cfg("freeze", freeze=FreezeConfig(trainable_layers=5)))
    with pytest.raises(ConfigError, match="adapter: freeze tuning cannot continue"):
        get_method("freeze").apply(tiny, make_cfg("freeze", adapter="x"))


def test_freeze_fp16_trains_float32_masters(tiny) -> None:
    model = get_method("freeze").apply(tiny.half(), make_cfg("freeze", freeze=FreezeConfig(trainable_layers=1)))
    dtypes = {p.dtype for p in model.parameters() if p.requires_grad}
    assert dtypes == {torch.float32}
    assert model.model.layers[0].mlp.down_proj.weight.dtype == torch.float16


def test_full_trains_everything_and_round_trips(tiny, tmp_path: Path) -> None:
    from transformers import GlmForCausalLM

    method = get_method("full")
    model = method.apply(tiny, make_cfg("full", gradient_checkpointing=True))
    before = snapshot(model)
    assert torch.isfinite(torch.tensor(train_step(model)))
    assert changed(before, snapshot(model)) == set(before)
    method.save(model, tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").is_file()
    reloaded = GlmForCausalLM.from_pretrained(tmp_path / "out")
    torch.testing.assert_close(logits(reloaded), logits(model), atol=1e-6, rtol=0)


def test_full_never_trains_fp16(tiny) -> None:
    model = get_method("full").apply(tiny.half(), make_cfg("full"))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    bf16 = get_method("full").apply(tiny.to(torch.bfloat16), make_cfg("full"))
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}


def test_full_refuses_adapters(tiny) -> None:
    with pytest.raises(ConfigError, match="adapter: full fine-tuning"):
        get_method("full").apply(tiny, make_cfg("full", adapter="somewhere"))
    with pytest.raises(GlmtuneError, match="no LoRA adapter to merge"):
        from glmtune.methods.adapters import merge_adapter

        merge_adapter(tiny)


def test_save_replaces_an_earlier_result_in_the_same_folder(tiny, tiny_dir: Path, tmp_path: Path) -> None:
    """Re-running into one output_dir: the previous method's weights must not shadow or outlive the new ones."""
    import shutil

    import glmtune

    out = tmp_path / "run"
    out.mkdir()
    (out / "train_log.jsonl").write_text("{}\n")
    shutil.copy(tiny_dir / "config.json", out / "config.json")  # an earlier sharded full result
    (out / "model.safetensors.index.json").write_text('{"weight_map": {"x": "model-00001-of-00002.safetensors"}}')
    (out / "model-00001-of-00002.safetensors").write_bytes(b"old")
    (out / "adapter_config.json").write_text('{"peft_type": "LORA"}')  # and an earlier LoRA adapter
    method = get_method("full")
    model = method.apply(tiny, make_cfg("full"))
    train_step(model)
    method.save(model, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "generation_config.json", "glmtune_adapter.json", "model.safetensors", "train_log.jsonl"]
    torch.testing.assert_close(logits(glmtune.load_model(out)), logits(model), atol=0, rtol=0)

    lora = get_method("lora")  # now a LoRA run into the same folder: no stale full model stays loadable
    lora.save(lora.apply(glmtune.load_model(tiny_dir, family="chatglm2"), make_cfg()), out)
    assert not (out / "model.safetensors").exists() and not (out / "config.json").exists()
    assert (out / "adapter_model.safetensors").is_file() and (out / "train_log.jsonl").read_text() == "{}\n"
    with pytest.raises(GlmtuneError, match="holds a LoRA adapter"):
        glmtune.load_model(out)
