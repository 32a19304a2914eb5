"""Every ChatGLM generation loads through transformers' own ``from_pretrained`` (meta-device init,
sharded reading, device_map, quantization_config): the THUDM -> Glm mapping is a conversion mapping
registered for the load only, and the results still match the THUDM reference vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from chatglm_v1_testutil import sample, tiny_model  # noqa: E402
from transformers import GlmForCausalLM  # noqa: E402
from transformers.conversion_mapping import get_checkpoint_conversion_mapping  # noqa: E402

import glmtune  # noqa: E402
from glmtune.errors import GlmtuneError  # noqa: E402
from glmtune.models.chatglm_v1.modeling import ChatGLMV1ForCausalLM  # noqa: E402

ATOL = 1e-5


def spy_from_pretrained(monkeypatch, cls):
    """Record each ``cls.from_pretrained`` call and the default device its ``__init__`` ran under."""
    calls: list[dict] = []
    real_fp, real_init = cls.from_pretrained.__func__, cls.__init__

    def from_pretrained(klass, path, *args, **kwargs):
        calls.append({"path": str(path), **kwargs})
        return real_fp(klass, path, *args, **kwargs)

    def init(self, *args, **kwargs):
        if calls:
            calls[-1].setdefault("init_device", torch.empty(0).device.type)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(cls, "from_pretrained", classmethod(from_pretrained))
    monkeypatch.setattr(cls, "__init__", init)
    return calls


def case_a(model, root):
    with np.load(root / "chatglm2-tiny" / "expected.npz") as npz:
        ids, expected = torch.from_numpy(npz["a.input_ids"]), torch.from_numpy(npz["a.logits"])
    with torch.no_grad():
        return model(input_ids=ids).logits, expected


@pytest.mark.parametrize("name", ["chatglm2-tiny-sharded", "chatglm2-tiny-safetensors"])
def test_thudm_folder_is_read_by_glm_from_pretrained(reference, monkeypatch, name):
    calls = spy_from_pretrained(monkeypatch, GlmForCausalLM)
    root = reference / "models"
    model = glmtune.load_model(root / name, device_map="cpu", low_cpu_mem_usage=True)
    assert len(calls) == 1 and calls[0]["path"] == str(root / name)
    assert type(calls[0]["config"]).__name__ == "GlmConfig" and calls[0]["device_map"] == "cpu"
    assert calls[0]["init_device"] == "meta"  # transformers builds the model empty, then fills it
    logits, expected = case_a(model, root)
    torch.testing.assert_close(logits, expected, atol=ATOL, rtol=0)


def test_conversion_is_registered_for_the_load_only(reference, tmp_path):
    assert get_checkpoint_conversion_mapping("GlmForCausalLM") is None
    model = glmtune.load_model(reference / "models" / "chatglm2-tiny")
    assert get_checkpoint_conversion_mapping("GlmForCausalLM") is None
    model.save_pretrained(tmp_path / "hf")  # Glm names, not reverted to the THUDM layout
    again = GlmForCausalLM.from_pretrained(tmp_path / "hf")
    assert set(again.state_dict()) == set(model.state_dict())
    assert "model.layers.0.self_attn.k_proj.weight" in again.state_dict()
    logits, expected = case_a(again, reference / "models")
    torch.testing.assert_close(logits, expected, atol=ATOL, rtol=0)


def test_unknown_option_still_refused(reference):
    with pytest.raises(GlmtuneError, match="unsupported load_model option"):
        glmtune.load_model(reference / "models" / "chatglm2-tiny", bogus=1)


def test_chatglm_v1_is_read_by_its_from_pretrained(tmp_path, monkeypatch):
    tiny_model().save_pretrained(tmp_path / "m")
    calls = spy_from_pretrained(monkeypatch, ChatGLMV1ForCausalLM)
    model = glmtune.load_model(tmp_path / "m", device_map="cpu", low_cpu_mem_usage=True)
    assert len(calls) == 1 and calls[0]["init_device"] == "meta"
    ids = torch.tensor([sample(5, 3)])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, tiny_model()(input_ids=ids).logits, atol=0, rtol=0)


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_broken_folders_fail_with_one_line(tmp_path, capsys):
    from test_glm_mapping_units import CONFIG, write_thudm

    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "config.json").write_text(json.dumps(CONFIG))
    torch.save({"x": _Evil()}, tmp_path / "evil" / "pytorch_model.bin")
    with pytest.raises(GlmtuneError, match="plain tensor checkpoint"):
        glmtune.load_model(tmp_path / "evil", family="chatglm2")
    assert "unpickled!" not in capsys.readouterr().out
    gone = write_thudm(tmp_path / "gone")
    (gone / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"a": "pytorch_model.bin", "b": "gone.bin"}}))
    with pytest.raises(GlmtuneError, match="gone.bin"):
        glmtune.load_model(gone, family="chatglm2")
    bad = write_thudm(tmp_path / "bad")
    state = torch.load(bad / "pytorch_model.bin", weights_only=True)
    key = "transformer.encoder.layers.0.self_attention.query_key_value.weight"
    state[key] = state[key][:-16]  # a q/k/v that does not split into the config's heads
    torch.save(state, bad / "pytorch_model.bin")
    with pytest.raises(GlmtuneError, match="does not fit"):
        glmtune.load_model(bad, family="chatglm2")


def test_chatglm_v1_prefix_weights_need_pre_seq_len(tmp_path):
    from glmtune.models.chatglm_v1.prefix import enable_prefix

    enable_prefix(tiny_model(), pre_seq_len=2).save_pretrained(tmp_path / "m")
    assert glmtune.load_model(tmp_path / "m").transformer.prefix_encoder is not None
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["pre_seq_len"] = None
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(GlmtuneError, match="pre_seq_len"):
        glmtune.load_model(tmp_path / "m")


def test_lora_state_of_a_thudm_load_has_no_embeddings(reference, recwarn):
    """The THUDM folder is not recorded as the Glm model's source: PEFT would read its config.json as a
    GlmConfig, see another vocab size and save the embedding and output layers with every adapter."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    model = glmtune.load_model(reference / "checkpoints" / "chatglm2-mini")  # config.json: no vocab_size
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    keys = list(get_peft_model_state_dict(peft_model))
    assert keys and all("lora_" in k for k in keys)
    assert not [w for w in recwarn if "save_embedding_layers" in str(w.message)]
