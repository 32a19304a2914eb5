"""glmtune.encode against the official fine-tuning scripts' ids/labels (reference step 4) and
build_chat_input against the official chat() prompts (reference step 2)."""

from __future__ import annotations

import json

import pytest

import glmtune
from glmtune.data.encode import encode_conversation

GENERATIONS = ("chatglm", "chatglm2", "chatglm3")
_TOKENIZERS: dict[str, object] = {}


def tokenizer(reference, gen):
    if gen not in _TOKENIZERS:
        _TOKENIZERS[gen] = glmtune.load_tokenizer(reference / "checkpoints" / f"{gen}-mini")
    return _TOKENIZERS[gen]


def chat_messages(gen: str, case: dict) -> list[dict]:
    if gen == "chatglm3":
        return [*case["history"], {"role": case.get("role", "user"), "content": case["query"]}]
    msgs = []
    for q, a in case["history"]:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return [*msgs, {"role": "user", "content": case["query"]}]


@pytest.mark.parametrize("gen", GENERATIONS)
def test_chat_prompts_match_official_chat(reference, gen):
    tok = tokenizer(reference, gen)
    vectors = json.loads((reference / "tokenizers" / gen / "vectors.json").read_text(encoding="utf-8"))
    cases = [c for c in vectors["chat_prompts"] if "__" not in c["name"]]
    assert cases
    for case in cases:
        ids = glmtune.build_chat_input(tok, chat_messages(gen, case))
        assert ids == case["input_ids"][0], case["name"]


def _settings(gen: str, conv: dict) -> tuple[list[dict], dict]:
    args = conv["args"]
    if gen == "chatglm3":
        return conv["messages"], {"max_source_length": args["max_input_length"],
                                  "max_target_length": args["max_output_length"]}
    kwargs = {
        "max_source_length": args["max_source_length"],
        "max_target_length": args["max_target_length"],
        "multi_turn": "last",  # the official ptuning scripts learn the last answer only
        "round_prompt_always": args["history_column"] is not None,
    }
    # the chatglm/chatglm2 scripts get no system column (the chatglm3 file's system rows note it)
    return [m for m in conv["messages"] if m["role"] != "system"], kwargs


@pytest.mark.parametrize("gen", GENERATIONS)
def test_encodings_match_official_scripts(reference, gen):
    tok = tokenizer(reference, gen)
    data = json.loads((reference / "encodings" / f"{gen}.json").read_text(encoding="utf-8"))
    exact = eos_kept = dropped = 0
    for conv in data["conversations"]:
        messages, kwargs = _settings(gen, conv)
        result = encode_conversation(tok, messages, **kwargs)
        n = conv["unpadded_length"]
        ids, labels = conv["input_ids"][:n], conv["labels"][:n]
        if not result.examples:
            # the official cut left no target (NaN loss) or only the reply's first piece with its eos
            # cut; glmtune drops such an example and counts it
            assert conv["truncated"] and conv["num_target_tokens"] <= 1 and result.dropped == 1, conv["id"]
            dropped += 1
            continue
        (ex,) = result.examples
        if ex["input_ids"] == ids:
            assert ex["labels"] == labels, conv["id"]
            exact += 1
            continue
        # the official cut removed the closing eos: glmtune keeps it (and learns it) instead
        assert gen == "chatglm3" and conv["truncated"], conv["id"]
        k = len(ex["input_ids"]) - 1
        assert ex["input_ids"][:k] == ids[:k] and ex["labels"][:k] == labels[:k], conv["id"]
        assert ex["input_ids"][-1] == ex["labels"][-1] == tok.eos_token_id
        assert result.truncated == 1
        eos_kept += 1
    if gen == "chatglm3":
        assert (exact, eos_kept, dropped) == (34, 4, 2)
    else:
        assert exact == len(data["conversations"]) == 40


def test_chatglm_v1_single_turn_default_is_bare_query(reference):
    tok = tokenizer(reference, "chatglm")
    msgs = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "好"}]
    bare = glmtune.encode(tok, msgs)
    rounds = glmtune.encode(tok, msgs, round_prompt_always=True)
    query = tok.encode("你好", add_special_tokens=False)
    assert bare["input_ids"][: len(query) + 2] == [*query, 130001, 130004]
    assert len(rounds["input_ids"]) > len(bare["input_ids"])
