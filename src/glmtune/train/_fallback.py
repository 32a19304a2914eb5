"""TEMPORARY stand-ins for the encoding module (glmtune.data.tokenized / collate); removed once it lands."""

from __future__ import annotations

import json
from typing import Any


def tokenize(cfg: Any, tokenizer: Any, paths: list[str]) -> Any:
    import datasets

    rows = {"input_ids": [], "labels": [], "length": []}
    for path in paths:
        for line in open(path, encoding="utf-8"):
            if not line.strip():
                continue
            msgs = [m for m in json.loads(line)["messages"] if m["role"] in ("user", "assistant")]
            prompt, rnd = "", 1
            ids: list[int] = list(tokenizer.prefix_tokens)
            labels: list[int] = [-100] * len(ids)
            for m in msgs:
                if m["role"] == "user":
                    prompt = f"[Round {rnd}]\n\n问：{m['content']}\n\n答："
                    p = tokenizer.encode(prompt if rnd == 1 else "\n\n" + prompt, add_special_tokens=False)
                    ids += p
                    labels += [-100] * len(p)
                    rnd += 1
                else:
                    a = tokenizer.encode(m["content"], add_special_tokens=False) + [tokenizer.eos_token_id]
                    ids += a
                    labels += a
            ids, labels = ids[: cfg.cutoff_len or 1024], labels[: cfg.cutoff_len or 1024]
            rows["input_ids"].append(ids)
            rows["labels"].append(labels)
            rows["length"].append(len(ids))
    return datasets.Dataset.from_dict(rows)


def make_collator(tokenizer: Any, packing: bool = False) -> Any:
    import torch

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        n = max(len(b["input_ids"]) for b in batch)
        pad = tokenizer.pad_token_id or 0
        ids = torch.tensor([b["input_ids"] + [pad] * (n - len(b["input_ids"])) for b in batch])
        lab = torch.tensor([b["labels"] + [-100] * (n - len(b["labels"])) for b in batch])
        att = torch.tensor([[1] * len(b["input_ids"]) + [0] * (n - len(b["input_ids"])) for b in batch])
        return {"input_ids": ids, "labels": lab, "attention_mask": att}

    return collate


def build_chat_input(tokenizer: Any, messages: list[dict[str, Any]]) -> dict[str, Any]:
    prompt = f"[Round 1]\n\n问：{messages[-1]['content']}\n\n答："
    return {"input_ids": list(tokenizer.prefix_tokens) + tokenizer.encode(prompt, add_special_tokens=False)}
