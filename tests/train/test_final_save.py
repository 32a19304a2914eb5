"""The final save goes through the Trainer's ``save_model``, so a sharded model's gathered state dict
(FSDP FULL_STATE_DICT, DeepSpeed ZeRO-3 16-bit gather) is what lands on disk, in the method's format.

FSDP itself cannot run on this CPU-only machine (accelerate enables FSDP only on accelerators: with
``use_cpu`` it silently runs DDP), so the sharding is simulated at the one seam that matters: the
model's own parameters are wrong (as shards are) and the Trainer's gather returns the real ones.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
import torch

from glmtune.errors import ConfigError, GlmtuneError
from glmtune.methods import LoraConfig, get_method
from glmtune.train.config import TrainConfig
from glmtune.train.distributed import fsdp_arguments
from glmtune.train.runner import save_outputs
from glmtune.train.trainer import GlmTrainer


def _tiny() -> Any:
    from transformers import GlmConfig, GlmForCausalLM

    torch.manual_seed(0)
    return GlmForCausalLM(GlmConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, num_key_value_heads=1, head_dim=8, pad_token_id=0,
                                    eos_token_id=2, bos_token_id=None, tie_word_embeddings=False))


class _FakeFsdpAccelerator:
    """The real accelerator, except that FSDP is on and ``get_state_dict`` returns the gathered weights."""

    def __init__(self, real: Any, gathered: dict[str, torch.Tensor]) -> None:
        self._real, self.gathered, self.calls = real, gathered, 0
        self.state = types.SimpleNamespace(fsdp_plugin=types.SimpleNamespace(state_dict_type="FULL_STATE_DICT"))

    def get_state_dict(self, model: Any) -> dict[str, torch.Tensor]:
        self.calls += 1
        return self.gathered

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _sharded_trainer(model: Any, tmp_path: Path) -> tuple[GlmTrainer, dict[str, torch.Tensor]]:
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none")
    trainer = GlmTrainer(model=model, args=args)
    gathered = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for param in model.parameters():  # what a rank's module holds between gathers: not the weights
            param.zero_()
    trainer.accelerator = _FakeFsdpAccelerator(trainer.accelerator, dict(gathered))  # save_pretrained pops keys
    trainer.is_fsdp_enabled = True
    return trainer, gathered


def _cfg(tmp_path: Path, method: str) -> TrainConfig:
    return TrainConfig(model="tiny", data="d.jsonl", method=method, output_dir=str(tmp_path / "out"))


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Any:
    import glmtune

    return glmtune.load_tokenizer(tiny_model)


def test_full_model_is_written_from_the_gathered_state(tmp_path: Path, tokenizer: Any) -> None:
    from transformers import GlmForCausalLM

    method = get_method("full")
    model = method.apply(_tiny(), types.SimpleNamespace(adapter=None, gradient_checkpointing=False))
    trainer, gathered = _sharded_trainer(model, tmp_path)
    save_outputs(_cfg(tmp_path, "full"), trainer, method, tokenizer)
    out = tmp_path / "out"
    assert trainer.accelerator.calls == 1
    assert (out / "glmtune_adapter.json").is_file() and (out / "glmtune_train_config.yaml").is_file()
    reloaded = GlmForCausalLM.from_pretrained(out).state_dict()
    assert set(reloaded) == set(gathered)
    for key, value in gathered.items():
        assert reloaded[key].shape == value.shape and reloaded[key].numel() > 0, key
        assert torch.equal(reloaded[key], value), key


def test_lora_adapter_is_written_from_the_gathered_state(tmp_path: Path, tokenizer: Any) -> None:
    import peft

    method = get_method("lora")
    cfg = types.SimpleNamespace(adapter=None, gradient_checkpointing=False, family="chatglm2", model="tiny",
                                lora=LoraConfig(dropout=0.0, target_modules=["q_proj", "v_proj"]))
    model = method.apply(_tiny(), cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.normal_()  # lora_B starts at zero: make the trained state distinguishable
    trainer, gathered = _sharded_trainer(model, tmp_path)
    save_outputs(_cfg(tmp_path, "lora"), trainer, method, tokenizer)
    reloaded = peft.PeftModel.from_pretrained(_tiny(), str(tmp_path / "out"))
    lora = {k: v for k, v in reloaded.state_dict().items() if "lora_" in k}
    assert lora and all(torch.equal(v, gathered[k]) for k, v in lora.items())


def test_deepspeed_without_gather_fails_with_the_setting_to_change(tmp_path: Path) -> None:
    method = get_method("full")
    trainer, _ = _sharded_trainer(method.apply(_tiny(), types.SimpleNamespace(adapter=None,
                                                                              gradient_checkpointing=False)), tmp_path)
    trainer.is_deepspeed_enabled = True
    trainer.accelerator.deepspeed_config = {"zero_optimization": {"stage": 3}}
    with pytest.raises(GlmtuneError, match="stage3_gather_16bit_weights_on_model_save"):
        trainer.save_final(str(tmp_path / "x"), lambda folder, state: None)  # refused before any collective
    trainer._final_writer = lambda folder, state: None
    with pytest.raises(GlmtuneError, match="stage3_gather_16bit_weights_on_model_save"):
        trainer._save(str(tmp_path / "x"), state_dict={})  # what save_model passes when ZeRO-3 cannot gather
    assert not (tmp_path / "x").exists()


def test_fsdp_key_maps_to_a_full_state_dict_and_is_refused_on_cpu(tmp_path: Path) -> None:
    from transformers import TrainingArguments

    kwargs = fsdp_arguments("full_shard auto_wrap", gpu=True)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **kwargs)
    assert args.fsdp_plugin_args["state_dict_type"] == "FULL_STATE_DICT"
    assert args.fsdp_plugin_args["reshard_after_forward"] is True
    assert fsdp_arguments("shard_grad_op offload", gpu=True)["fsdp_config"]["cpu_offload"] is True
    assert fsdp_arguments(None, gpu=False) == {}
    with pytest.raises(ConfigError, match="fsdp: needs GPUs"):
        fsdp_arguments("full_shard", gpu=False)
    with pytest.raises(ConfigError, match="fsdp: unknown option 'hybrid'"):
        TrainConfig(model="m", data="d", fsdp="hybrid")
    with pytest.raises(ConfigError, match="fsdp / deepspeed"):
        TrainConfig(model="m", data="d", fsdp="full_shard", deepspeed="examples/deepspeed/zero3.json")


def test_ptuning_prefix_is_written_from_the_gathered_state(tmp_path: Path, tokenizer: Any, tiny_model: Path) -> None:
    import glmtune
    from glmtune.methods import PTuningConfig
    from glmtune.models.ptuning_layout import PREFIX_KEY

    method = get_method("ptuning")
    cfg = types.SimpleNamespace(adapter=None, gradient_checkpointing=False, family="chatglm2", model="tiny",
                                ptuning=PTuningConfig(pre_seq_len=4))
    model = method.apply(glmtune.load_model(tiny_model, dtype=torch.float32), cfg)
    trainer, gathered = _sharded_trainer(model, tmp_path)
    save_outputs(_cfg(tmp_path, "ptuning"), trainer, method, tokenizer)
    (key,) = [k for k in gathered if "prefix_encoder." in k]
    saved = torch.load(tmp_path / "out" / "pytorch_model.bin", weights_only=True)
    assert list(saved) == [PREFIX_KEY] and torch.equal(saved[PREFIX_KEY], gathered[key])
    assert gathered[key].abs().sum() > 0  # the module itself holds zeros: the file came from the gather


def test_fsdp_on_cpu_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No data conversion, no model load, nothing written to output_dir before the refusal."""
    import torch

    from glmtune.train.config import TrainConfig as Config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same verdict on a GPU machine
    from glmtune.train.runner import run

    data = tmp_path / "d.json"
    data.write_text('[{"instruction": "hi", "output": "ok"}]', encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="fsdp: needs GPUs"):
        run(Config(model="builtin:tiny-chatglm2", data=str(data), output_dir=str(out), fsdp="full_shard"))
    assert not out.exists()
