"""ChatGLM2/3 tiny reference models on transformers' GlmForCausalLM: logits, loss, greedy generation.

Each reference folder is loaded once per module; the sharded/safetensors copies of chatglm2-tiny are
checked against chatglm2-tiny's cases. generate(use_cache=False) must equal the cached ids (the
original ChatGLM2 did not: see the MANIFEST's use_cache note).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from transformers import GlmForCausalLM  # noqa: E402

import glmtune  # noqa: E402

# (folder, folder holding cases.json/expected.npz)
MODELS = [
    ("chatglm2-tiny", "chatglm2-tiny"),
    ("chatglm2-tiny-sharded", "chatglm2-tiny"),
    ("chatglm2-tiny-safetensors", "chatglm2-tiny"),
    ("chatglm3-tiny", "chatglm3-tiny"),
    ("chatglm3-tiny-rope50", "chatglm3-tiny-rope50"),
]
ATOL = 1e-5


class Ref:
    def __init__(self, reference, name: str, cases_from: str) -> None:
        root = reference / "models"
        self.model = glmtune.load_model(root / name)
        self.cases = json.loads((root / cases_from / "cases.json").read_text())["cases"]
        with np.load(root / cases_from / "expected.npz") as npz:
            self.npz = {k: npz[k] for k in npz.files}

    def t(self, key: str):
        return torch.from_numpy(self.npz[key])


@pytest.fixture(scope="module", params=MODELS, ids=[m[0] for m in MODELS])
def ref(request, reference):
    return Ref(reference, *request.param)


def test_is_plain_glm_in_float32(ref):
    assert type(ref.model) is GlmForCausalLM
    assert ref.model.dtype == torch.float32
    assert not ref.model.training


def test_case_a_logits_and_loss(ref):
    with torch.no_grad():
        out = ref.model(input_ids=ref.t("a.input_ids"), labels=ref.t("a.labels"))
    torch.testing.assert_close(out.logits, ref.t("a.logits"), atol=ATOL, rtol=0)
    assert abs(out.loss.item() - float(ref.npz["a.loss"])) < ATOL
    assert abs(out.loss.item() - ref.cases["a"]["loss"]) < ATOL


def test_case_b_left_padded_batch(ref):
    if "b" not in ref.cases:
        pytest.skip("case b is not recorded for this model")
    with torch.no_grad():
        out = ref.model(input_ids=ref.t("b.input_ids"), attention_mask=ref.t("b.attention_mask"),
                        position_ids=ref.t("b.position_ids"))
    valid = ref.t("b.valid")
    torch.testing.assert_close(out.logits[valid], ref.t("b.logits")[valid], atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", ["c1", "c2"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation(ref, case, use_cache):
    if case not in ref.cases:
        pytest.skip(f"case {case} is not recorded for this model")
    spec = ref.cases[case]
    inputs = {k: torch.tensor(v) for k, v in spec["inputs"].items()}
    with torch.no_grad():
        seq = ref.model.generate(**inputs, **spec["generate_kwargs"], use_cache=use_cache)
    assert seq.tolist() == spec["sequences_use_cache_true"]
    assert seq.tolist() == spec["sequences_full_forward_no_cache"]


def test_generation_scores_match(ref):
    spec = ref.cases["c1"]
    inputs = {k: torch.tensor(v) for k, v in spec["inputs"].items()}
    with torch.no_grad():
        out = ref.model.generate(**inputs, **spec["generate_kwargs"], output_scores=True, return_dict_in_generate=True)
    scores = torch.stack(out.scores, dim=1)
    torch.testing.assert_close(scores, ref.t("c1.scores"), atol=ATOL, rtol=0)
