"""glmtune export --to chatglm for ChatGLM-6B (v1): THUDM v1 layout, LoRA merged in, same logits (fp32)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import glmtune  # noqa: E402
from glmtune.cli import main as cli  # noqa: E402
from glmtune.models.checkpoint_io import checkpoint_shapes  # noqa: E402

ROWS = [{"messages": [{"role": "user", "content": f"{i} 加 {i} 等于几？"},
                      {"role": "assistant", "content": f"{2 * i}"}]} for i in range(4)]


def test_v1_round_trip_keeps_the_thudm_layout(reference, tmp_path):
    root = reference / "models" / "chatglm-tiny"
    out = tmp_path / "v1"
    assert cli(["export", "--model", str(root), "--to", "chatglm", str(out), "--shard-size", "100KB"]) == 0
    with np.load(root / "expected.npz") as npz:
        ids, expected = torch.from_numpy(npz["a.input_ids"]), torch.from_numpy(npz["a.logits"])
    with torch.no_grad():
        got = glmtune.load_model(out)(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    # the original's key set and shapes: separate lm_head copy and rotary inv_freq buffers included
    shapes, original = checkpoint_shapes(out), checkpoint_shapes(root)
    assert {k: v[0] for k, v in shapes.items()} == {k: v[0] for k, v in original.items()}
    assert (out / "model.safetensors.index.json").is_file()
    from safetensors import safe_open

    want = torch.load(root / "pytorch_model.bin", weights_only=True)["transformer.layers.1.attention.rotary_emb.inv_freq"]
    weight_map = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    key = "transformer.layers.1.attention.rotary_emb.inv_freq"
    with safe_open(out / weight_map[key], "pt") as fh:
        assert torch.equal(fh.get_tensor(key), want)
    config, src = json.loads((out / "config.json").read_text()), json.loads((root / "config.json").read_text())
    assert "auto_map" not in config  # no code files in the folder for it to point at
    assert {k: v for k, v in config.items() if k not in ("transformers_version",)} == {
        k: v for k, v in src.items() if k not in ("auto_map", "transformers_version")}
    assert glmtune.detect_family(out) == "chatglm"


def test_v1_merged_export_has_the_adapted_logits(reference, tmp_path, capsys):
    base = reference / "checkpoints" / "chatglm-mini"
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    adapter = tmp_path / "lora"
    assert cli(["train", f"model={base}", "method=lora", f"data={data}", f"output_dir={adapter}", "max_steps=2",
                "batch_size=2", "cutoff_len=48", "report_to=[none]", "learning_rate=5e-1",
                "lora.target_modules=all-linear"]) == 0  # fmt: skip
    tok = glmtune.load_tokenizer(base)
    ids = torch.tensor([glmtune.build_chat_input(tok, [{"role": "user", "content": "3 加 3 等于几？"}])])
    with torch.no_grad():
        plain = glmtune.load_model(base, dtype="float32")(input_ids=ids).logits
        want = glmtune.load_model(base, adapter=adapter, dtype="float32")(input_ids=ids).logits
    assert (want - plain).abs().max() > 1e-3  # the adapter changes something worth merging
    out = tmp_path / "merged"
    assert cli(["export", "--model", str(base), "--adapter", str(adapter), "--to", "chatglm", str(out),
                "--dtype", "float32"]) == 0  # fmt: skip
    assert "merged LoRA" in capsys.readouterr().out
    with torch.no_grad():
        got = glmtune.load_model(out, dtype="float32")(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    # the tokenizer travels with it: same prompt ids from the exported folder
    assert glmtune.build_chat_input(glmtune.load_tokenizer(out), [{"role": "user", "content": "3 加 3 等于几？"}]) == (
        ids[0].tolist())
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "float32"
    assert (out / "ice_text.model").is_file() and (out / "tokenizer.json").is_file()  # slow + fast tokenizer
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == 130005


def test_v1_has_no_hf_layout(reference, tmp_path, capsys):
    code = cli(["export", "--model", str(reference / "models" / "chatglm-tiny"), "--to", "hf", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "no v1 architecture" in err and "--to chatglm" in err
    assert not (tmp_path / "o").exists()
