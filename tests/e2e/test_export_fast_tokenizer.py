"""``glmtune export`` output used with plain transformers only: tokenizer, chat template, generate.

``AutoTokenizer`` + ``apply_chat_template`` + ``AutoModelForCausalLM.generate`` (greedy, the folder's
generation_config) on an ``--to hf`` export of a reference mini checkpoint must give the official
``chat()`` prompt and answer ids token for token; the ``--to chatglm`` layout carries the same tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import glmtune
from glmtune.cli import main as cli

STOPS = {"chatglm2-mini": 2, "chatglm3-mini": [2, 64795, 64797]}


def messages_of(name: str, case: dict[str, Any]) -> list[dict[str, Any]]:
    if name.startswith("chatglm3"):
        return [dict(m) for m in case["history"]] + [{"role": "user", "content": case["query"]}]
    out: list[dict[str, Any]] = []
    for query, answer in case["history"]:
        out += [{"role": "user", "content": query}, {"role": "assistant", "content": answer}]
    return out + [{"role": "user", "content": case["query"]}]


@pytest.mark.parametrize("name", ["chatglm2-mini", "chatglm3-mini"])
def test_plain_transformers_chat_equals_the_official_answer(reference: Path, tmp_path: Path, name: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = reference / "checkpoints" / name
    expected = json.loads((reference / "checkpoints" / f"{name}.expected.json").read_text(encoding="utf-8"))
    out = tmp_path / "hf"
    assert cli(["export", "--model", str(base), "--to", "hf", str(out), "--dtype", "float32"]) == 0
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer.model").is_file()
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert model.generation_config.eos_token_id == STOPS[name]
    for case in expected["chat"]:
        inputs = tok.apply_chat_template(messages_of(name, case), add_generation_prompt=True, tokenize=True,
                                         return_dict=True, return_tensors="pt")
        assert inputs["input_ids"][0].tolist() == case["prompt_input_ids"], case["name"]
        with torch.no_grad():
            seq = model.generate(**inputs, do_sample=False, max_new_tokens=len(case["new_token_ids"]))
        new = seq[0, inputs["input_ids"].shape[1]:].tolist()
        assert new == case["new_token_ids"], case["name"]
        if not name.startswith("chatglm3"):  # ChatGLM2's chat() reply is the stripped decode
            assert tok.decode(new, skip_special_tokens=True).strip() == case["response"]
    again = glmtune.load_tokenizer(out)  # glmtune keeps its own tokenizer for the folder
    assert type(again).__name__ == ("ChatGLM3Tokenizer" if name.startswith("chatglm3") else "ChatGLM2Tokenizer")


def test_the_chatglm_layout_carries_the_same_tokenizer(reference: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    name = "chatglm3-mini"
    case = json.loads((reference / "checkpoints" / f"{name}.expected.json").read_text(encoding="utf-8"))["chat"][2]
    out = tmp_path / "thudm"
    assert cli(["export", "--model", str(reference / "checkpoints" / name), "--to", "chatglm", str(out)]) == 0
    ids = AutoTokenizer.from_pretrained(out).apply_chat_template(
        messages_of(name, case), add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert ids == case["prompt_input_ids"]
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == STOPS[name]
    assert glmtune.models.loading.detect_family(out) == "chatglm3"
