"""The exported fast tokenizer (``tokenizer.json`` + chat template) against the THUDM reference vectors.

Each generation's tokenizer is saved with ``save_fast_tokenizer`` and loaded back with plain
``transformers.AutoTokenizer`` (no remote code, no glmtune class). Every encode row must give the
official ids, except rows whose text TYPES a token the fast tokenizer has to match in text (see
``fast_export``'s docstring): ``[gMASK]`` (all generations), the word ``sop``, ``</s>``, ``<unk>``
(ChatGLM2/3) and the role tokens (ChatGLM3). Those rows are listed by ``typed_token`` and checked
to be the only mismatches; for ChatGLM3 they equal the official ``encode_special_tokens=True`` ids.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from glmtune.data.templates import resolve_template
from glmtune.models.tokenization.fast_export import generation_stop_ids, save_fast_tokenizer

GENS = ("chatglm", "chatglm2", "chatglm3")
TYPED = {
    "chatglm": re.compile(r"\[gMASK\]"),
    "chatglm2": re.compile(r"\[gMASK\]|</s>|<unk>|(?<![\w])sop(?![\w])"),
    "chatglm3": re.compile(r"\[gMASK\]|</s>|<unk>|(?<![\w])sop(?![\w])|<\|(system|user|assistant|observation)\|>"),
}
STOP_IDS = {"chatglm": [130005], "chatglm2": [2], "chatglm3": [2, 64795, 64797]}


def typed_token(gen: str, text: str) -> bool:
    """True when ``text`` types a token the fast tokenizer matches as one id (the original does not)."""
    return bool(TYPED[gen].search(text))


@functools.cache
def _vectors(root: str, gen: str) -> dict[str, Any]:
    return json.loads((Path(root) / "tokenizers" / gen / "vectors.json").read_text(encoding="utf-8"))


def _keep(section: str, gen: str, case: dict[str, Any]) -> bool:
    """Rows compared one by one: typed-token encode rows have their own test, stream_chat rows are no chat() prompt."""
    if section == "encode":
        return not typed_token(gen, case["text"])
    return not (section == "chat_prompts" and "path" in case)


def _cases(section: str, gens: tuple[str, ...] = GENS) -> list[Any]:
    root = os.environ.get("GLMTUNE_REFERENCE")
    if not root or not (Path(root) / "tokenizers").is_dir():
        return [pytest.param(gens[0], -1, id=f"{section}-no-reference")]
    return [pytest.param(g, i, id=f"{g}-{i}") for g in gens
            for i, case in enumerate(_vectors(root, g).get(section, [])) if _keep(section, g, case)]


@pytest.fixture(scope="module")
def exported(reference: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """gen -> (glmtune's slow tokenizer, the folder, plain AutoTokenizer of the folder); built once each."""
    from transformers import AutoTokenizer

    import glmtune

    made: dict[str, tuple[Any, Path, Any]] = {}

    def get(gen: str) -> tuple[Any, Path, Any]:
        if gen not in made:
            slow = glmtune.load_tokenizer(reference / "checkpoints" / f"{gen}-mini")
            folder = tmp_path_factory.mktemp(f"fast-{gen}")
            slow.save_pretrained(str(folder))
            save_fast_tokenizer(slow, gen, folder)
            made[gen] = (slow, folder, AutoTokenizer.from_pretrained(str(folder)))
        return made[gen]

    return get


def messages_of(gen: str, case: dict[str, Any]) -> list[dict[str, Any]]:
    """A reference chat() case (query + history) as an OpenAI-style messages list."""
    if gen == "chatglm3":
        return [dict(m) for m in case["history"]] + [{"role": case.get("role", "user"), "content": case["query"]}]
    out: list[dict[str, Any]] = []
    for query, answer in case["history"]:
        out += [{"role": "user", "content": query}, {"role": "assistant", "content": answer}]
    return out + [{"role": "user", "content": case["query"]}]


@pytest.mark.parametrize(("gen", "index"), _cases("encode"))
def test_encode(reference: Path, exported: Any, gen: str, index: int) -> None:
    case = _vectors(str(reference), gen)["encode"][index]
    fast = exported(gen)[2]
    assert fast.encode(case["text"], add_special_tokens=False) == case["ids"]
    assert fast.encode(case["text"]) == case["ids_with_special"]
    assert fast(case["text"])["input_ids"] == case["ids_with_special"]


@pytest.mark.parametrize("gen", GENS)
def test_only_typed_tokens_differ(reference: Path, exported: Any, gen: str) -> None:
    """The mismatching rows are exactly the typed-token rows; ChatGLM3's equal its encode_special_tokens mode."""
    fast = exported(gen)[2]
    rows = _vectors(str(reference), gen)["encode"]
    differ = {r["text"] for r in rows if fast.encode(r["text"], add_special_tokens=False) != r["ids"]}
    assert differ == {r["text"] for r in rows if typed_token(gen, r["text"])}
    assert 0 < len(differ) <= 12
    if gen == "chatglm3":
        official = {r["text"]: r["ids"] for r in _vectors(str(reference), gen)["encode_special_tokens_true"]}
        checked = [t for t in differ if t in official]
        assert len(checked) >= 8
        for text in checked:
            assert fast.encode(text, add_special_tokens=False) == official[text], text


@pytest.mark.parametrize(("gen", "index"), _cases("decode"))
def test_decode(reference: Path, exported: Any, gen: str, index: int) -> None:
    case = _vectors(str(reference), gen)["decode"][index]
    fast = exported(gen)[2]
    assert fast.decode(case["ids"]) == case["text"]
    assert fast.decode(case["ids"], skip_special_tokens=True) == case["text_skip_special_tokens"]


@pytest.mark.parametrize(("gen", "index"), _cases("chat_prompts"))
def test_chat_template_is_the_official_prompt(reference: Path, exported: Any, gen: str, index: int) -> None:
    case = _vectors(str(reference), gen)["chat_prompts"][index]
    slow, _, fast = exported(gen)
    messages = messages_of(gen, case)
    ids = fast.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert ids == case["input_ids"][0]
    assert ids == resolve_template(slow, gen).build_inference(slow, messages)  # glmtune's engine prompt


@pytest.mark.parametrize("gen", GENS)
def test_config_padding_stop_ids_and_glmtune_reload(reference: Path, exported: Any, gen: str) -> None:
    import glmtune

    slow, folder, fast = exported(gen)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and config["glmtune_family"] == gen
    assert (folder / "tokenizer.json").is_file() and fast.padding_side == "left"
    assert fast.eos_token_id == slow.eos_token_id and fast.pad_token_id == slow.pad_token_id
    assert generation_stop_ids(gen, slow) == STOP_IDS[gen]
    batch = _vectors(str(reference), gen)["batch_pad"]
    assert fast(batch["prompts"], padding=True)["input_ids"] == batch["input_ids"]
    again = glmtune.load_tokenizer(folder)  # glmtune still picks its own tokenizer for the folder
    assert type(again) is type(slow)
    assert again.encode("[gMASK]sop 你好\n\tx  y") == slow.encode("[gMASK]sop 你好\n\tx  y")


def test_a_final_answer_renders_the_training_layout(exported: Any) -> None:
    """v1: ``prompt [gMASK] <sop> answer <eop>``, the answer encoded on its own (official ptuning layout)."""
    slow, _, fast = exported("chatglm")
    messages = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "Hello world"}]
    ids = fast.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    gmask, sop, eop = 130001, 130004, 130005
    assert ids == slow.encode("你好", add_special_tokens=False) + [gmask, sop] + slow.encode(
        "Hello world", add_special_tokens=False) + [eop]


