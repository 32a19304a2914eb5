"""``torchrun --nproc_per_node 2 -m glmtune train`` on CPU (gloo): both ranks train, rank 0 writes once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path: Path) -> None:
    rows = json.loads((REPO / "examples" / "data" / "alpaca_bilingual.json").read_text(encoding="utf-8"))[:32]
    data = tmp_path / "small.json"
    data.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLMTUNE_CACHE": os.environ.get("GLMTUNE_CACHE", str(tmp_path / "cache")),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # fmt: skip
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "glmtune", "train", str(REPO / "examples" / "quickstart.yaml"),
        f"data={data}", f"output_dir={out}", "max_steps=4", "batch_size=2", "logging_steps=1",
        "save_steps=2", "eval_steps=4", "val_size=4", "eval_before=false", "sample_prompts=[]",
        "report_to=[none]", "num_proc=1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "model.safetensors").is_file() and (out / "loss.png").is_file()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]  # save_total_limit 1
    assert (out / "checkpoint-4" / "rng_state_0.pth").is_file() and (out / "checkpoint-4" / "rng_state_1.pth").is_file()
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]  # written once, by rank 0
    assert proc.stdout.count("done: 4 steps") == 2  # both ranks finished
    assert not list(out.glob(".tmp-*"))
