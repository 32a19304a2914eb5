"""packing=true through the real CLI on every ChatGLM generation: it trains (it crashed at step 1 on
ChatGLM2/3), counts tokens/s, and step 1's loss equals the unpacked run's on the same examples."""

from __future__ import annotations

import json

import pytest

from glmtune.cli import main as cli

ROWS = [{"messages": [{"role": "user", "content": f"{i} 加 {i} 等于几？"},
                      {"role": "assistant", "content": f"{2 * i}"}]} for i in range(8)]


@pytest.mark.parametrize("name", ["chatglm-mini", "chatglm2-mini", "chatglm3-mini"])
def test_packed_training_matches_unpacked_step_one(reference, tmp_path, name):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    logs = {}
    for packing in ("false", "true"):
        out = tmp_path / f"out-{packing}"
        # batch 8: every example is in step 1 either way (LoRA starts at B = 0: the base model's loss)
        assert cli(["train", f"model={reference / 'checkpoints' / name}", "method=lora", f"data={data}",
                    f"output_dir={out}", "max_steps=2", "batch_size=8", "logging_steps=1", "cutoff_len=64",
                    "report_to=[none]", f"packing={packing}"]) == 0  # fmt: skip
        logs[packing] = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert [r["step"] for r in logs["true"]] == [1, 2] and all(r["tokens_per_s"] > 0 for r in logs["true"])
    assert logs["true"][0]["loss"] == pytest.approx(logs["false"][0]["loss"], abs=2e-4)
