"""Packing: bins respect the limit, and a packed batch's per-example loss equals the unpacked loss."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import glmtune
from glmtune.data.collate import Collator
from glmtune.data.packing import pack_indices, pack_rows


def test_pack_indices_fit_and_cover():
    lengths = [5, 9, 3, 7, 12, 1, 4, 8]
    bins = pack_indices(lengths, 12)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 12 for b in bins)
    assert len(bins) == 5  # total 49 tokens -> at least 5 rows of 12


def test_pack_rows_first_label_of_each_example_ignored():
    rows = pack_rows([{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}, {"input_ids": [4, 5], "labels": [4, 5]}], 8)
    assert rows == [{"input_ids": [1, 2, 3, 4, 5], "labels": [-100, 2, 3, -100, 5], "seq_lens": [3, 2], "length": 5}]


def _examples(gen: str, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for p, a in [(6, 4), (3, 7), (9, 2)]:
        prompt = torch.randint(5, 999, (p,), generator=g).tolist()
        answer = torch.randint(5, 999, (a,), generator=g).tolist()
        if gen == "chatglm":  # prompt [gMASK] <sop> answer <eop>, learned from <sop>
            ids = prompt + [1001, 1004] + answer + [1005]
            labels = [-100] * (p + 1) + ids[p + 1:]
        else:  # [gMASK] sop prompt answer eos
            ids = [1001, 1003] + prompt + answer + [2]
            labels = [-100] * (2 + p) + answer + [2]
        out.append({"input_ids": ids, "labels": labels})
    return out


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:-1].float(), labels[1:], ignore_index=-100)


@pytest.mark.parametrize("gen", ["chatglm2", "chatglm3", "chatglm"])
def test_packed_loss_equals_unpacked(reference, gen):
    model = glmtune.load_model(reference / "models" / f"{gen}-tiny").eval()
    examples = _examples(gen)
    with torch.no_grad():
        unpacked = [
            _loss(model(input_ids=torch.tensor([ex["input_ids"]])).logits[0], torch.tensor(ex["labels"]))
            for ex in examples
        ]
        stub = SimpleNamespace(glmtune_family=gen, pad_token_id=3 if gen == "chatglm" else 0, eos_token_id=2,
                               padding_side="left")
        collator = Collator(stub, packing=True, config=model.config if gen == "chatglm" else None)
        rows = pack_rows(examples, 64)
        assert len(rows) == 1 and rows[0]["seq_lens"]
        batch = collator(rows)
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
    start = 0
    order = rows[0]["seq_lens"]
    assert sorted(order) == sorted(len(e["input_ids"]) for e in examples)
    for ex, ref in zip(examples, unpacked):  # pack_rows keeps the input order inside a row
        n = len(ex["input_ids"])
        packed = _loss(logits[start: start + n], torch.tensor(ex["labels"]))
        assert torch.allclose(packed, ref, atol=1e-5), (gen, float(packed), float(ref))
        start += n
