"""Native ChatGLM tokenizers: loading, save/reload, collators, num_image_tokens, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

GENS = ("chatglm", "chatglm2", "chatglm3")
MODEL_FILES = {"chatglm": "ice_text.model", "chatglm2": "tokenizer.model", "chatglm3": "tokenizer.model"}


def _vectors(reference: Path, gen: str) -> dict:
    return json.loads((reference / "tokenizers" / gen / "vectors.json").read_text(encoding="utf-8"))


def _load(reference: Path, gen: str, **kwargs):
    import glmtune

    return glmtune.load_tokenizer(reference / "checkpoints" / f"{gen}-mini", **kwargs)


@pytest.mark.parametrize("gen", GENS)
def test_mini_checkpoint_loads_by_path_only(reference: Path, gen: str) -> None:
    from transformers import PreTrainedTokenizer

    import glmtune

    folder = reference / "checkpoints" / f"{gen}-mini"
    assert glmtune.detect_family(folder) == gen
    tok = glmtune.load_tokenizer(folder)
    assert isinstance(tok, PreTrainedTokenizer)
    assert tok.glmtune_family == gen
    assert Path(tok.vocab_file) == folder / MODEL_FILES[gen]


@pytest.mark.parametrize("gen", GENS)
def test_save_pretrained_round_trip(reference: Path, gen: str, tmp_path: Path) -> None:
    import glmtune

    tok = _load(reference, gen)
    tok.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert "auto_map" not in written
    assert written["glmtune_family"] == gen
    assert written["tokenizer_class"] == type(tok).__name__
    model_file = tmp_path / MODEL_FILES[gen]
    assert model_file.read_bytes() == Path(tok.vocab_file).read_bytes()
    assert not (tmp_path / "config.json").exists()

    again = glmtune.load_tokenizer(tmp_path)  # family from the saved tokenizer_config.json alone
    assert type(again) is type(tok)
    assert again.get_vocab() == tok.get_vocab()
    assert (again.eos_token_id, again.pad_token_id, again.bos_token_id) == (
        tok.eos_token_id,
        tok.pad_token_id,
        tok.bos_token_id,
    )
    assert again.padding_side == "left"
    assert again.clean_up_tokenization_spaces == tok.clean_up_tokenization_spaces
    for case in _vectors(reference, gen)["encode"]:
        assert again.tokenize(case["text"]) == case["tokens"]
        assert again.encode(case["text"], add_special_tokens=False) == case["ids"]
        assert again.encode(case["text"]) == case["ids_with_special"]
    for case in _vectors(reference, gen)["decode"]:
        assert again.decode(case["ids"]) == case["text"]


def test_chatglm3_encode_special_tokens_survives_round_trip(reference: Path, tmp_path: Path) -> None:
    import glmtune

    _load(reference, "chatglm3", encode_special_tokens=True).save_pretrained(tmp_path)
    again = glmtune.load_tokenizer(tmp_path)
    assert again.encode_special_tokens is True
    for case in _vectors(reference, "chatglm3")["encode_special_tokens_true"]:
        assert again.encode(case["text"], add_special_tokens=False) == case["ids"]


def test_chatglm_num_image_tokens_shifts_ids(reference: Path) -> None:
    """The pre-v1.1 layout: 20000 image tokens before the text ids ([gMASK] = 150001 ...)."""
    plain = _load(reference, "chatglm")
    tok = _load(reference, "chatglm", num_image_tokens=20000)
    assert tok.vocab_size == len(tok) == 150344
    assert (tok.mask_token_id, tok.gmask_token_id, tok.sop_token_id, tok.eop_token_id) == (
        150000,
        150001,
        150004,
        150005,
    )
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) == (
        150004,
        150005,
        20003,
        20000,
    )
    assert tok.special_ids["[gMASK]"] == 150001 and tok.special_ids["<ENC>"] == 150006
    text = "你好\n  世界 <sop> [gMASK]"
    ids = plain.encode(text)
    assert tok.encode(text) == [i + 20000 for i in ids]
    assert tok.decode(tok.encode(text)) == plain.decode(ids)
    assert tok.convert_ids_to_tokens(7) == "<image_7>" and tok.convert_tokens_to_ids("<image_7>") == 7
    assert tok(["你好", "Hello world, how are you"], padding=True)["input_ids"][0][0] == 20003


@pytest.mark.parametrize("gen", ("chatglm2", "chatglm3"))
def test_data_collators_pad_left_with_positions(reference: Path, gen: str) -> None:
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding

    tok = _load(reference, gen)
    short, long = tok.encode("你好"), tok.encode("Hello world, how are you?")
    features = [{"input_ids": short, "labels": short}, {"input_ids": long, "labels": long}]
    batch = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100)(features)
    pad = len(long) - len(short)
    assert batch["input_ids"].tolist() == [[0] * pad + short, long]
    assert batch["labels"].tolist() == [[-100] * pad + short, long]
    assert batch["attention_mask"].tolist() == [[0] * pad + [1] * len(short), [1] * len(long)]
    assert batch["position_ids"].tolist() == [[0] * pad + list(range(len(short))), list(range(len(long)))]

    plain = DataCollatorWithPadding(tok, pad_to_multiple_of=8)([{"input_ids": short}, {"input_ids": long}])
    width = -(-len(long) // 8) * 8
    assert plain["input_ids"].shape == (2, width) and plain["position_ids"].shape == (2, width)
    assert plain["input_ids"][1].tolist() == [0] * (width - len(long)) + long
    assert plain["position_ids"][1].tolist() == [0] * (width - len(long)) + list(range(len(long)))


def test_chatglm_collator_pads_ids_left_with_pad_3(reference: Path) -> None:
    from transformers import DataCollatorForSeq2Seq

    tok = _load(reference, "chatglm")
    short, long = tok.encode("你好"), tok.encode("Hello world, how are you?")
    features = [{"input_ids": short, "labels": short}, {"input_ids": long, "labels": long}]
    batch = DataCollatorForSeq2Seq(tok, padding=False, label_pad_token_id=-100)([features[1]])
    assert set(batch) == {"input_ids", "labels"}  # unpadded: ids only, as in the official v1 training
    batch = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100)(features)
    pad = len(long) - len(short)
    assert batch["input_ids"].tolist() == [[3] * pad + short, long]
    assert batch["labels"].tolist() == [[-100] * pad + short, long]
    assert tuple(batch["attention_mask"].shape) == (2, 1, len(long), len(long))
    assert tuple(batch["position_ids"].shape) == (2, 2, len(long))
    assert bool(batch["attention_mask"][0, 0, 0, 0]) is True  # a pad row is masked


def test_right_padding_and_truncation_still_work(reference: Path) -> None:
    tok = _load(reference, "chatglm2")
    out = tok(["你好", "Hello world"], padding="max_length", max_length=6, padding_side="right")
    assert out["input_ids"][0] == [64790, 64792, 36474, 54591, 0, 0]
    assert out["position_ids"][0] == [0, 1, 2, 3, 0, 0]
    cut = tok("Hello, world! How are you today?", truncation=True, max_length=5)["input_ids"]
    assert cut == [64790, 64792, 13755, 30932, 993]
    out = tok("你好", "Hello world")
    assert out["input_ids"] == [64790, 64792, 36474, 54591, 13755, 993, 2]
    assert tok.get_special_tokens_mask([36474], [13755]) == [1, 1, 0, 0, 1]


def test_encode_plain_conversions(reference: Path) -> None:
    tok = _load(reference, "chatglm3")
    assert tok.convert_tokens_to_ids(["<|user|>", "▁你", "sop"]) == [64795, 36474, 64792]
    assert tok.convert_ids_to_tokens([64795, 36474]) == ["<|user|>", "▁你"]
    assert tok.build_single_message("assistant", "get_weather", "ok")[:1] == [64796]
    assert tok.decode([[64790, 64792, 36474], [36474, 54591]]) == ["[gMASK]sop 你", "你好"]


def test_missing_files_are_clear_errors(tmp_path: Path, reference: Path) -> None:
    from glmtune.errors import GlmtuneError
    from glmtune.models.tokenization import chatglm, chatglm2

    with pytest.raises(GlmtuneError, match="not found"):
        chatglm2.load_tokenizer(tmp_path / "nope")
    with pytest.raises(GlmtuneError, match="has no ice_text.model"):
        chatglm.load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(b"not a model")
    with pytest.raises(GlmtuneError, match="not a SentencePiece model"):
        chatglm2.load_tokenizer(tmp_path)


def test_model_file_path_is_accepted(reference: Path) -> None:
    from glmtune.models.tokenization import chatglm3

    tok = chatglm3.load_tokenizer(reference / "tokenizers" / "chatglm2" / "tokenizer.model")
    assert type(tok).__name__ == "ChatGLM3Tokenizer" and tok.encode("你好") == [64790, 64792, 36474, 54591]
    assert np.array_equal(tok(["你好"], return_tensors="np")["position_ids"], [[0, 1, 2, 3]])


@pytest.mark.parametrize("gen", ("chatglm", "chatglm3"))
def test_pickle_and_class_from_pretrained(reference: Path, gen: str, tmp_path: Path) -> None:
    """datasets.map / DataLoader workers pickle the tokenizer; from_pretrained of our class reads a save."""
    import pickle

    from glmtune.models.tokenization import ChatGLM3Tokenizer, ChatGLMTokenizer

    tok = _load(reference, gen)
    text = "a <sop> b\n  c <|user|>"
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode(text) == tok.encode(text) and len(clone) == len(tok)
    tok.save_pretrained(tmp_path)
    cls = ChatGLMTokenizer if gen == "chatglm" else ChatGLM3Tokenizer
    again = cls.from_pretrained(tmp_path)
    assert again.encode(text) == tok.encode(text)
    assert again.decode(tok.encode(text)) == tok.decode(tok.encode(text))
