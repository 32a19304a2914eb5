"""Per-family facts live in ``Family``: a new family is one module + one registration line, nothing else.

A made-up family is registered here (and removed afterwards); LoRA targets, P-Tuning, collation,
detection and the default template must all follow its ``Family`` record.
"""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import glmtune
from glmtune.data.collate import Collator
from glmtune.data.templates import family_of, resolve_template
from glmtune.errors import ConfigError
from glmtune.methods.ptuning import prefix_module
from glmtune.methods.targets import default_targets, resolve_targets
from glmtune.models.families import get_family, model_family
from glmtune.models.family import FAMILIES, Family

SRC = Path(__file__).resolve().parents[2] / "src" / "glmtune"

TOY = Family(
    name="toyglm",
    description="a made-up family for this test",
    detect=lambda files: files.config.get("model_type") == "toyglm",
    tokenizer_loader="glmtune.models.hf_loading:load_tokenizer",
    model_loader="glmtune.models.hf_loading:load_model",
    default_template="chatglm3",
    priority=100,
    lora_targets=("dense",),
    prefix_module="glmtune.models.glm_mapping.prefix",
    padding_side="left",
    positions="tokenizer",
)
# the same family without P-Tuning, trained like a plain causal LM
PLAIN = replace(TOY, name="toyplain", detect=lambda files: False, lora_targets="all-linear", prefix_module=None,
                padding_side="right", positions="model")


@pytest.fixture
def toy_families(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``glmtune/models/family/toyglm.py``'s one ``FAMILIES.register`` line would do, undone afterwards."""
    for family in (TOY, PLAIN):
        monkeypatch.setitem(FAMILIES._items, family.name, family)


class Dense(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = torch.nn.Linear(4, 4)
        self.lm_head = torch.nn.Linear(4, 8)


def test_lora_targets_come_from_the_family(toy_families: None) -> None:
    model = Dense()
    assert default_targets(model, "toyglm") == ["dense"]
    assert resolve_targets(model, None, "toyglm") == ["dense"]
    assert default_targets(model, "toyplain") == "all-linear"


def test_ptuning_module_comes_from_the_family(toy_families: None) -> None:
    assert prefix_module("toyglm").__name__ == "glmtune.models.glm_mapping.prefix"
    with pytest.raises(ConfigError, match=r"P-Tuning v2 .*\(chatglm, chatglm2, chatglm3, toyglm\), not toyplain; "
                                          r"use method: lora"):
        prefix_module("toyplain")


def test_collation_follows_the_family(toy_families: None) -> None:
    features = [{"input_ids": [5, 6], "labels": [-100, 6]}, {"input_ids": [1, 2, 3], "labels": [1, 2, 3]}]
    left = SimpleNamespace(glmtune_family="toyglm", pad_token_id=0, eos_token_id=2, padding_side="left")
    batch = Collator(left, pad_to_multiple_of=None)(features)
    assert batch["input_ids"].tolist() == [[0, 5, 6], [1, 2, 3]]
    assert batch["position_ids"].tolist() == [[0, 0, 1], [0, 1, 2]]
    plain = SimpleNamespace(glmtune_family="toyplain", pad_token_id=0, eos_token_id=2, padding_side="left")
    batch = Collator(plain, pad_to_multiple_of=None)(features)
    assert batch["input_ids"].tolist() == [[5, 6, 0], [1, 2, 3]] and "position_ids" not in batch


def test_detection_and_template_follow_the_family(toy_families: None, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "toyglm"}))
    assert glmtune.detect_family(tmp_path) == "toyglm" and get_family(tmp_path) is TOY
    tokenizer = SimpleNamespace(glmtune_family="toyglm")
    assert family_of(tokenizer) == "toyglm" and resolve_template(tokenizer).name == "chatglm3"


def test_builtin_facts() -> None:
    facts = {name: (f.lora_targets, f.prefix_module, f.padding_side, f.positions) for name, f in FAMILIES.items()}
    qkv = ("q_proj", "k_proj", "v_proj")
    assert facts == {
        "chatglm": (("query_key_value",), "glmtune.models.chatglm_v1.prefix", "left", "glm_2d"),
        "chatglm2": (qkv, "glmtune.models.glm_mapping.prefix", "left", "tokenizer"),
        "chatglm3": (qkv, "glmtune.models.glm_mapping.prefix", "left", "tokenizer"),
        "glm4": (qkv, None, "right", "model"),
        "hf": ("all-linear", None, "right", "model"),
    }


def test_model_family_reads_the_record_or_the_class() -> None:
    from glmtune.models.chatglm_v1.modeling import ChatGLMV1ForCausalLM

    assert ChatGLMV1ForCausalLM.glmtune_family == "chatglm"
    assert model_family(SimpleNamespace(config=SimpleNamespace(glmtune={"family": "chatglm3"}))) == "chatglm3"
    assert model_family(Dense()) is None


@pytest.mark.parametrize("path", ["methods/targets.py", "methods/ptuning.py", "methods/adapters.py",
                                  "methods/lora.py", "data/collate.py"])
def test_no_per_family_tables_outside_the_family_modules(path: str) -> None:
    """Family names appear there only inside messages and docstrings, never as values code branches on."""
    names = set(FAMILIES.names())
    literals = [node.value for node in ast.walk(ast.parse((SRC / path).read_text(encoding="utf-8")))
                if isinstance(node, ast.Constant) and node.value in names]
    assert not literals, f"{path} names families {literals}: put the fact in their Family record"
