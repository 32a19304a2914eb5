"""``loss.png``: train and eval loss against the step, drawn from train_log.jsonl."""

from __future__ import annotations

from pathlib import Path

from glmtune.train.callbacks import read_log
from glmtune.utils.io import atomic_open


def plot_loss(log_path: str | Path, out_path: str | Path, title: str = "glmtune train") -> Path | None:
    """Write the loss curve PNG (atomically); None when the log has no loss yet."""
    rows = read_log(log_path)
    train = [(r["step"], r["loss"]) for r in rows if isinstance(r.get("loss"), (int, float))]
    evals = [(r["step"], r["eval_loss"]) for r in rows if isinstance(r.get("eval_loss"), (int, float))]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    if evals:
        ax.plot(*zip(*evals), label="eval loss", color="tab:orange", marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out_path)
    with atomic_open(out, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)
    return out
