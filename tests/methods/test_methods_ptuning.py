"""P-Tuning v2: only the prefix trains, the official layout round-trips, official folders reproduce d.*."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from methods_helpers import changed, logits, make_cfg, snapshot, train_step

from glmtune.errors import ConfigError, GlmtuneError
from glmtune.methods import PTuningConfig, get_method
from glmtune.methods.adapters import adapter_kind, attach_adapter

PREFIX_KEY = "transformer.prefix_encoder.embedding.weight"


@pytest.mark.parametrize("projection", [False, True])
def test_step_changes_only_the_prefix(tiny, projection: bool) -> None:
    method = get_method("ptuning")
    cfg = make_cfg("ptuning", ptuning=PTuningConfig(pre_seq_len=4, prefix_projection=projection))
    model = method.apply(tiny, cfg)
    before = snapshot(model)
    assert torch.isfinite(torch.tensor(train_step(model)))
    moved = changed(before, snapshot(model))
    assert moved and all(n.startswith("prefix_encoder.") for n in moved)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n in before if n.startswith("prefix_encoder.")}


def test_gradient_checkpointing_is_supported(tiny_dir: Path) -> None:
    from transformers import GlmForCausalLM

    losses = []
    for checkpointing in (False, True):
        model = GlmForCausalLM.from_pretrained(tiny_dir)
        model.config.glmtune = {"family": "chatglm2"}
        torch.manual_seed(0)
        model = get_method("ptuning").apply(model, make_cfg("ptuning", gradient_checkpointing=checkpointing))
        assert model.model.gradient_checkpointing is checkpointing
        before = snapshot(model)
        torch.manual_seed(1)
        losses.append(train_step(model))
        assert changed(before, snapshot(model)) == {"prefix_encoder.embedding.weight"}
    assert abs(losses[0] - losses[1]) < 1e-6


def test_save_is_the_official_layout_and_attaches(tiny, tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import GlmForCausalLM

    method = get_method("ptuning")
    model = method.apply(tiny, make_cfg("ptuning"))
    train_step(model, steps=2)
    trained = logits(model)
    out = tmp_path / "run"
    out.mkdir()
    (out / "train_log.jsonl").write_text("{}\n")
    method.save(model, out)
    assert json.loads((out / "config.json").read_text())["pre_seq_len"] == 4
    state = torch.load(out / "pytorch_model.bin", weights_only=True)
    assert list(state) == [PREFIX_KEY] and state[PREFIX_KEY].shape == (4, 2 * 2 * 2 * 8)
    assert (out / "train_log.jsonl").is_file() and json.loads((out / "glmtune_adapter.json").read_text())[
        "method"] == "ptuning"
    assert adapter_kind(out) == "ptuning"

    base = GlmForCausalLM.from_pretrained(tiny_dir)
    base.config.glmtune = {"family": "chatglm2"}
    loaded = attach_adapter(base, out)
    assert not any(p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(logits(loaded), trained, atol=1e-6, rtol=0)

    again = GlmForCausalLM.from_pretrained(tiny_dir)
    resumed = method.apply(again, make_cfg("ptuning", adapter=str(out), ptuning=PTuningConfig(pre_seq_len=9)))
    assert resumed.prefix_encoder.pre_seq_len == 4  # the folder's settings win
    torch.testing.assert_close(logits(resumed), trained, atol=1e-6, rtol=0)
    before = snapshot(resumed)
    train_step(resumed)
    assert changed(before, snapshot(resumed)) == {"prefix_encoder.embedding.weight"}


def test_ptuning_errors(tiny, tmp_path: Path) -> None:
    method = get_method("ptuning")
    for family in ("glm4", "hf"):
        with pytest.raises(ConfigError, match="P-Tuning v2 is ChatGLM-only .* use method: lora"):
            method.apply(tiny, make_cfg("ptuning", family=family))
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(ConfigError, match="is not a P-Tuning folder"):
        method.apply(tiny, make_cfg("ptuning", adapter=str(tmp_path)))


def test_adapter_kind_says_what_it_found(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(GlmtuneError, match=r"is not an adapter: expected adapter_config.json .* found \['notes.txt'\]"):
        adapter_kind(tmp_path)
    (tmp_path / "config.json").write_text('{"pre_seq_len": 4}')
    torch.save({"other": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(GlmtuneError, match=f"pre_seq_len=4 but no weight file holds {PREFIX_KEY}"):
        adapter_kind(tmp_path)
    with pytest.raises(GlmtuneError, match="adapter folder not found"):
        adapter_kind(tmp_path / "missing")


@pytest.mark.parametrize("name", ["chatglm-tiny", "chatglm2-tiny", "chatglm3-tiny"])
def test_official_ptuning_reproduces_reference(reference: Path, name: str) -> None:
    import glmtune

    folder = reference / "models" / name
    expected = np.load(folder / "expected.npz")
    cases = json.loads((folder / "cases.json").read_text())["cases"]
    model = glmtune.load_model(folder, adapter=folder / "ptuning")
    ids = torch.tensor(expected["d.a.input_ids"])
    labels = torch.tensor(expected["d.a.labels"])
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
    atol = 1e-4 if name == "chatglm-tiny" else 1e-5  # v1 activations are large (MANIFEST tolerances)
    np.testing.assert_allclose(out.logits.float().numpy(), expected["d.a.logits"], atol=atol, rtol=0)
    assert abs(float(out.loss) - cases["d.a"]["loss"]) < 1e-5
    c1 = cases["d.c1"]
    inputs = {k: torch.tensor(v) for k, v in c1["inputs"].items()}
    gen = model.generate(**inputs, **c1["generate_kwargs"])
    assert gen.tolist() == c1["sequences_use_cache_true"]


def test_v1_ptuning_with_gradient_checkpointing(reference: Path) -> None:
    import glmtune

    folder = reference / "models" / "chatglm-tiny"
    ids = torch.tensor(np.load(folder / "expected.npz")["a.input_ids"])
    losses, grads = [], []
    for checkpointing in (False, True):
        model = glmtune.load_model(folder)
        torch.manual_seed(0)
        cfg = make_cfg("ptuning", family="chatglm", gradient_checkpointing=checkpointing)
        model = get_method("ptuning").apply(model, cfg)
        model.train()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        assert set(trainable) and all(n.startswith("transformer.prefix_encoder.") or "prefix_encoder" in n
                                      for n in trainable)
        losses.append(float(out.loss))
        grads.append(torch.cat([p.grad.flatten() for p in trainable.values()]))
    assert abs(losses[0] - losses[1]) < 1e-6
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=0)
