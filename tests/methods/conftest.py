"""Fixtures: a tiny ``GlmForCausalLM`` (the architecture ChatGLM2/3 load into), saved once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from methods_helpers import tiny_config


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved random tiny Glm model (for reloads and bitsandbytes quantisation)."""
    from transformers import GlmForCausalLM

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-glm")
    GlmForCausalLM(tiny_config()).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny(tiny_dir: Path) -> Any:
    """A fresh float32 copy of the tiny model, tagged as a mapped ChatGLM2 model."""
    from transformers import GlmForCausalLM

    model = GlmForCausalLM.from_pretrained(tiny_dir)
    model.config.glmtune = {"family": "chatglm2", "source_config": {"model_type": "chatglm"}}
    return model
