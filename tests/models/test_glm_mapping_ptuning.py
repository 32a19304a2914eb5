"""P-Tuning v2 on the mapped Glm model: official ptuning folders reproduce the d.* cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import glmtune  # noqa: E402
from glmtune.errors import GlmtuneError  # noqa: E402
from glmtune.models.glm_mapping.prefix import (  # noqa: E402
    enable_prefix,
    has_prefix,
    load_ptuning,
    prefix_parameters,
    save_ptuning,
)

ATOL = 1e-5


@pytest.fixture(scope="module", params=["chatglm2-tiny", "chatglm3-tiny"])
def ref(request, reference):
    root = reference / "models" / request.param
    model = load_ptuning(glmtune.load_model(root), root / "ptuning")
    cases = json.loads((root / "cases.json").read_text())["cases"]
    with np.load(root / "expected.npz") as npz:
        arrays = {k: torch.from_numpy(npz[k]) for k in npz.files}
    return root, model, cases, arrays


def test_prefix_model_type(ref):
    _, model, _, _ = ref
    assert has_prefix(model) and type(model).__name__ == "GlmForCausalLM"  # no class swap
    assert model.prefix_encoder.pre_seq_len == 4
    assert not model.prefix_encoder.training


def test_d_a_logits_and_loss(ref):
    _, model, cases, arr = ref
    with torch.no_grad():
        out = model(input_ids=arr["d.a.input_ids"], labels=arr["d.a.labels"])
    torch.testing.assert_close(out.logits, arr["d.a.logits"], atol=ATOL, rtol=0)
    assert abs(out.loss.item() - cases["d.a"]["loss"]) < ATOL


@pytest.mark.parametrize("case", ["d.c1", "d.c2"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_d_generation(ref, case, use_cache):
    _, model, cases, _ = ref
    spec = cases[case]
    inputs = {k: torch.tensor(v) for k, v in spec["inputs"].items()}
    with torch.no_grad():
        seq = model.generate(**inputs, **spec["generate_kwargs"], use_cache=use_cache)
    assert seq.tolist() == spec["sequences_use_cache_true"]


def test_save_ptuning_round_trip(ref, tmp_path):
    root, model, _, arr = ref
    out = save_ptuning(model, tmp_path / "pt")
    state = torch.load(out / "pytorch_model.bin", weights_only=True)
    assert list(state) == ["transformer.prefix_encoder.embedding.weight"]
    official = torch.load(root / "ptuning" / "pytorch_model.bin", weights_only=True)
    torch.testing.assert_close(state["transformer.prefix_encoder.embedding.weight"],
                               official["transformer.prefix_encoder.embedding.weight"], atol=0, rtol=0)
    assert json.loads((out / "config.json").read_text())["pre_seq_len"] == 4
    again = load_ptuning(glmtune.load_model(root), out)
    with torch.no_grad():
        logits = again(input_ids=arr["d.a.input_ids"]).logits
    torch.testing.assert_close(logits, arr["d.a.logits"], atol=ATOL, rtol=0)


def test_backward_changes_only_the_prefix(reference):
    model = glmtune.load_model(reference / "models" / "chatglm2-tiny")
    enable_prefix(model, pre_seq_len=3, prefix_projection=True, prefix_hidden_size=16)
    for p in model.parameters():
        p.requires_grad_(False)
    params = prefix_parameters(model)
    for p in params:
        p.requires_grad_(True)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()
    opt = torch.optim.SGD(params, lr=0.1)
    ids = torch.tensor([[1001, 1003, 857, 163, 812, 253, 966, 2]])
    mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1]])
    loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("prefix_encoder.") for k in changed)


def test_bad_ptuning_folder(reference, tmp_path):
    model = glmtune.load_model(reference / "models" / "chatglm2-tiny")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(GlmtuneError, match="pre_seq_len"):
        load_ptuning(model, tmp_path)


def test_static_cache_generation_equals_dynamic(ref):
    """The first forward into an empty static cache gets no mask from transformers (sdpa's is_causal
    then aligns queries with the first keys): the prefix mask must follow that, not the last keys."""
    _, model, cases, _ = ref
    spec = cases["d.c1"]
    inputs = {k: torch.tensor(v) for k, v in spec["inputs"].items()}
    with torch.no_grad():
        static = model.generate(**inputs, **spec["generate_kwargs"], cache_implementation="static")
    assert static.tolist() == spec["sequences_use_cache_true"]
