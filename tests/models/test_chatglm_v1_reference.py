"""ChatGLM-6B (v1) against the THUDM reference vectors: tiny models (cases a, b, c1, c2, d.*) and mini checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from chatglm_v1_testutil import v1_folders

import glmtune
from glmtune.models.chatglm_v1.masks import masks_and_positions
from glmtune.models.chatglm_v1.prefix import load_ptuning

ATOL = 1e-4  # the MANIFEST's tolerance for v1 logits (large activations)


def _t(z: np.lib.npyio.NpzFile, key: str) -> torch.Tensor:
    return torch.from_numpy(z[key])


@pytest.fixture(scope="module")
def tiny(reference):
    folders = v1_folders(reference / "models")
    assert folders, "no ChatGLM-6B tiny model in the reference"
    return [(f, glmtune.load_model(f), np.load(f / "expected.npz")) for f in folders]


def _case_a(model, z, prefix=""):
    ids, labels = _t(z, prefix + "a.input_ids"), _t(z, prefix + "a.labels")
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
    torch.testing.assert_close(out.logits, _t(z, prefix + "a.logits"), atol=ATOL, rtol=0)
    assert abs(out.loss.item() - float(z[prefix + "a.loss"])) < 1e-5
    mask, pos = masks_and_positions(ids, model.config)
    assert torch.equal(mask, _t(z, prefix + "a.attention_mask_computed"))
    assert torch.equal(pos, _t(z, prefix + "a.position_ids_computed"))


def _case_c(model, z, case):
    ids = _t(z, case + ".input_ids")
    expected = _t(z, case + ".sequences")
    styles = [{"attention_mask": (ids != model.config.pad_token_id).long()}]
    if case + ".attention_mask" in z:  # the v1 tokenizer's own 4-D mask and 2-D positions
        styles.append({"attention_mask": _t(z, case + ".attention_mask"),
                       "position_ids": _t(z, case + ".position_ids")})
    for style in styles:
        for use_cache in (True, False):
            out = model.generate(ids, max_new_tokens=12, do_sample=False, num_beams=1, use_cache=use_cache,
                                 output_scores=True, return_dict_in_generate=True, **style)
            assert torch.equal(out.sequences, expected), (case, use_cache, sorted(style))
            torch.testing.assert_close(torch.stack(out.scores, 1), _t(z, case + ".scores"), atol=ATOL, rtol=0)


def test_case_a_logits_loss_masks(tiny):
    for _, model, z in tiny:
        _case_a(model, z)


def test_case_a_eager_path(reference):
    for folder in v1_folders(reference / "models"):
        model = glmtune.load_model(folder, attn_implementation="eager")
        _case_a(model, np.load(folder / "expected.npz"))


def test_case_b_left_padded(tiny):
    for _, model, z in tiny:
        ids, valid = _t(z, "b.input_ids"), _t(z, "b.valid")
        with torch.no_grad():
            four_d = model(input_ids=ids, attention_mask=_t(z, "b.attention_mask"),
                           position_ids=_t(z, "b.position_ids")).logits
            two_d = model(input_ids=ids, attention_mask=(ids != model.config.pad_token_id).long()).logits
        expected = _t(z, "b.logits")
        for logits in (four_d, two_d):
            assert torch.isfinite(logits).all()
            torch.testing.assert_close(logits[valid], expected[valid], atol=ATOL, rtol=0)
        mask, pos = masks_and_positions(ids, model.config, (ids != model.config.pad_token_id).long())
        assert torch.equal(mask, _t(z, "b.attention_mask")) and torch.equal(pos, _t(z, "b.position_ids"))


@pytest.mark.parametrize("case", ["c1", "c2"])
def test_greedy_generation(tiny, case):
    for _, model, z in tiny:
        _case_c(model, z, case)


def test_ptuning_cases(tiny):
    for folder, _, z in tiny:
        model = load_ptuning(glmtune.load_model(folder), folder / "ptuning")
        _case_a(model, z, prefix="d.")
        _case_c(model, z, "d.c1")
        _case_c(model, z, "d.c2")


def test_mini_checkpoints(reference):
    folders = v1_folders(reference / "checkpoints")
    assert folders, "no ChatGLM-6B mini checkpoint in the reference"
    for folder in folders:
        expected = json.loads(folder.with_name(folder.name + ".expected.json").read_text(encoding="utf-8"))
        model = glmtune.load_model(folder)
        assert model.dtype == torch.float32
        last = expected["last_position_logits"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([last["input_ids"]])).logits[0, -1]
        torch.testing.assert_close(logits, torch.tensor(last["logits"], dtype=torch.float32), atol=ATOL, rtol=0)
        for chat in expected["chat"]:
            out = model.generate(torch.tensor([chat["prompt_input_ids"]]), max_length=chat["max_length"],
                                 do_sample=False, num_beams=1)
            assert out[0].tolist() == chat["output_ids"], chat["name"]
        for row in expected["training_loss"]:
            with torch.no_grad():
                loss = model(input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]])).loss
            assert abs(loss.item() - row["loss"]) < 1e-5, row["id"]
