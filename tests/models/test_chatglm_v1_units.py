"""ChatGLM-6B (v1) on tiny random configs: save/reload, dtypes, 4-bit, checkpointing, packing, RoPE scaling."""

from __future__ import annotations

import pytest
import torch
from chatglm_v1_testutil import BOS, GMASK, PAD, sample, tiny_model

import glmtune
from glmtune.errors import GlmtuneError
from glmtune.models.cache_names import CACHE_FIELD
from glmtune.models.chatglm_v1.configuration import ChatGLMV1Config
from glmtune.models.chatglm_v1.masks import masks_and_positions, packed_inputs
from glmtune.models.chatglm_v1.modeling import ChatGLMV1ForCausalLM


def _logits(model, ids, **kw):
    with torch.no_grad():
        return model(input_ids=ids, **kw).logits


def test_save_reload_same_logits(tmp_path):
    model = tiny_model()
    ids = torch.tensor([sample(6, 4)])
    model.save_pretrained(tmp_path / "m")
    for again in (glmtune.load_model(tmp_path / "m"), ChatGLMV1ForCausalLM.from_pretrained(tmp_path / "m")):
        assert again.lm_head.weight is again.transformer.word_embeddings.weight
        torch.testing.assert_close(_logits(again, ids), _logits(model, ids), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_load(tmp_path, dtype):
    tiny_model().save_pretrained(tmp_path / "m")
    model = glmtune.load_model(tmp_path / "m", dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {dtype}
    ids = torch.tensor([sample(5, 3)])
    logits = _logits(model, ids)
    assert logits.dtype == dtype
    # exactly the in-memory model cast to dtype, and close to float32 (logits here reach ~8)
    torch.testing.assert_close(logits, _logits(tiny_model().to(dtype), ids), atol=0, rtol=0)
    assert (logits.float() - _logits(tiny_model(), ids)).abs().max() < 0.2


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_stored_tied_lm_head_ends_tied(tmp_path, fmt):
    """THUDM v1 files store the tied lm_head.weight too: after from_pretrained it is the embedding again."""
    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    for stale in tmp_path.glob("m/model*.safetensors"):
        stale.unlink()
    state = {k: v.clone() for k, v in model.state_dict().items()}  # THUDM layout: lm_head stored too
    assert "lm_head.weight" in state
    if fmt == "bin":
        torch.save(state, tmp_path / "m" / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file(state, str(tmp_path / "m" / "model.safetensors"))
    again = glmtune.load_model(tmp_path / "m", dtype=torch.bfloat16)
    assert again.lm_head.weight is again.transformer.word_embeddings.weight
    ids = torch.tensor([sample(6, 4)])
    torch.testing.assert_close(_logits(again, ids), _logits(model.to(torch.bfloat16), ids), atol=0, rtol=0)


def test_4bit_load_runs_forward(tmp_path):
    pytest.importorskip("bitsandbytes")
    tiny_model().save_pretrained(tmp_path / "m")
    model = glmtune.load_model(tmp_path / "m", quantization="4bit")
    assert "Linear4bit" in type(model.transformer.layers[0].attention.query_key_value).__name__
    assert isinstance(model.lm_head, torch.nn.Linear)
    assert model.lm_head.weight is model.transformer.word_embeddings.weight  # tied, unquantised
    ids = torch.tensor([sample(5, 3)])
    quantized, full = _logits(model, ids).float(), _logits(tiny_model(), ids)
    assert torch.isfinite(quantized).all()
    assert torch.corrcoef(torch.stack([quantized.flatten(), full.flatten()]))[0, 1] > 0.9  # NF4 error, same model


def test_unsupported_fields_are_refused():
    with pytest.raises(GlmtuneError, match="quantization_bit"):
        ChatGLMV1Config(quantization_bit=4)
    with pytest.raises(GlmtuneError, match="position_encoding_2d"):
        ChatGLMV1Config(position_encoding_2d=False)
    with pytest.raises(GlmtuneError, match="rope_scaling"):
        ChatGLMV1Config(rope_scaling={"type": "yarn", "factor": 2})


def test_gradient_checkpointing_same_gradients():
    model = tiny_model().train()
    ids = torch.tensor([sample(6, 4), sample(6, 4, seed=1)])
    labels = ids.clone()
    grads = []
    for enabled in (False, True):
        if enabled:
            model.activation_checkpointing_enable()
        model.zero_grad()
        model(input_ids=ids, labels=labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert model.transformer.layers[0].gradient_checkpointing
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_left_padding_matches_unpadded():
    model = tiny_model()
    seqs = [sample(3, 2), sample(7, 3, seed=1)]
    width = max(map(len, seqs))
    ids = torch.tensor([[PAD] * (width - len(s)) + s for s in seqs])
    mask = (torch.arange(width)[None] >= torch.tensor([[width - len(s)] for s in seqs])).long()
    padded = _logits(model, ids, attention_mask=mask)
    assert torch.isfinite(padded).all()
    for row, seq in enumerate(seqs):
        alone = _logits(model, torch.tensor([seq]))[0]
        torch.testing.assert_close(padded[row, width - len(seq):], alone, atol=1e-5, rtol=0)


def test_eager_and_sdpa_agree_and_cache_matches_full_forward():
    model = tiny_model()
    ids = torch.tensor([sample(5, 4)])
    sdpa = _logits(model, ids)
    model.config._attn_implementation = "eager"
    torch.testing.assert_close(_logits(model, ids), sdpa, atol=1e-5, rtol=0)
    model.config._attn_implementation = "sdpa"
    with torch.no_grad():
        first = model(input_ids=ids[:, :-2], use_cache=True)
        _, positions = masks_and_positions(ids, model.config)
        step = model(input_ids=ids[:, -2:], cache=first[CACHE_FIELD],
                     position_ids=positions[..., -2:], use_cache=True)
    torch.testing.assert_close(step.logits, sdpa[:, -2:], atol=1e-5, rtol=0)
    with torch.no_grad():  # without position_ids: generated tokens continue the cached positions
        first = model(input_ids=ids[:, :-2], use_cache=True)
        step = model(input_ids=ids[:, -2:], cache=first[CACHE_FIELD], use_cache=True)
    torch.testing.assert_close(step.logits, sdpa[:, -2:], atol=1e-5, rtol=0)


def test_packed_row_equals_unpacked():
    model = tiny_model()
    examples = [sample(4, 3), sample(6, 2, seed=1), sample(2, 5, seed=2)]
    ids, mask, positions = packed_inputs(examples, model.config, length=30)
    packed = _logits(model, ids, attention_mask=mask, position_ids=positions)
    start = 0
    for example in examples:
        alone = _logits(model, torch.tensor([example]))[0]
        torch.testing.assert_close(packed[0, start:start + len(example)], alone, atol=1e-5, rtol=0)
        start += len(example)
    assert torch.isfinite(packed).all()


def test_linear_rope_scaling_at_scaled_positions():
    plain, scaled = tiny_model(), tiny_model(rope_scaling={"type": "linear", "factor": 4.0})
    ids = torch.tensor([sample(5, 3)])
    _, positions = masks_and_positions(ids, plain.config)
    torch.testing.assert_close(_logits(scaled, ids, position_ids=positions * 4), _logits(plain, ids, position_ids=positions),
                               atol=1e-5, rtol=0)
    assert not torch.allclose(_logits(scaled, ids), _logits(plain, ids), atol=1e-3)


def test_dynamic_rope_scaling_only_beyond_max_length():
    plain, dynamic = tiny_model(), tiny_model(rope_scaling={"type": "dynamic", "factor": 2.0})
    short = torch.tensor([sample(5, 3)])
    torch.testing.assert_close(_logits(dynamic, short), _logits(plain, short), atol=0, rtol=0)
    long = torch.tensor([sample(70, 3)])  # beyond max_sequence_length=64
    assert not torch.allclose(_logits(dynamic, long), _logits(plain, long), atol=1e-3)


def test_positions_without_sop_or_mask_token():
    config = tiny_model().config
    mask, pos = masks_and_positions(torch.tensor([[7, 8, 9]]), config)
    assert not mask.any() and pos[0, 0].tolist() == [0, 1, 2] and pos[0, 1].tolist() == [0, 0, 0]
    _, pos = masks_and_positions(torch.tensor([[7, 8, GMASK, 9, BOS, 10]]), config)
    assert pos[0].tolist() == [[0, 1, 2, 3, 2, 2], [0, 0, 0, 0, 1, 2]]


def test_thudm_v1_folder_reads_as_our_config_without_a_type_warning(reference, monkeypatch):
    """peft re-reads the base folder's config on every adapter save: a THUDM ``"model_type": "chatglm"``
    folder must read as this config, silently (transformers warns on a model type mismatch)."""
    import transformers.configuration_utils as config_utils

    said: list[str] = []
    monkeypatch.setattr(config_utils.logger, "warning", lambda msg, *a, **k: said.append(str(msg)))
    config = ChatGLMV1Config.from_pretrained(reference / "checkpoints" / "chatglm-mini")
    assert config.model_type == "glmtune_chatglm_v1" and config.num_layers == 2 and config.hidden_size == 64
    assert not [m for m in said if "model of type" in m]
    chatglm2 = ChatGLMV1Config.get_config_dict(str(reference / "checkpoints" / "chatglm2-mini"))[0]
    assert chatglm2["model_type"] == "chatglm"  # ChatGLM2/3 folders are not taken for v1
