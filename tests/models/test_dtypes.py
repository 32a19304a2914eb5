"""The load-dtype policy shared by every family (``glmtune.models.dtypes``)."""

from __future__ import annotations

import json

import pytest
import torch
from chatglm_v1_testutil import tiny_model

from glmtune.errors import GlmtuneError
from glmtune.models.dtypes import resolve_dtype, target_dtype


def test_none_is_float32_on_cpu_and_the_checkpoint_dtype_on_a_gpu():
    thudm = {"torch_dtype": "float16"}
    assert target_dtype(None, None, thudm) == torch.float32
    assert target_dtype(None, "cpu", thudm) == torch.float32
    assert target_dtype(None, {"": "cpu"}, thudm) == torch.float32
    for gpu in ("cuda", "cuda:1", 0, "auto", {"model": 0, "lm_head": "cpu"}):
        assert target_dtype(None, gpu, thudm) == torch.float16, gpu
    assert target_dtype(None, "cuda", {}) == torch.float32
    assert target_dtype("bf16", "cuda", thudm) == torch.bfloat16  # an explicit dtype wins


def test_checkpoint_dtype_as_transformers_5_writes_it(tmp_path):
    """save_pretrained (glmtune full/freeze outputs, export --to hf) writes "dtype", not "torch_dtype"."""
    tiny_model().to(torch.bfloat16).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert "torch_dtype" not in config
    assert target_dtype(None, "cuda", config) == torch.bfloat16


def test_resolve_dtype_spellings():
    assert resolve_dtype("fp16") == resolve_dtype("half") == torch.float16
    assert resolve_dtype("BF16") == torch.bfloat16
    assert resolve_dtype(None) == torch.float32
    want = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    assert resolve_dtype("auto") == want
    with pytest.raises(GlmtuneError, match="unknown dtype 'int8'"):
        resolve_dtype("int8")