def test_unknown_family_is_refused(reference: Path, exported: Any, tmp_path: Path) -> None:
    from glmtune.errors import GlmtuneError

    slow = exported("chatglm2")[0]
    with pytest.raises(GlmtuneError, match="glm4"):
        save_fast_tokenizer(slow, "glm4", tmp_path)


@pytest.mark.parametrize("source", ["reference", "builtin"])
def test_chatglm2_answer_layout_with_and_without_dummy_prefix(request: pytest.FixtureRequest, tmp_path: Path,
                                                             source: str) -> None:
    """ChatGLM2 prompt and answer are encoded apart (official ptuning); the built-in tiny model's
    SentencePiece has no dummy prefix, which the template and normaliser follow."""
    from transformers import AutoTokenizer

    import glmtune
    from glmtune.models.tiny import builtin_path

    if source == "reference":
        path = request.getfixturevalue("reference") / "checkpoints" / "chatglm2-mini"
    else:
        path = builtin_path("tiny-chatglm2")
    slow = glmtune.load_tokenizer(path)
    slow.save_pretrained(str(tmp_path))
    save_fast_tokenizer(slow, "chatglm2", tmp_path)
    fast = AutoTokenizer.from_pretrained(str(tmp_path))
    for text in ("  two  spaces  ", "a\n\nb\tc", "What is the capital of France?", "你好，世界！\n第 2 句"):
        assert fast.encode(text, add_special_tokens=False) == slow.encode(text, add_special_tokens=False)
        assert fast.encode(text) == slow.encode(text)  # [gMASK] sop ids of this vocabulary
        assert fast.decode(slow.encode(text)) == slow.decode(slow.encode(text))
    messages = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "What is 2 + 2?"}]
    prompt = fast.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    assert prompt["input_ids"] == resolve_template(slow, "chatglm2").build_inference(slow, messages)
    answered = fast.apply_chat_template([*messages, {"role": "assistant", "content": "4"}], tokenize=True,
                                        return_dict=True)["input_ids"]
    assert answered == prompt["input_ids"] + slow.encode("4", add_special_tokens=False)
