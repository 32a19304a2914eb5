"""Native ChatGLM tokenizers against the THUDM reference vectors ($GLMTUNE_REFERENCE/tokenizers/*).

Every encode / decode / encode_special_tokens_true case is its own test; all must match exactly.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

GENS = ("chatglm", "chatglm2", "chatglm3")
CLASSES = {"chatglm": "ChatGLMTokenizer", "chatglm2": "ChatGLM2Tokenizer", "chatglm3": "ChatGLM3Tokenizer"}


@functools.cache
def _vectors_at(root: str, gen: str) -> dict[str, Any]:
    return json.loads((Path(root) / "tokenizers" / gen / "vectors.json").read_text(encoding="utf-8"))


def _cases(section: str, gens: tuple[str, ...] = GENS) -> list[Any]:
    """(gen, index) pairs for parametrize; one placeholder when the reference is absent (then skipped)."""
    root = os.environ.get("GLMTUNE_REFERENCE")
    if not root or not (Path(root) / "tokenizers").is_dir():
        return [pytest.param(gens[0], -1, id=f"{section}-no-reference")]
    out = []
    for gen in gens:
        rows = _vectors_at(root, gen).get(section, [])
        out += [pytest.param(gen, i, id=f"{gen}-{i}") for i in range(len(rows))]
    return out


def vectors(reference: Path, gen: str) -> dict[str, Any]:
    return _vectors_at(str(reference), gen)


@functools.cache
def _tokenizer(root: str, gen: str, **kwargs: Any) -> Any:
    import glmtune

    return glmtune.load_tokenizer(Path(root) / "checkpoints" / f"{gen}-mini", **kwargs)


def tokenizer(reference: Path, gen: str, **kwargs: Any) -> Any:
    return _tokenizer(str(reference), gen, **kwargs)


# ----------------------------------------------------------------------------- vector cases
@pytest.mark.parametrize(("gen", "index"), _cases("encode"))
def test_encode(reference: Path, gen: str, index: int) -> None:
    case = vectors(reference, gen)["encode"][index]
    tok = tokenizer(reference, gen)
    assert tok.tokenize(case["text"]) == case["tokens"]
    assert tok.encode(case["text"], add_special_tokens=False) == case["ids"]
    assert tok.encode(case["text"], add_special_tokens=True) == case["ids_with_special"]
    assert tok(case["text"])["input_ids"] == case["ids_with_special"]


@pytest.mark.parametrize(("gen", "index"), _cases("encode_special_tokens_true", ("chatglm3",)))
def test_encode_special_tokens_mode(reference: Path, gen: str, index: int) -> None:
    case = vectors(reference, gen)["encode_special_tokens_true"][index]
    tok = tokenizer(reference, gen, encode_special_tokens=True)
    assert tok.encode(case["text"], add_special_tokens=False) == case["ids"]
    assert tok.encode(case["text"], add_special_tokens=True) == case["ids_with_special"]


@pytest.mark.parametrize(("gen", "index"), _cases("decode"))
def test_decode(reference: Path, gen: str, index: int) -> None:
    case = vectors(reference, gen)["decode"][index]
    tok = tokenizer(reference, gen)
    assert tok.decode(case["ids"]) == case["text"]
    assert tok.decode(case["ids"], skip_special_tokens=True) == case["text_skip_special_tokens"]


# ----------------------------------------------------------------------------- special ids
@pytest.mark.parametrize("gen", GENS)
def test_special_ids(reference: Path, gen: str) -> None:
    from transformers import PreTrainedTokenizer

    special = vectors(reference, gen)["special"]
    tok = tokenizer(reference, gen)
    assert isinstance(tok, PreTrainedTokenizer)
    assert type(tok).__name__ == CLASSES[gen]
    assert tok.vocab_size == len(tok) == special["vocab_size"]
    assert tok.padding_side == special["padding_side"] == "left"
    assert list(tok.model_input_names) == special["model_input_names"]
    assert (tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) == (
        special["eos_token_id"],
        special["pad_token_id"],
        special.get("unk_token_id", 0),
    )
    if gen == "chatglm":
        for text, index in special["token_to_id"].items():
            assert tok.convert_tokens_to_ids(text) == index, text
        assert tok.bos_token_id == special["bos_token_id"] == tok.sop_token_id
        assert tok.mask_token_id == special["mask_token_id"]
        assert tok.gmask_token_id == special["gmask_token_id"]
        assert tok.end_token_id == special["end_token_id"]
        assert tok.eop_token_id == tok.eos_token_id
        assert tok.all_special_tokens == special["all_special_tokens"]
        assert tok.all_special_ids == special["all_special_ids"]
    else:
        assert tok.bos_token_id is None and special["bos_token_id_attr"] is None
        assert tok.special_ids == special["special_tokens"]
        for text, index in special["special_tokens"].items():
            assert tok.convert_tokens_to_ids(text) == index
        assert [tok.gmask_token_id, tok.sop_token_id] == special["prefix_tokens"] == tok.prefix_tokens
        assert tok.eop_token_id == special["special_tokens"]["eop"]
        assert tok.sp.get_piece_size() == special["sp_piece_count"]
        assert [tok.sp.id_to_piece(i) for i in range(6)] == special["pieces_0_5"]
    if gen == "chatglm3":
        roles = {r: tok.role_token_id(r) for r in ("system", "user", "assistant", "observation")}
        assert roles == {r: special["special_tokens"][f"<|{r}|>"] for r in roles}


def test_role_token_id_rejects_unknown_role(reference: Path) -> None:
    from glmtune.errors import GlmtuneError

    with pytest.raises(GlmtuneError, match="unknown ChatGLM3 role"):
        tokenizer(reference, "chatglm3").role_token_id("tool")


# ----------------------------------------------------------------------------- padding and prompts
@pytest.mark.parametrize("gen", GENS)
def test_batch_pad(reference: Path, gen: str) -> None:
    case = vectors(reference, gen)["batch_pad"]
    out = tokenizer(reference, gen)(case["prompts"], padding=True)
    assert out["input_ids"] == case["input_ids"]
    # v1: the original 4-D bool mask (True = masked) and 2-D positions; v2/v3: 1-D lists
    assert np.array(out["attention_mask"]).tolist() == case["attention_mask"]
    assert np.array(out["position_ids"]).tolist() == case["position_ids"]


@pytest.mark.parametrize("gen", ("chatglm", "chatglm2"))
def test_chat_prompt_tokenizer_calls(reference: Path, gen: str) -> None:
    tok = tokenizer(reference, gen)
    rows = [c for c in vectors(reference, gen)["chat_prompts"] if "tokenizer_call" in c]
    assert len(rows) == 3
    for case in rows:
        call = case["tokenizer_call"]
        out = tok(call["text"], **call["kwargs"])
        assert out["input_ids"].tolist() == case["input_ids"], case["name"]
        assert tok.decode(case["input_ids"][0]) == case["decoded"]
        if gen == "chatglm2":
            assert out["attention_mask"].tolist() == case["attention_mask"]
            assert out["position_ids"].tolist() == case["position_ids"]
        else:
            assert set(out) == {"input_ids"}  # the v1 tokenizer adds no mask to unpadded calls


def test_chatglm2_stream_inputs_primitives(reference: Path) -> None:
    """build_stream_inputs: encode without specials, drop the first piece, re-batch the ids."""
    tok = tokenizer(reference, "chatglm2")
    rows = [
        c for c in vectors(reference, "chatglm2")["chat_prompts"] if c["name"].endswith("build_stream_inputs")
    ]
    for case in rows[1:]:  # with history: the continuation prompt of round n + 1
        prompt = f"\n\n[Round {len(case['history']) + 1}]\n\n问：{case['query']}\n\n答："
        ids = tok.encode(prompt, add_special_tokens=False)[1:]
        out = tok([ids], add_special_tokens=False, return_tensors="pt")
        assert out["input_ids"].tolist() == case["input_ids"]
        assert out["attention_mask"].tolist() == case["attention_mask"]
        assert out["position_ids"].tolist() == case["position_ids"]


def test_chatglm3_chat_prompts_from_build_single_message(reference: Path) -> None:
    tok = tokenizer(reference, "chatglm3")
    rows = vectors(reference, "chatglm3")["chat_prompts"]
    assert len(rows) == 7
    for case in rows:
        ids = [tok.gmask_token_id, tok.sop_token_id]
        for item in case["history"]:
            content = item["content"]
            if item["role"] == "system" and "tools" in item:
                content += "\n" + json.dumps(item["tools"], indent=4, ensure_ascii=False)
            ids += tok.build_single_message(item["role"], item.get("metadata", ""), content)
        ids += tok.build_single_message(case.get("role", "user"), "", case["query"])
        ids += [tok.role_token_id("assistant")]
        assert ids == case["input_ids"][0], case["name"]
        out = tok.pad({"input_ids": [ids]}, return_tensors="pt")
        assert out["attention_mask"].tolist() == case["attention_mask"]
        assert out["position_ids"].tolist() == case["position_ids"]
        assert tok.decode(ids) == case["decoded"]
