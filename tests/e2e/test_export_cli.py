"""`glmtune export --to hf` output loads with plain transformers in a process where glmtune cannot be
imported, and gives the THUDM original's logits."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys

import pytest

pytest.importorskip("torch")

SCRIPT = r"""
import json, sys
sys.path[:0] = json.loads(sys.argv[1])
try:
    import glmtune  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("glmtune is importable here; the check would prove nothing")
import torch, transformers
model = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.float32)
ids = torch.tensor([json.loads(sys.argv[3])])
with torch.no_grad():
    logits = model(input_ids=ids).logits[0, -1]
print(json.dumps({"cls": type(model).__name__, "logits": logits.tolist()}))
"""


def test_export_hf_loads_without_glmtune(reference, tmp_path):
    import torch

    from glmtune.cli import main as cli

    src = reference / "checkpoints" / "chatglm3-mini"
    out = tmp_path / "hf"
    assert cli(["export", "--model", str(src), "--to", "hf", str(out), "--shard-size", "10MB"]) == 0
    assert sorted(p.name for p in out.glob("model-*.safetensors")) == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert (out / "tokenizer.model").is_file() or (out / "tokenizer_config.json").is_file()
    expected = json.loads((reference / "checkpoints" / "chatglm3-mini.expected.json").read_text())
    lp = expected["last_position_logits"]
    # -I: no env vars / user site; -S: no site-packages .pth files, so the editable glmtune is not on
    # the path. Only the venv's site-packages directories are added back, explicitly.
    paths = [p for p in site.getsitepackages() if os.path.isdir(p)]
    env = {"PATH": os.environ.get("PATH", ""), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", SCRIPT, json.dumps(paths), str(out),
                           json.dumps(lp["input_ids"])], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["cls"] == "GlmForCausalLM"
    torch.testing.assert_close(torch.tensor(result["logits"]), torch.tensor(lp["logits"], dtype=torch.float32),
                               atol=1e-5, rtol=0)


def test_export_never_replaces_what_glmtune_did_not_write(reference, tmp_path, capsys):
    from glmtune.cli import main as cli

    src = reference / "checkpoints" / "chatglm2-mini"
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    assert cli(["export", "--model", str(src), "--to", "hf", str(precious)]) == 2
    err = capsys.readouterr().err
    assert "holds files glmtune did not write (thesis.tex)" in err and "--overwrite" in err, err
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.tex"]
    out = tmp_path / "hf"
    assert cli(["export", "--model", str(src), "--to", "hf", str(out)]) == 0
    assert json.loads((out / "glmtune_output.json").read_text()) == {"kind": "export-hf"}
    assert cli(["export", "--model", str(src), "--to", "hf", str(out)]) == 0  # its own output: replaced
    assert cli(["export", "--model", str(src), "--to", "chatglm", str(out)]) == 2  # another kind: refused
    assert "a glmtune export-hf output" in capsys.readouterr().err
    assert cli(["export", "--model", str(src), "--to", "hf", str(precious), "--overwrite"]) == 0
    assert not (precious / "thesis.tex").exists() and (precious / "config.json").is_file()


def test_export_user_errors_are_one_line(reference, tmp_path, capsys):
    from glmtune.cli import main as cli

    src = reference / "checkpoints" / "chatglm2-mini"
    assert cli(["export", "--model", str(src), "--to", "hf", str(tmp_path / "o"), "--shard-size", "2XB"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--shard-size '2XB'" in err, err
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8,
                                                             "base_model_name_or_path": str(src)}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    assert cli(["export", "--model", str(adapter), "--to", "hf", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "holds a LoRA adapter" in err and "not a model" in err and "model_type" not in err, err
