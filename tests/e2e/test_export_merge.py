"""glmtune export --adapter: LoRA merged into plain weights, same logits as base + adapter (fp32)."""

from __future__ import annotations

import json

import pytest
import torch

import glmtune
from glmtune.cli import main as cli

ROWS = [{"messages": [{"role": "user", "content": f"{i} 加 {i} 等于几？"},
                      {"role": "assistant", "content": f"{2 * i}"}]} for i in range(4)]


def train(reference, name, method, tmp_path, *extra):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    out = tmp_path / f"{name}-{method}"
    assert cli(["train", f"model={reference / 'checkpoints' / name}", f"method={method}", f"data={data}",
                f"output_dir={out}", "max_steps=2", "batch_size=2", "cutoff_len=48", "report_to=[none]",
                "learning_rate=5e-1", *extra]) == 0  # fmt: skip
    return out


@pytest.mark.parametrize("name", ["chatglm2-mini", "chatglm3-mini"])
def test_merged_export_has_the_adapted_logits(reference, tmp_path, name, capsys):
    from transformers import AutoModelForCausalLM

    base = reference / "checkpoints" / name
    adapter = train(reference, name, "lora", tmp_path, "lora.target_modules=all-linear")
    tok = glmtune.load_tokenizer(base)
    ids = torch.tensor([glmtune.build_chat_input(tok, [{"role": "user", "content": "3 加 3 等于几？"}])])
    with torch.no_grad():
        plain = glmtune.load_model(base, dtype="float32")(input_ids=ids).logits
        want = glmtune.load_model(base, adapter=adapter, dtype="float32")(input_ids=ids).logits
    assert (want - plain).abs().max() > 1e-3  # the adapter changes something worth merging
    for layout in ("hf", "chatglm"):
        out = tmp_path / f"merged-{layout}"
        assert cli(["export", "--model", str(base), "--adapter", str(adapter), "--to", layout, str(out),
                    "--dtype", "float32"]) == 0  # fmt: skip
        assert "merged LoRA" in capsys.readouterr().out
        with torch.no_grad():
            got = glmtune.load_model(out, dtype="float32")(input_ids=ids).logits
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    with torch.no_grad():  # plain transformers, no glmtune code involved in the model
        hf = AutoModelForCausalLM.from_pretrained(tmp_path / "merged-hf", dtype=torch.float32)(input_ids=ids).logits
    torch.testing.assert_close(hf, want, atol=1e-4, rtol=0)


def test_a_ptuning_prefix_cannot_be_merged(reference, tmp_path, capsys):
    adapter = train(reference, "chatglm2-mini", "ptuning", tmp_path, "ptuning.pre_seq_len=4")
    code = cli(["export", "--model", str(reference / "checkpoints" / "chatglm2-mini"), "--adapter", str(adapter),
                "--to", "hf", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "cannot be merged into plain weights" in err and "glmtune serve" in err
