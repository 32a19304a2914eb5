"""export --to hf / --to chatglm round trips on the tiny reference models (same logits, same keys)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import glmtune  # noqa: E402
from glmtune.cli import main as cli  # noqa: E402
from glmtune.models.checkpoint_io import checkpoint_shapes  # noqa: E402


def _case_a(root):
    with np.load(root / "expected.npz") as npz:
        return torch.from_numpy(npz["a.input_ids"]), torch.from_numpy(npz["a.logits"])


@pytest.mark.parametrize("name", ["chatglm2-tiny", "chatglm3-tiny-rope50"])
def test_round_trip_hf_then_chatglm(reference, tmp_path, name):
    root = reference / "models" / name
    ids, expected = _case_a(root)
    hf, back = tmp_path / "hf", tmp_path / "back"
    assert cli(["export", "--model", str(root), "--to", "hf", str(hf), "--shard-size", "300KB"]) == 0
    config = json.loads((hf / "config.json").read_text())
    assert config["model_type"] == "glm" and config["glmtune"]["family"] == name.split("-")[0]
    assert (hf / "model.safetensors.index.json").is_file()  # sharded
    assert glmtune.detect_family(hf) == name.split("-")[0]
    assert cli(["export", "--model", str(hf), "--to", "chatglm", str(back)]) == 0
    for folder in (hf, back):
        with torch.no_grad():
            out = glmtune.load_model(folder)(input_ids=ids).logits
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # same key set as the THUDM original, rotary inv_freq buffer included; same shapes
    assert checkpoint_shapes(back).keys() == checkpoint_shapes(root).keys()
    assert {k: v[0] for k, v in checkpoint_shapes(back).items()} == {k: v[0] for k, v in checkpoint_shapes(root).items()}
    original = json.loads((root / "config.json").read_text())
    assert json.loads((back / "config.json").read_text()) == original


def test_chatglm_export_in_fp16(reference, tmp_path):
    root = reference / "models" / "chatglm2-tiny"
    assert cli(["export", "--model", str(root), "--to", "chatglm", str(tmp_path / "o"), "--dtype", "fp16"]) == 0
    assert {d for _, d in checkpoint_shapes(tmp_path / "o").values()} == {"float16"}
    assert json.loads((tmp_path / "o" / "config.json").read_text())["torch_dtype"] == "float16"


def test_export_refuses_other_families(reference, tmp_path, capsys):
    assert cli(["export", "--model", str(reference / "models" / "chatglm-tiny"), "--to", "hf", str(tmp_path)]) == 2
    assert "ChatGLM2/3" in capsys.readouterr().err
