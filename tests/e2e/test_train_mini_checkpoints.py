"""The reference mini checkpoints (real configs + tokenizer files, fp16 shards, laid out as downloaded)
used as a user's model: `glmtune train` through the CLI, then base + saved adapter reloaded."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoTokenizer

import glmtune
from glmtune.cli import main as cli

RUN = ["max_steps=2", "batch_size=8", "logging_steps=1", "save_steps=100", "cutoff_len=48",
       "val_size=0", "report_to=[none]", "sample_prompts=[]", "learning_rate=5e-2"]
ROWS = [{"messages": [{"role": "user", "content": f"{i} 加 {i} 等于几？"},
                      {"role": "assistant", "content": f"{2 * i}"}]} for i in range(8)]


def base_loss(base_dir, model) -> float:
    """The base model's loss on the one batch of step 1 (every row: the order cannot matter)."""
    from glmtune.data.collate import make_collator

    tok = glmtune.load_tokenizer(base_dir)
    examples = [glmtune.encode(tok, row["messages"], cutoff_len=48) for row in ROWS]
    with torch.no_grad():
        return model(**make_collator(tok)(examples)).loss.item()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "method", "extra", "saved"),
    [
        ("chatglm-mini", "lora", [], "adapter_model.safetensors"),
        ("chatglm2-mini", "freeze", ["freeze.trainable_layers=1"], "model.safetensors"),
        ("chatglm3-mini", "ptuning", ["ptuning.pre_seq_len=4"], "pytorch_model.bin"),
    ],
)
def test_train_then_reload_adapter(reference, tmp_path, name, method, extra, saved):
    base_dir = reference / "checkpoints" / name
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["train", f"model={base_dir}", f"method={method}", f"data={data}", f"output_dir={out}"]
    assert cli([*argv, *RUN, *extra]) == 0
    assert (out / saved).is_file() and (out / "loss.png").is_file()
    losses = [json.loads(x)["loss"] for x in (out / "train_log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    base = glmtune.load_model(base_dir)
    if method != "ptuning":  # LoRA starts at B = 0 and freeze at the base: step 1 is the base model's loss
        assert losses[0] == pytest.approx(base_loss(base_dir, base), abs=1e-4)
    else:  # a random prefix: the loss differs from the base model's, and training lowers it
        assert abs(losses[0] - base_loss(base_dir, base)) > 1e-3 and losses[1] < losses[0]

    tok = glmtune.load_tokenizer(out)
    ids = torch.tensor([glmtune.build_chat_input(tok, [{"role": "user", "content": "3 加 3 等于几？"}])])
    plain = AutoTokenizer.from_pretrained(out)  # the fast tokenizer + chat template written with the output
    chat = plain.apply_chat_template([{"role": "user", "content": "3 加 3 等于几？"}], add_generation_prompt=True,
                                     tokenize=True, return_dict=True)["input_ids"]
    assert chat == ids[0].tolist() and type(tok).__name__.startswith("ChatGLM")
    stops = json.loads((out / "generation_config.json").read_text())["eos_token_id"]
    assert stops == {"chatglm-mini": 130005, "chatglm2-mini": 2, "chatglm3-mini": [2, 64795, 64797]}[name]
    tuned = glmtune.load_model(out) if method == "freeze" else glmtune.load_model(base_dir, adapter=out)
    with torch.no_grad():
        a, b = base(input_ids=ids).logits, tuned(input_ids=ids).logits
    assert torch.isfinite(b).all() and (a - b).abs().max() > 1e-4  # the trained weights are really applied


def test_qlora_checkpoints_by_default_and_says_so(reference, tmp_path, caplog):
    """QLoRA through the CLI: gradient checkpointing on when unset, in the log and in the saved config;
    an explicit false is kept. The 4-bit layers are bitsandbytes' (it runs them on CPU)."""
    pytest.importorskip("bitsandbytes")
    import logging

    import yaml

    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n", encoding="utf-8")
    base = reference / "checkpoints" / "chatglm3-mini"
    for extra, expected in (([], True), (["gradient_checkpointing=false"], False)):
        out = tmp_path / f"out-{expected}"
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="glmtune.train"):
            argv = ["train", f"model={base}", "method=qlora", f"data={data}", f"output_dir={out}"]
            assert cli([*argv, *RUN, "learning_rate=1e-3", *extra]) == 0
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("method qlora")]
        assert said and ("gradient checkpointing on" in said[0]) is expected, said
        saved = yaml.safe_load((out / "glmtune_train_config.yaml").read_text(encoding="utf-8"))
        assert saved["gradient_checkpointing"] is expected
        assert (out / "adapter_model.safetensors").is_file()
