"""Collation: padding side/ids per family, multiples of 8, labels -100 (length grouping is transformers' own sampler, see train/runner.py)."""

from __future__ import annotations

from types import SimpleNamespace

from glmtune.data.collate import Collator, block_causal_mask


def test_left_padding_for_chatglm2_with_positions():
    tok = SimpleNamespace(glmtune_family="chatglm2", pad_token_id=0, eos_token_id=2, padding_side="left")
    batch = Collator(tok)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
                           {"input_ids": list(range(10, 20)), "labels": list(range(10, 20))}])
    assert batch["input_ids"].shape == (2, 16)
    assert batch["input_ids"][0, -3:].tolist() == [5, 6, 7] and batch["input_ids"][0, :13].eq(0).all()
    assert batch["labels"][0, :14].eq(-100).all() and batch["labels"][0, -2:].tolist() == [6, 7]
    assert batch["attention_mask"][0].tolist() == [0] * 13 + [1] * 3
    assert batch["position_ids"][0].tolist() == [0] * 13 + [0, 1, 2]


def test_v1_pads_left_with_pad_3_and_right_for_others():
    v1 = SimpleNamespace(glmtune_family="chatglm", pad_token_id=3, eos_token_id=130005, padding_side="left",
                         convert_tokens_to_ids=lambda t: {"<sop>": 130004, "[gMASK]": 130001, "[MASK]": 130000}[t])
    batch = Collator(v1)([{"input_ids": [9, 130001, 130004, 8], "labels": [-100, -100, 130004, 8]}])
    assert batch["input_ids"][0].tolist() == [3, 3, 3, 3, 9, 130001, 130004, 8]
    assert "position_ids" not in batch
    hf = SimpleNamespace(glmtune_family="hf", pad_token_id=1, eos_token_id=1, padding_side="right")
    batch = Collator(hf, pad_to_multiple_of=None)([{"input_ids": [4], "labels": [4]},
                                                   {"input_ids": [4, 5], "labels": [4, 5]}])
    assert batch["input_ids"].tolist() == [[4, 1], [4, 5]] and batch["labels"].tolist() == [[4, -100], [4, 5]]


def test_block_causal_mask():
    m = block_causal_mask([[2, 1]], 4)[0, 0]
    allowed = (m == 0).int().tolist()
    assert allowed == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


def test_hf_family_trains_on_right_padding_even_with_a_left_padding_tokenizer():
    hf = SimpleNamespace(glmtune_family="glm4", pad_token_id=0, eos_token_id=2, padding_side="left")
    batch = Collator(hf, pad_to_multiple_of=4)([{"input_ids": [7, 8], "labels": [-100, 8]},
                                                {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}])
    assert batch["input_ids"].tolist() == [[7, 8, 0, 0], [5, 6, 7, 0]]
    assert batch["labels"].tolist() == [[-100, 8, -100, -100], [-100, 6, 7, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 0]]
    assert "position_ids" not in batch
