"""Every setting is honoured or refused, and user errors are one line (through the real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from train_overrides import base_overrides

from glmtune.cli import main as cli


@pytest.fixture(scope="module")
def lora_r4(tiny_model, small_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adapter") / "r4"
    assert cli(["train", *base_overrides(tiny_model, small_data, out, method="lora", max_steps=1), "lora.r=4"]) == 0
    return out


def test_continuing_an_adapter_keeps_its_settings(capsys, tiny_model, small_data, tmp_path, lora_r4):
    out = tmp_path / "more"
    base = base_overrides(tiny_model, small_data, out, method="lora", max_steps=1)
    assert cli(["train", *base, f"adapter={lora_r4}", "lora.r=16"]) == 2  # explicitly other: refused
    err = capsys.readouterr().err
    assert "lora.r: 16, but adapter" in err and "r=4" in err, err
    assert cli(["train", *base, f"adapter={lora_r4}"]) == 0  # left at default: the adapter's r=4 is used
    assert yaml.safe_load((out / "glmtune_train_config.yaml").read_text())["lora"]["r"] == 4
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4


def test_an_adapter_of_another_family_is_refused(reference, lora_r4):
    import glmtune
    from glmtune.errors import GlmtuneError

    with pytest.raises(GlmtuneError, match=r"trained on a chatglm2 model .* this model is chatglm3"):
        glmtune.load_model(reference / "models" / "chatglm3-tiny", adapter=lora_r4)


def test_a_thudm_named_lora_is_one_line(capsys, tiny_model, small_data, tmp_path):
    import torch
    from safetensors.torch import save_file

    adapter = tmp_path / "thudm-lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["query_key_value"],
        "task_type": "CAUSAL_LM", "base_model_name_or_path": "THUDM/chatglm2-6b"}))
    key = "base_model.model.transformer.encoder.layers.0.self_attention.query_key_value.lora_A.weight"
    save_file({key: torch.zeros(8, 128)}, str(adapter / "adapter_model.safetensors"))
    code = cli(["train", *base_overrides(tiny_model, small_data, tmp_path / "o", method="lora", max_steps=1),
                f"adapter={adapter}"])  # fmt: skip
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("glmtune")]
    # THUDM names are mapped onto the native modules (glmtune.methods.thudm_lora); this one lacks lora_B
    assert code == 2 and len(err) == 1 and "query_key_value has no lora_B weight" in err[0], err


def test_ctrl_c_names_the_last_checkpoint_and_the_resume_command(capsys, tiny_model, small_data, tmp_path,
                                                                   monkeypatch):
    from glmtune.train.trainer import GlmTrainer

    original = GlmTrainer.training_step

    def interrupted(self, *args, **kwargs):
        if self.state.global_step == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GlmTrainer, "training_step", interrupted)
    out = tmp_path / "run"
    argv = base_overrides(tiny_model, small_data, out, method="lora", max_steps=6, save_steps=2)
    assert cli(["train", *argv]) == 130
    err = capsys.readouterr().err
    assert f"the last complete checkpoint is {out / 'checkpoint-2'}" in err, err
    assert "resume=auto" in err and not list(out.glob(".tmp-*"))


def test_an_internal_error_is_one_line_and_a_traceback_file(capsys, monkeypatch):
    from glmtune.data import stats

    def broken(argv):
        raise RuntimeError("something glmtune did not expect")

    monkeypatch.setattr(stats, "main", broken)
    monkeypatch.delenv("GLMTUNE_DEBUG", raising=False)
    assert cli(["stats", "x.jsonl"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "glmtune stats: internal error: RuntimeError: something glmtune did not expect"
    path = err[1].split(" is in ")[1].split(" ")[0]
    assert "Traceback" in Path(path).read_text() and "something glmtune did not expect" in Path(path).read_text()
    Path(path).unlink()


def test_a_template_without_the_tokenizers_tokens_is_refused(capsys, reference, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]}) + "\n")
    code = cli(["tokenize", "--model", str(reference / "checkpoints" / "chatglm2-mini"), "--data", str(data),
                "-o", str(tmp_path / "tok"), "--template", "chatglm3", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "emits token ids [64795, 64796]" in err and "has 64794" in err, err
    assert not (tmp_path / "tok").exists()
