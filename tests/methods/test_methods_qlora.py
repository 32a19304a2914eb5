"""QLoRA on a bitsandbytes-quantised tiny Glm model, on the CPU (bitsandbytes 0.50 runs 4- and 8-bit there)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from methods_helpers import changed, logits, make_cfg, snapshot, tiny_config, train_step

from glmtune.errors import ConfigError, GlmtuneError
from glmtune.methods import QLoraConfig, get_method
from glmtune.methods.adapters import attach_adapter

pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def q_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wider than the shared tiny model: bitsandbytes' CPU 4-bit inference kernel needs every
    linear input width to be a multiple of its 64-value block (training works either way)."""
    from transformers import GlmForCausalLM

    config = tiny_config()
    config.hidden_size, config.intermediate_size, config.head_dim = 64, 128, 16
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-glm-64")
    GlmForCausalLM(config).save_pretrained(folder)
    return folder


def quantized(tiny_dir: Path, bits: int):
    from transformers import BitsAndBytesConfig, GlmForCausalLM

    if bits == 4:
        qconf = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.float32, llm_int8_skip_modules=["lm_head"])
    else:
        qconf = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["lm_head"])
    return GlmForCausalLM.from_pretrained(tiny_dir, quantization_config=qconf)


def test_load_kwargs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    method = get_method("qlora")
    assert method.model_load_kwargs(make_cfg("qlora")) == {"quantization": "4bit", "device_map": {"": "cpu"}}
    assert method.model_load_kwargs(make_cfg("qlora", qlora=QLoraConfig(bits=8))) == {"quantization": "8bit",
                                                                                    "device_map": {"": "cpu"}}
    with pytest.raises(ConfigError, match="qlora.quant_type='fp4'"):
        method.model_load_kwargs(make_cfg("qlora", qlora=QLoraConfig(quant_type="fp4")))
    assert get_method("lora").model_load_kwargs(make_cfg()) == {}


@pytest.mark.parametrize("bits", [4, 8])
def test_step_changes_only_lora_and_round_trips(q_dir: Path, tmp_path: Path, bits: int) -> None:
    method = get_method("qlora")
    cfg = make_cfg("qlora", qlora=QLoraConfig(bits=bits), gradient_checkpointing=bits == 4)
    model = method.apply(quantized(q_dir, bits), cfg)
    before = snapshot(model)
    assert torch.isfinite(torch.tensor(train_step(model, lr=0.01)))
    moved = changed(before, snapshot(model))
    assert moved and all(".lora_" in n for n in moved)
    method.save(model, tmp_path / "adapter")
    reloaded = attach_adapter(quantized(q_dir, bits), tmp_path / "adapter")
    torch.testing.assert_close(logits(reloaded), logits(model), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("setting", "expected"), [(None, True), (False, False), (True, True)])
def test_gradient_checkpointing_defaults_on_for_qlora(q_dir: Path, setting: bool | None, expected: bool) -> None:
    """Left unset, QLoRA checkpoints (on a ChatGLM2-6B shape it is what brings batch 1 x 512 from
    6.6 to 4.4 GiB); an explicit false is kept, and LoRA stays off when unset."""
    from glmtune.train.config import TrainConfig

    assert TrainConfig.__dataclass_fields__["gradient_checkpointing"].default is None
    model = get_method("qlora").apply(quantized(q_dir, 4), make_cfg("qlora", gradient_checkpointing=setting))
    assert model.get_base_model().model.gradient_checkpointing is expected
    assert torch.isfinite(torch.tensor(train_step(model, lr=0.01)))
    if setting is None:
        from transformers import GlmForCausalLM

        lora = get_method("lora").apply(GlmForCausalLM.from_pretrained(q_dir), make_cfg(gradient_checkpointing=None))
        assert lora.get_base_model().model.gradient_checkpointing is False


def test_needs_a_quantised_model(tiny) -> None:
    with pytest.raises(GlmtuneError, match="qlora needs a model loaded with quantization"):
        get_method("qlora").apply(tiny, make_cfg("qlora"))


@pytest.mark.parametrize(("local_rank", "cuda", "expected"), [
    (None, False, {"": "cpu"}), ("1", False, {"": "cpu"}), (None, True, {"": 0}), ("1", True, {"": 1}),
])
def test_quantized_model_loads_on_this_ranks_device(monkeypatch: pytest.MonkeyPatch, local_rank: str | None,
                                                    cuda: bool, expected: dict) -> None:
    """A 4/8-bit base is placed at load time, so under torchrun every rank must pick its own GPU."""
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert get_method("qlora").model_load_kwargs(make_cfg("qlora"))["device_map"] == expected


def test_kbit_preparation_keeps_embedding_and_head_in_compute_dtype(q_dir: Path):
    """The 0.53B embedding + output parameters of a 6B ChatGLM stay in bf16/fp16 (peft's preparation
    would make them float32: +2 GB); only fp16 norms and biases go to float32; all is frozen."""
    from transformers import GlmForCausalLM

    from glmtune.methods.qlora import prepare_kbit

    for dtype in (torch.bfloat16, torch.float16):
        model = GlmForCausalLM.from_pretrained(q_dir, dtype=dtype)
        prepare_kbit(model)
        assert not any(p.requires_grad for p in model.parameters())
        assert model.get_input_embeddings().weight.dtype == dtype
        assert model.get_output_embeddings().weight.dtype == dtype
        norm = model.model.norm.weight.dtype
        assert norm == (torch.float32 if dtype == torch.float16 else torch.bfloat16)
