"""``key=value`` overrides of a fast training run, shared by the training tests (a module of its own:
``from conftest import ...`` picks whichever conftest was imported first when directories are mixed)."""

from __future__ import annotations

from pathlib import Path


def base_overrides(model_dir: Path, data_file: Path, out: Path, **extra: object) -> list[str]:
    """key=value overrides of a fast CPU run on the tiny model (``extra`` may replace any, data included)."""
    values: dict[str, object] = {
        "model": str(model_dir), "data": str(data_file), "output_dir": str(out), "method": "full",
        "max_steps": 6, "batch_size": 4, "learning_rate": 3e-3, "logging_steps": 1, "save_steps": 100,
        "cutoff_len": 96, "precision": "fp32", "report_to": "[none]", "lr_scheduler": "constant",
    }  # fmt: skip
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]
