"""Linear RoPE scaling (LongChat-style condensed positions): factor F at position F*p == unscaled at p.

ChatGLM2/3 run on GlmForCausalLM; v1 has the same property tested in test_chatglm_v1_units.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import glmtune


@pytest.mark.parametrize("name", ["chatglm2-tiny", "chatglm3-tiny"])
@pytest.mark.parametrize("factor", [2.0, 4.0])
def test_linear_factor_at_scaled_positions_equals_unscaled(reference, name, factor):
    folder = reference / "models" / name
    ids = torch.tensor(np.load(folder / "expected.npz")["a.input_ids"])
    positions = torch.arange(ids.shape[1])[None]
    base = glmtune.load_model(folder)
    scaled = glmtune.load_model(folder, rope_scaling={"type": "linear", "factor": factor})
    with torch.no_grad():
        want = base(input_ids=ids, position_ids=positions).logits
        got = scaled(input_ids=ids, position_ids=(positions * factor).long()).logits
        plain = scaled(input_ids=ids, position_ids=positions).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert (plain - want).abs().max() > 1e-4  # the scaling really changes the model at unscaled positions
