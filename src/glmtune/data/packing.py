"""Packing: several examples in one row of at most ``cutoff_len`` tokens, with no attention across them.

Rows keep ``seq_lens`` (the example lengths in order) so the collator can restart positions per
example and build block-diagonal masks (``glmtune.data.collate``). The first label of every
example is set to -100: it is never predicted inside its own example, and in a packed row it would
otherwise be "predicted" from the previous example's last token. With that, a packed row's loss per
example equals the unpacked loss.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from glmtune.errors import GlmtuneError

IGNORE_INDEX = -100


def pack_indices(lengths: Sequence[int], cutoff_len: int) -> list[list[int]]:
    """Best-fit-decreasing bins of example indices; each bin's total length is <= ``cutoff_len``.

    An example longer than ``cutoff_len`` gets a row of its own (tokenize with ``cutoff_len`` to avoid it).
    """
    if cutoff_len < 1:
        raise GlmtuneError(f"packing: cutoff_len must be positive (got {cutoff_len})")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (remaining capacity, bin index)
    for i in order:
        n = lengths[i]
        if n >= cutoff_len:
            bins.append([i])
            continue
        pos = bisect.bisect_left(free, (n, -1))
        if pos < len(free):
            room, b = free.pop(pos)
            bins[b].append(i)
            if room - n > 0:
                bisect.insort(free, (room - n, b))
        else:
            bins.append([i])
            bisect.insort(free, (cutoff_len - n, len(bins) - 1))
    for b in bins:
        b.sort()
    bins.sort(key=lambda b: b[0])
    return bins


def pack_rows(examples: Sequence[dict[str, Any]], cutoff_len: int) -> list[dict[str, Any]]:
    """Packed rows (``input_ids``, ``labels``, ``seq_lens``, ``length``) of examples with input_ids/labels."""
    rows = []
    for group in pack_indices([len(e["input_ids"]) for e in examples], cutoff_len):
        ids: list[int] = []
        labels: list[int] = []
        seq_lens = []
        for i in group:
            ex_ids, ex_labels = list(examples[i]["input_ids"]), list(examples[i]["labels"])
            ids += ex_ids
            labels += [IGNORE_INDEX, *ex_labels[1:]]
            seq_lens.append(len(ex_ids))
        rows.append({"input_ids": ids, "labels": labels, "seq_lens": seq_lens, "length": len(ids)})
    return rows


def pack_dataset(dataset: Any, cutoff_len: int) -> Any:
    """A ``datasets.Dataset`` of packed rows from a tokenized dataset (columns input_ids, labels)."""
    import datasets

    lengths = dataset["length"] if "length" in dataset.column_names else [len(x) for x in dataset["input_ids"]]
    ids_col, labels_col = dataset["input_ids"], dataset["labels"]
    out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "seq_lens": [], "length": []}
    for group in pack_indices(list(lengths), cutoff_len):
        row = pack_rows([{"input_ids": ids_col[i], "labels": labels_col[i]} for i in group], 1 << 62)[0]
        for key in out:
            out[key].append(row[key])
    return datasets.Dataset.from_dict(out)
