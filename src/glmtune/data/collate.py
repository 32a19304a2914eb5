"""Batch collation: dynamic padding (to a multiple of 8) on the family's side, and packed rows.

What differs per family comes from its ``Family`` record (``glmtune.models.family``):
``padding_side`` and ``positions``. Unpacked batches are padded to the longest example: a "left"
family (the ChatGLM ones) on the tokenizer's ``padding_side`` (left, as their tokenizers and
``chat()`` do, so training batches are shaped like inference ones), a "right" family (glm4/hf)
always on the right (no position shift); with the tokenizer's pad id (v1: 3, v2/v3: 0); labels are
padded with -100. Families whose positions come from the tokenizer layout (ChatGLM2/3) also get
``position_ids`` (0 on pads, 0.. on tokens, as their tokenizer gives them); GLM v1's 2-D positions
(ChatGLM-6B) get a 2-D ``attention_mask`` from which the v1 model builds its own 4-D masks and 2-D
positions on the real tokens.

Packed rows (``seq_lens`` from ``glmtune.data.packing``) are right-padded; positions restart per
example. v2/v3/hf get a 4-D block-diagonal causal mask (additive, 0 / dtype min) so no example
attends to another whatever the attention backend; v1 gets the v1 model's own block mask and
[B, 2, L] positions (``glmtune.models.chatglm_v1.masks.packed_inputs``).

Flattened batches (``flatten=True``, what ``glmtune train`` uses by default, ``padding_free``): the
whole batch is one unpadded row with positions restarting per example and no mask; on
``GlmForCausalLM`` the ``glmtune_flat_sdpa`` attention keeps examples apart
(``glmtune.models.glm_mapping.flat_attention``), and the v1 module builds each example's own mask and
2-D positions (``glmtune.models.chatglm_v1.masks.flattened_layout``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from glmtune.data.templates import family_of
from glmtune.models.family import FAMILIES

IGNORE_INDEX = -100


def _round_up(n: int, multiple: int | None) -> int:
    return n if not multiple else -(-n // multiple) * multiple


def block_causal_mask(seq_lens: list[list[int]], length: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[B, 1, L, L] additive mask: causal inside each example, nothing across examples or into padding."""
    batch = len(seq_lens)
    seg = torch.full((batch, length), -1, dtype=torch.long)
    for b, lens in enumerate(seq_lens):
        start = 0
        for k, n in enumerate(lens):
            seg[b, start: start + n] = k
            start += n
        seg[b, start:] = len(lens)  # the padding tail is its own block (its loss is ignored)
    idx = torch.arange(length)
    allowed = (seg[:, :, None] == seg[:, None, :]) & (idx[None, :] <= idx[:, None])[None]
    mask = torch.zeros(batch, 1, length, length, dtype=dtype)
    return mask.masked_fill(~allowed[:, None], torch.finfo(dtype).min)


