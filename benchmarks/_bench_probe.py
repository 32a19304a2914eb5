"""Measures any ``transformers.Trainer`` from the inside, the same way for every tool.

``install()`` wraps the ``training_step`` of every Trainer created afterwards and adds a callback: per
optimizer step it records the time of on_step_end, the tokens computed (input_ids elements), the non-padding tokens
(2-D attention_mask sum; a batch without one, e.g. padding-free, has no padding), the supervised
tokens (labels != -100) and the loss. CPU seconds (all threads of the process) per step are reported
next to wall seconds: they inflate less than wall time when other jobs share the cores. ``report()`` turns that into one JSON-able dict.
Standard library + transformers only: it is imported in glmtune's and in LLaMA-Factory's venv.
"""

from __future__ import annotations

import time
from typing import Any

STEPS: list[dict[str, Any]] = []
TRAINABLE: list[int] = []
_END: list[tuple[float, float]] = []  # (wall clock, this process's CPU time) at each on_step_end


def _count(inputs: dict[str, Any]) -> tuple[int, int, int]:
    ids, mask, labels = inputs.get("input_ids"), inputs.get("attention_mask"), inputs.get("labels")
    computed = int(ids.numel()) if ids is not None else 0
    real = int(mask.sum()) if mask is not None and mask.dim() == 2 else computed
    supervised = int((labels != -100).sum()) if labels is not None else 0
    return computed, real, supervised


def install() -> None:
    """Wrap ``training_step`` of every Trainer instance created from now on (subclass overrides included)."""
    from transformers import Trainer, TrainerCallback

    class _End(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            _END.append((time.perf_counter(), time.process_time()))

    original_init = Trainer.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        TRAINABLE.append(sum(p.numel() for p in self.model.parameters() if p.requires_grad))
        self.add_callback(_End())
        step = self.training_step

        def training_step(model: Any, inputs: dict[str, Any], *rest: Any, **kw: Any) -> Any:
            computed, real, supervised = _count(inputs)
            loss = step(model, inputs, *rest, **kw)
            STEPS.append({"computed": computed, "real": real, "supervised": supervised,
                          "loss": float(loss.detach().float().mean())})
            return loss

        self.training_step = training_step

    Trainer.__init__ = init


def peak_rss_mb() -> float:
    """This process's peak RSS since its exec (VmHWM; getrusage's maxrss would include the parent's at fork)."""
    for line in open("/proc/self/status", encoding="ascii"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def report(skip: int = 1) -> dict[str, Any]:
    """Numbers over the steps after the first ``skip`` (warm-up): a step's time runs from the previous
    step's on_step_end to its own (data loading, collation, forward, backward, optimizer, logging)."""
    n = min(len(STEPS), len(_END))
    skip = min(max(skip, 1), max(n - 1, 1))
    timed = list(range(skip, n))
    seconds = _END[n - 1][0] - _END[skip - 1][0] if timed else 0.0
    cpu = _END[n - 1][1] - _END[skip - 1][1] if timed else 0.0
    real = sum(STEPS[i]["real"] for i in timed)
    computed = sum(STEPS[i]["computed"] for i in timed)
    last = [s["loss"] for s in STEPS[-10:]]
    return {
        "steps": len(STEPS),
        "timed_steps": len(timed),
        "s_per_step": seconds / len(timed) if timed else float("nan"),
        "cpu_s_per_step": cpu / len(timed) if timed else float("nan"),
        "real_tokens_per_s": real / seconds if seconds else float("nan"),
        "pad_share": 1 - real / computed if computed else float("nan"),
        "real_tokens": sum(s["real"] for s in STEPS),
        "computed_tokens": sum(s["computed"] for s in STEPS),
        "supervised_tokens": sum(s["supervised"] for s in STEPS),
        "final_loss": sum(last) / len(last) if last else float("nan"),
        "trainable_params": TRAINABLE[-1] if TRAINABLE else 0,
        "peak_rss_mb": peak_rss_mb(),
        "batch_real_tokens": [s["real"] for s in STEPS],
    }
