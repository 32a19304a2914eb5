"""benchmarks/gpu_smoke.sh in its CPU tiny mode: trains, reloads and generates, prints the table, and
says which CUDA-only parts it replaced."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_smoke_tiny_on_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLMTUNE_CACHE": os.environ.get("GLMTUNE_CACHE", str(tmp_path / "cache")),
           "CUDA_VISIBLE_DEVICES": "", "GPU_SMOKE_METHODS": "lora,full", "PATH": os.environ["PATH"]}  # fmt: skip
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_smoke.sh"), "--tiny", "--steps", "2",
                           "--workdir", str(tmp_path / "work")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "method" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["lora", "full"], proc.stdout
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "2" and float(cells[2]) > 0 and float(cells[3]) > 0 and int(cells[7]) > 0, row
    assert "full: DeepSpeed ZeRO-3 needs CUDA; ran plain full fine-tuning on CPU instead" in proc.stdout
    assert (tmp_path / "work" / "out-lora" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "work" / "out-full" / "model.safetensors").is_file()