class Collator:
    """Callable turning a list of examples (``input_ids``, ``labels``[, ``seq_lens``]) into tensors."""

    def __init__(self, tokenizer: Any, packing: bool = False, pad_to_multiple_of: int | None = 8,
                 config: Any = None, mask_dtype: torch.dtype = torch.float32, flatten: bool = False) -> None:
        self.family = family_of(tokenizer)
        fam = FAMILIES.get(self.family) if self.family in FAMILIES else None
        padding_side = fam.padding_side if fam else "right"  # a family glmtune does not know: a plain causal LM
        self.positions = fam.positions if fam else "model"  # Family.positions: "model", "tokenizer" or "glm_2d"
        self.packing = packing
        self.flatten = flatten
        self.multiple = pad_to_multiple_of
        self.mask_dtype = mask_dtype
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (tokenizer.eos_token_id or 0))
        # ChatGLM models pad on their tokenizer's side (left, like chat()); any other causal LM trains on
        # right padding: trailing pads are never attended to, and absolute-position models would
        # otherwise see positions shifted by the pad count.
        if padding_side == "left":
            self.side = getattr(tokenizer, "padding_side", "left") or "left"
        else:
            self.side = "right"
        self.config = config
        if self.positions == "glm_2d" and config is None:  # the special ids the v1 packed mask needs
            self.config = SimpleNamespace(
                bos_token_id=tokenizer.convert_tokens_to_ids("<sop>"),
                gmask_token_id=tokenizer.convert_tokens_to_ids("[gMASK]"),
                mask_token_id=tokenizer.convert_tokens_to_ids("[MASK]"),
                pad_token_id=self.pad_id,
            )

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.flatten:
            return flatten_batch(features)
        if self.packing:
            return self._packed(features)
        length = _round_up(max(len(f["input_ids"]) for f in features), self.multiple)
        ids, labels, attn, pos = [], [], [], []
        for f in features:
            n = len(f["input_ids"])
            pad = length - n
            if self.side == "left":
                ids.append([self.pad_id] * pad + list(f["input_ids"]))
                labels.append([IGNORE_INDEX] * pad + list(f["labels"]))
                attn.append([0] * pad + [1] * n)
                pos.append([0] * pad + list(range(n)))
            else:
                ids.append(list(f["input_ids"]) + [self.pad_id] * pad)
                labels.append(list(f["labels"]) + [IGNORE_INDEX] * pad)
                attn.append([1] * n + [0] * pad)
                pos.append(list(range(n)) + [0] * pad)
        batch = {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "attention_mask": torch.tensor(attn, dtype=torch.long),
        }
        if self.positions == "tokenizer":
            batch["position_ids"] = torch.tensor(pos, dtype=torch.long)
        return batch

    def _packed(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = _round_up(max(len(f["input_ids"]) for f in features), self.multiple)
        seq_lens = [list(f.get("seq_lens") or [len(f["input_ids"])]) for f in features]
        labels = torch.tensor([list(f["labels"]) + [IGNORE_INDEX] * (length - len(f["labels"])) for f in features])
        if self.positions == "glm_2d":
            from glmtune.models.chatglm_v1.masks import packed_inputs

            parts = []
            for f, lens in zip(features, seq_lens):
                ids, start, examples = list(f["input_ids"]), 0, []
                for n in lens:
                    examples.append(ids[start: start + n])
                    start += n
                parts.append(packed_inputs(examples, self.config, length=length))
            return {
                "input_ids": torch.cat([p[0] for p in parts]),
                "attention_mask": torch.cat([p[1] for p in parts]),
                "position_ids": torch.cat([p[2] for p in parts]),
                "labels": labels,
            }
        ids = torch.tensor([list(f["input_ids"]) + [self.pad_id] * (length - len(f["input_ids"])) for f in features])
        pos = torch.zeros(len(features), length, dtype=torch.long)
        for b, lens in enumerate(seq_lens):
            start = 0
            for n in [*lens, length - sum(lens)]:
                pos[b, start: start + n] = torch.arange(n)
                start += n
        return {
            "input_ids": ids,
            "labels": labels,
            "position_ids": pos,
            "attention_mask": block_causal_mask(seq_lens, length, self.mask_dtype),
        }


def flatten_batch(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """One row of every example back to back (packed rows split at ``seq_lens``), positions restarting at
    0 per example, no padding and no mask. Each example's first label becomes -100: it would otherwise be
    predicted from the previous example's last token (unpadded, nothing ever predicts it)."""
    ids: list[int] = []
    labels: list[int] = []
    pos: list[int] = []
    for f in features:
        start = 0
        for n in f.get("seq_lens") or [len(f["input_ids"])]:
            ids += f["input_ids"][start: start + n]
            labels += [IGNORE_INDEX, *f["labels"][start + 1: start + n]]
            pos += range(n)
            start += n
    return {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "labels": torch.tensor([labels], dtype=torch.long),
        "position_ids": torch.tensor([pos], dtype=torch.long),
    }


def make_collator(tokenizer: Any, packing: bool = False, **kwargs: Any) -> Collator:
    """The collator for ``tokenizer``'s family (what ``glmtune train`` uses)."""
    return Collator(tokenizer, packing=packing, **kwargs)
