"""``glmtune stats DATA``: how long the conversations of a converted JSONL file are.

Prints turns per conversation and the length distribution of user and assistant texts in
characters (and in tokens with ``--tokenizer``), so ``max_source_length``-style limits can be
chosen from data, not guessed; ``--plot`` draws the histograms.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from glmtune.data.records import read_records
from glmtune.utils.io import atomic_open

COLUMNS = ("count", "mean", "std", "min", "25%", "50%", "75%", "90%", "max")


def describe(values: Sequence[float]) -> dict[str, float]:
    """count, mean, std (population), min, quartiles, 90th percentile and max."""
    import numpy as np  # on first use: `glmtune stats --help` and data errors need no numpy

    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return dict.fromkeys(COLUMNS, 0.0)
    q25, q50, q75, q90 = np.percentile(arr, [25, 50, 75, 90])
    return {
        "count": float(arr.size), "mean": float(arr.mean()), "std": float(arr.std()), "min": float(arr.min()),
        "25%": float(q25), "50%": float(q50), "75%": float(q75), "90%": float(q90), "max": float(arr.max()),
    }  # fmt: skip


def collect(
    records: list[dict[str, Any]], count: Callable[[str], int] = len, unit: str = "chars"
) -> dict[str, list[float]]:
    """Per-series values: turns per conversation (once) and user/assistant text lengths in ``unit``."""
    series: dict[str, list[float]] = {f"user {unit}": [], f"assistant {unit}": []}
    turns: list[float] = []
    for record in records:
        n_user = 0
        for msg in record["messages"]:
            if msg["role"] in ("user", "assistant"):
                series[f"{msg['role']} {unit}"].append(count(msg["content"]))
                n_user += msg["role"] == "user"
        turns.append(n_user)
    return {"turns": turns, **series} if unit == "chars" else series


def table(series: dict[str, list[float]]) -> str:
    """A fixed-width table, one row per series."""
    width = max(len(name) for name in series)
    lines = [f"{'':<{width}}" + "".join(f"{c:>9}" for c in COLUMNS)]
    for name, values in series.items():
        stats = describe(values)
        cells = [f"{stats['count']:>9.0f}"] + [f"{stats[c]:>9.1f}" for c in COLUMNS[1:]]
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)


def plot(series: dict[str, list[float]], path: str | Path) -> None:
    """One histogram per series in a single PNG (matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], series.items()):
        ax.hist(values, bins=min(50, max(1, len(set(values)))), color="#4c72b0")
        ax.set_title(name)
        ax.set_ylabel("count")
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)


def _token_counter(path: str) -> Callable[[str], int]:
    """Tokens of a text with the tokenizer of checkpoint folder ``path`` (no special tokens)."""
    from glmtune import load_tokenizer

    tokenizer = load_tokenizer(path)
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="glmtune stats", description=__doc__.split("\n")[0])
    p.add_argument("data", metavar="DATA", help="a converted JSONL file (output of glmtune convert)")
    p.add_argument("--tokenizer", metavar="PATH", help="also count tokens with this model's tokenizer")
    p.add_argument("--plot", metavar="FILE.png", help="draw the histograms into this PNG")
    args = p.parse_args(argv)
    records = read_records(args.data)
    series = collect(records)
    if args.tokenizer:
        series.update(collect(records, _token_counter(args.tokenizer), unit="tokens"))
    print(f"{args.data}: {len(records)} conversations")
    print(table(series))
    if args.plot:
        plot(series, args.plot)
        print(f"wrote {args.plot}")
    return 0
