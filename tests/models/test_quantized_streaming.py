"""4/8-bit loading (``from_pretrained`` of the THUDM folder with ``quantization_config``): bit-identical
to transformers' bitsandbytes load of the same weights handed over as one state dict
(``from_pretrained(None, state_dict=..., quantization_config=...)``), and the float weights pass
through one at a time instead of as a whole mapped state dict."""

from __future__ import annotations

import weakref

import pytest
import torch
from chatglm_v1_testutil import sample, tiny_model
from test_glm_mapping_units import IDS, write_thudm

import glmtune
from glmtune.models.quantization import bnb_config, fix_cpu_4bit

pytest.importorskip("bitsandbytes")

QUANT = pytest.mark.parametrize("quantization,dtype", [
    ("4bit", torch.float32), ("4bit", torch.bfloat16), ("8bit", torch.float32), ("8bit", torch.float16)])


def reference(base, cls, quantization, dtype, drop=()):
    """The weights of ``base`` quantised the pre-streaming way: the whole state dict handed to transformers."""
    state = {k: v for k, v in base.state_dict().items() if k not in drop}
    model = cls.from_pretrained(None, config=base.config, state_dict=state, dtype=dtype, device_map="cpu",
                                quantization_config=bnb_config(quantization, dtype))
    return fix_cpu_4bit(model).eval()


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


@pytest.fixture(scope="module")
def thudm(tmp_path_factory):
    return write_thudm(tmp_path_factory.mktemp("thudm-q") / "ckpt")


@QUANT
def test_glm_mapping_matches_transformers_quantization(thudm, quantization, dtype):
    from transformers import GlmForCausalLM

    ref = reference(glmtune.load_model(thudm, dtype=dtype), GlmForCausalLM, quantization, dtype)
    model = glmtune.load_model(thudm, dtype=dtype, quantization=quantization)
    assert not any(p.is_meta for p in model.parameters())
    assert [type(m).__name__ for m in model.modules()] == [type(m).__name__ for m in ref.modules()]
    assert model.is_quantized and getattr(model, f"is_loaded_in_{quantization}")
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters(), strict=True):
        assert type(p) is type(q) and p.dtype == q.dtype and torch.equal(p.data, q.data), name
    torch.testing.assert_close(logits(model, IDS), logits(ref, IDS), atol=1e-6, rtol=0)


@QUANT
def test_chatglm_v1_matches_transformers_quantization(tmp_path, quantization, dtype):
    from glmtune.models.chatglm_v1.modeling import ChatGLMV1ForCausalLM

    tiny_model().save_pretrained(tmp_path / "m")
    base = glmtune.load_model(tmp_path / "m", dtype=dtype)
    ref = reference(base, ChatGLMV1ForCausalLM, quantization, dtype, drop={"lm_head.weight"})
    model = glmtune.load_model(tmp_path / "m", dtype=dtype, quantization=quantization)
    assert model.lm_head.weight is model.transformer.word_embeddings.weight
    assert [type(m).__name__ for m in model.modules()] == [type(m).__name__ for m in ref.modules()]
    ids = torch.tensor([sample(5, 3)])
    torch.testing.assert_close(logits(model, ids), logits(ref, ids), atol=1e-6, rtol=0)


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_float_weights_stream_through_one_at_a_time(tmp_path, monkeypatch, quantization):
    """At most the unquantised weights (embedding, output layer, norms) plus about one tensor are alive:
    a whole mapped state dict would hold every float weight at once (the whole model in the load dtype).
    Counted where transformers' loader materialises each checkpoint tensor in the load dtype."""
    from transformers import core_model_loading as cml

    folder = write_thudm(tmp_path / "ckpt", {"hidden_size": 256, "ffn_hidden_size": 512, "kv_channels": 64,
                                              "num_layers": 6, "padded_vocab_size": 256})
    alive, stats = [0], {"peak": 0, "total": 0, "largest": 0}
    real = cml._materialize_copy

    def counted(*args, **kwargs):
        tensor = real(*args, **kwargs)
        if tensor.is_floating_point():
            size = tensor.numel() * tensor.element_size()
            alive[0] += size
            stats["total"] += size
            stats["largest"] = max(stats["largest"], size)
            stats["peak"] = max(stats["peak"], alive[0])
            weakref.finalize(tensor, lambda s=size: alive.__setitem__(0, alive[0] - s))
        return tensor

    monkeypatch.setattr(cml, "_materialize_copy", counted)
    model = glmtune.load_model(folder, quantization=quantization)
    kept = sum(p.numel() * p.element_size() for p in model.parameters() if type(p) is torch.nn.Parameter)
    assert stats["total"] > 10_000_000  # float32 copies of a ~3.5M-parameter checkpoint
    assert stats["peak"] <= kept + 2 * stats["largest"] < 0.3 * stats["total"], stats
