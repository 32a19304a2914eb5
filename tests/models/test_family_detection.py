"""Family detection reads a folder's own files; a local copy is never guessed from its name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import glmtune
from glmtune.errors import GlmtuneError

V3_TOKENIZER_CODE = 'role_special_tokens = ["<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"]\n'
V2_TOKENIZER_CODE = 'special_tokens = ["[MASK]", "[gMASK]", "[sMASK]", "sop", "eop"]\n'


def local_copy(src, dst, name="/data/models/my-finetune"):
    """The folder as save_pretrained writes it from a local path: _name_or_path is that path."""
    shutil.copytree(src, dst)
    for file, key in (("config.json", "_name_or_path"), ("tokenizer_config.json", "name_or_path")):
        if (dst / file).is_file():
            data = json.loads((dst / file).read_text())
            data[key] = name
            (dst / file).write_text(json.dumps(data))
    return dst


def test_official_ids_decide(reference):
    assert glmtune.detect_family(reference / "checkpoints" / "chatglm3-mini") == "chatglm3"
    assert glmtune.detect_family(reference / "checkpoints" / "chatglm2-mini") == "chatglm2"
    assert glmtune.detect_family(reference / "checkpoints" / "chatglm-mini") == "chatglm"


def test_a_local_copy_without_evidence_asks_for_family(reference, tmp_path):
    folder = local_copy(reference / "checkpoints" / "chatglm3-mini", tmp_path / "m")
    with pytest.raises(GlmtuneError, match="family='chatglm2' or family='chatglm3'"):
        glmtune.detect_family(folder)
    # a path that merely contains a family name is not evidence either
    named = local_copy(reference / "checkpoints" / "chatglm2-mini", tmp_path / "n", "/srv/chatglm3-6b-32k-copy")
    with pytest.raises(GlmtuneError, match="cannot tell which"):
        glmtune.detect_family(named)


@pytest.mark.parametrize("evidence", ["tokenizer_code", "chat_template", "added_tokens", "generation_config"])
def test_chatglm3_is_recognised_by_its_role_tokens(reference, tmp_path, evidence):
    folder = local_copy(reference / "checkpoints" / "chatglm3-mini", tmp_path / "m")
    tok = json.loads((folder / "tokenizer_config.json").read_text())
    if evidence == "tokenizer_code":
        (folder / "tokenization_chatglm.py").write_text(V3_TOKENIZER_CODE)
    elif evidence == "chat_template":
        tok["chat_template"] = "{% for m in messages %}<|{{ m.role }}|>{% endfor %}<|user|>"
    elif evidence == "added_tokens":
        tok["added_tokens_decoder"] = {"64795": {"content": "<|user|>", "special": True}}
    else:
        (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 64795, 64797]}))
    (folder / "tokenizer_config.json").write_text(json.dumps(tok))
    assert glmtune.detect_family(folder) == "chatglm3"


def test_chatglm2_is_recognised_by_its_tokenizer_code(reference, tmp_path):
    folder = local_copy(reference / "checkpoints" / "chatglm2-mini", tmp_path / "m")
    (folder / "tokenization_chatglm.py").write_text(V2_TOKENIZER_CODE)
    assert glmtune.detect_family(folder) == "chatglm2"


def test_a_local_chatglm3_32k_copy_keeps_rope_ratio_as_base_multiplier(reference, tmp_path):
    """The reported bug: such a copy was detected as chatglm2 and rope_ratio 50 became position division."""
    root = reference / "models" / "chatglm3-tiny-rope50"
    folder = local_copy(root, tmp_path / "m")
    (folder / "tokenization_chatglm.py").write_text(V3_TOKENIZER_CODE)
    assert glmtune.detect_family(folder) == "chatglm3"
    torch = pytest.importorskip("torch")
    with np.load(root / "expected.npz") as npz:
        ids, want = torch.from_numpy(npz["a.input_ids"]), torch.from_numpy(npz["a.logits"])
    with torch.no_grad():
        got = glmtune.load_model(folder)(input_ids=ids).logits
        as_v2 = glmtune.load_model(folder, family="chatglm2")(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert (as_v2 - want).abs().max() > 1e-4  # what the misdetection produced: other logits


def test_cli_asks_for_family_and_takes_it(reference, tmp_path, capsys):
    from glmtune.cli import main as cli

    folder = local_copy(reference / "checkpoints" / "chatglm3-mini", tmp_path / "m")
    assert cli(["info", str(folder), "--json"]) == 2
    assert "family='chatglm3'" in capsys.readouterr().err
    assert cli(["info", str(folder), "--json", "--family", "chatglm3"]) == 0
    assert json.loads(capsys.readouterr().out)["family"] == "chatglm3"
