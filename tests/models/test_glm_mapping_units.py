"""Tiny random THUDM-layout checkpoints: reload, dtypes, quantisation, config refusals, RoPE mapping,
checkpoint reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from transformers import GlmForCausalLM  # noqa: E402

import glmtune  # noqa: E402
from glmtune.errors import GlmtuneError  # noqa: E402
from glmtune.models.checkpoint_io import iter_checkpoint_tensors  # noqa: E402
from glmtune.models.glm_mapping.config_map import rope_parameters, to_glm_config  # noqa: E402

CONFIG = {
    "_name_or_path": "THUDM/chatglm2-6b", "model_type": "chatglm", "architectures": ["ChatGLMModel"],
    "add_bias_linear": False, "add_qkv_bias": True, "apply_residual_connection_post_layernorm": False,
    "ffn_hidden_size": 128, "hidden_size": 64, "kv_channels": 16, "layernorm_epsilon": 1e-5,
    "multi_query_attention": True, "multi_query_group_num": 2, "num_attention_heads": 4, "num_layers": 2,
    "original_rope": True, "padded_vocab_size": 128, "post_layer_norm": True, "rmsnorm": True,
    "seq_length": 64, "eos_token_id": 2, "pad_token_id": 0, "tie_word_embeddings": False,
    "torch_dtype": "float16", "quantization_bit": 0,
}
IDS = torch.tensor([[5, 9, 17, 33, 65, 100, 7]])


def write_thudm(folder: Path, config: dict | None = None, seed: int = 0) -> Path:
    """A random ChatGLM2-layout checkpoint (THUDM names, fused qkv, inv_freq buffer, fp16 .bin)."""
    cfg = dict(CONFIG, **(config or {}))
    g = torch.Generator().manual_seed(seed)
    h, f, v, d = cfg["hidden_size"], cfg["ffn_hidden_size"], cfg["padded_vocab_size"], cfg["kv_channels"]
    qkv = (cfg["num_attention_heads"] + 2 * cfg["multi_query_group_num"]) * d

    def rnd(*shape, std=0.02, mean=0.0):
        return (torch.randn(*shape, generator=g) * std + mean).half()

    sd = {"transformer.embedding.word_embeddings.weight": rnd(v, h),
          "transformer.rotary_pos_emb.inv_freq": torch.ones(d // 4).half()}
    for i in range(cfg["num_layers"]):
        p = f"transformer.encoder.layers.{i}."
        sd.update({p + "input_layernorm.weight": rnd(h, std=0.1, mean=1.0),
                   p + "self_attention.query_key_value.weight": rnd(qkv, h, std=0.1),
                   p + "self_attention.query_key_value.bias": rnd(qkv),
                   p + "self_attention.dense.weight": rnd(h, cfg["num_attention_heads"] * d, std=0.1),
                   p + "post_attention_layernorm.weight": rnd(h, std=0.1, mean=1.0),
                   p + "mlp.dense_h_to_4h.weight": rnd(2 * f, h, std=0.1),
                   p + "mlp.dense_4h_to_h.weight": rnd(h, f, std=0.1)})
    sd["transformer.encoder.final_layernorm.weight"] = rnd(h, std=0.1, mean=1.0)
    sd["transformer.output_layer.weight"] = rnd(v, h)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    torch.save(sd, folder / "pytorch_model.bin")
    return folder


@pytest.fixture(scope="module")
def thudm(tmp_path_factory):
    return write_thudm(tmp_path_factory.mktemp("thudm") / "ckpt")


@pytest.fixture(scope="module")
def base(thudm):
    return glmtune.load_model(thudm)


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def test_streamed_load_has_no_meta_tensors(base):
    assert type(base) is GlmForCausalLM and base.dtype == torch.float32
    assert all(p.device.type == "cpu" for p in base.parameters())
    assert all(b.device.type == "cpu" for b in base.buffers())
    assert base.config.num_key_value_heads == 2 and base.config.head_dim == 16


def test_save_pretrained_reload_same_logits(base, tmp_path):
    base.save_pretrained(tmp_path / "glm")
    again = GlmForCausalLM.from_pretrained(tmp_path / "glm", dtype=torch.float32)
    torch.testing.assert_close(logits(again), logits(base), atol=0, rtol=0)
    assert glmtune.detect_family(tmp_path / "glm") == "chatglm2"  # config.glmtune keeps the family
    torch.testing.assert_close(logits(glmtune.load_model(tmp_path / "glm")), logits(base), atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_load(thudm, base, dtype):
    model = glmtune.load_model(thudm, dtype=dtype)
    assert model.dtype == dtype and all(p.dtype == dtype for p in model.parameters())
    out = logits(model)
    assert torch.isfinite(out).all()
    assert (out - logits(base)).abs().max() < 0.05


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantized_load_runs_forward(thudm, base, quantization):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    model = glmtune.load_model(thudm, quantization=quantization)
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, bnb.nn.Linear4bit if quantization == "4bit" else bnb.nn.Linear8bitLt)
    assert type(model.lm_head) is torch.nn.Linear  # the output layer is never quantised
    out = logits(model)
    assert torch.isfinite(out).all() and (out - logits(base)).abs().max() < 0.5
    seq = model.generate(input_ids=IDS, max_new_tokens=2, do_sample=False)
    assert seq.shape == (1, IDS.shape[1] + 2) and torch.equal(seq[:, :IDS.shape[1]], IDS)
    assert seq[0, IDS.shape[1]] == out[0, -1].argmax()  # greedy from the quantised model's own logits


@pytest.mark.parametrize("field,value", [
    ("rmsnorm", False), ("add_bias_linear", True), ("apply_residual_connection_post_layernorm", True),
    ("post_layer_norm", False), ("original_rope", False), ("quantization_bit", 4),
])
def test_unrepresentable_config_is_refused(field, value):
    with pytest.raises(GlmtuneError, match=field):
        to_glm_config(dict(CONFIG, **{field: value}), "chatglm2")


def test_rope_ratio_rules():
    assert rope_parameters({"rope_ratio": 16}, "chatglm2") == {
        "rope_type": "linear", "rope_theta": 10000.0, "partial_rotary_factor": 0.5, "factor": 16.0}
    assert rope_parameters({"rope_ratio": 50}, "chatglm3")["rope_theta"] == 500000.0
    both = rope_parameters({"rope_ratio": 50}, "chatglm3", {"type": "dynamic", "factor": 2})
    assert both["rope_type"] == "dynamic" and both["factor"] == 2.0 and both["rope_theta"] == 500000.0
    assert rope_parameters({"rope_ratio": 4}, "chatglm2", {"type": "linear", "factor": 2})["factor"] == 8.0
    with pytest.raises(GlmtuneError, match="dynamic"):
        rope_parameters({"rope_ratio": 4}, "chatglm2", {"type": "dynamic", "factor": 2})
    with pytest.raises(GlmtuneError, match="factor"):
        rope_parameters({}, "chatglm3", {"type": "yarn", "factor": 2})


def test_rope_scaling_kwarg_changes_long_positions(thudm, base):
    model = glmtune.load_model(thudm, rope_scaling={"type": "linear", "factor": 2.0})
    assert model.config.rope_parameters["rope_type"] == "linear"
    assert not torch.allclose(logits(model), logits(base))


def test_unknown_option_and_missing_weights(thudm, tmp_path):
    with pytest.raises(GlmtuneError, match="trust_remote_code"):
        glmtune.load_model(thudm, trust_remote_code=True)
    broken = write_thudm(tmp_path / "broken")
    sd = torch.load(broken / "pytorch_model.bin", weights_only=True)
    del sd["transformer.output_layer.weight"]
    torch.save(sd, broken / "pytorch_model.bin")
    with pytest.raises(GlmtuneError, match="lacks"):
        glmtune.load_model(broken)


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_reader_never_unpickles_objects(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    torch.save({"x": _Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(GlmtuneError, match="plain tensor checkpoint"):
        list(iter_checkpoint_tensors(tmp_path))


def test_reader_casts_and_reports_missing_shards(thudm, tmp_path):
    dtypes = {t.dtype for _, t in iter_checkpoint_tensors(thudm, torch.float32)}
    assert dtypes == {torch.float32}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"a": "gone.bin"}}))
    with pytest.raises(GlmtuneError, match="gone.bin"):
        list(iter_checkpoint_tensors(tmp_path))


def test_glm4_thudm_layout_multiplies_the_base():
    params = rope_parameters({"rope_ratio": 500, "_name_or_path": "THUDM/glm-4-9b-chat"}, "chatglm2")
    assert params["rope_type"] == "default" and params["rope_theta"] == 5_000_000.0
