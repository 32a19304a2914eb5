"""glmtune info on every reference folder (cheap: no weights loaded)."""

from __future__ import annotations

import json

import pytest

from glmtune.cli import main as cli


def _folders(reference):
    return sorted(p for sub in ("models", "checkpoints") for p in (reference / sub).iterdir() if p.is_dir())


def test_info_every_reference_folder(reference, capsys):
    for folder in _folders(reference):
        assert cli(["info", str(folder)]) == 0, folder
        out = capsys.readouterr().out
        for label in ("family:", "parameters:", "dtype:", "vocab size (model):", "context length:", "loadable:"):
            assert label in out, (folder, label)
        assert "loadable: yes" in out, out  # every family, v1 included, checked on names and shapes


@pytest.mark.parametrize("name,family,params,context", [
    ("checkpoints/chatglm3-mini", "chatglm3", 8_397_376, 8192),
    ("checkpoints/chatglm2-mini", "chatglm2", 8_397_376, 2048),
    ("models/chatglm2-tiny-safetensors", "chatglm2", 217_664, 256),
])
def test_info_json(reference, capsys, name, family, params, context):
    assert cli(["info", str(reference / name), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["family"], info["parameters"], info["context_length"]) == (family, params, context)
    assert info["loadable"] == "yes"


def test_info_tokenizer_ids(reference, capsys):
    assert cli(["info", str(reference / "checkpoints" / "chatglm3-mini")]) == 0
    out = capsys.readouterr().out
    assert "eos=2" in out and "<|user|>=64795" in out and "vocab 64798" in out


def test_info_missing_folder(tmp_path, capsys):
    assert cli(["info", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize("change,reason", [
    ({"inner_hidden_size": 96}, "transformer.layers.0.mlp.dense_h_to_4h.weight: shape (160, 64) does not fit the config"),
    ({"num_layers": 3}, "the checkpoint lacks ['transformer.layers.2."),
])
def test_info_v1_checks_weights_against_the_config(reference, tmp_path, capsys, change, reason):
    """A v1 folder whose config does not match its weights is not loadable (it said yes on any weights)."""
    import shutil

    src = reference / "models" / "chatglm-tiny"
    config = json.loads((src / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    shutil.copy(src / "pytorch_model.bin", tmp_path / "pytorch_model.bin")
    assert cli(["info", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["family"] == "chatglm" and info["loadable"].startswith(f"no ({reason}"), info["loadable"]
