"""Fixtures for the training tests: the built-in tiny ChatGLM2 in a per-session cache, small data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from train_overrides import base_overrides

REPO = Path(__file__).resolve().parents[2]
ALPACA = REPO / "examples" / "data" / "alpaca_bilingual.json"


@pytest.fixture(scope="session")
def glmtune_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = os.environ.get("GLMTUNE_CACHE") or str(tmp_path_factory.mktemp("glmtune-cache"))
    os.environ["GLMTUNE_CACHE"] = cache
    return Path(cache)


@pytest.fixture(scope="session")
def tiny_model(glmtune_cache: Path) -> Path:
    from glmtune.models.tiny import builtin_path

    return builtin_path("tiny-chatglm2")


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 alpaca rows as a raw alpaca JSON file (the runner converts it on the fly)."""
    rows = json.loads(ALPACA.read_text(encoding="utf-8"))[:64]
    path = tmp_path_factory.mktemp("data") / "small.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def make_cfg(tiny_model: Path, small_data: Path, tmp_path: Path):
    """``make_cfg(out_name, key=value...)`` -> a validated TrainConfig of a fast tiny run."""
    from glmtune.config import load_config
    from glmtune.train.config import TrainConfig

    def make(out: str = "run", **extra: object) -> TrainConfig:
        return load_config(TrainConfig, None, base_overrides(tiny_model, small_data, tmp_path / out, **extra))

    return make
