"""Multi-process settings that are glmtune keys rather than Trainer ones: FSDP.

``fsdp: "full_shard auto_wrap"`` is the familiar Trainer spelling; it is translated here into the
FSDP2 ``fsdp_config`` transformers wants (the string form is deprecated there), always with a full state
dict on save, so the final weights are gathered onto rank 0 and written in the method's own format.
"""

from __future__ import annotations

from typing import Any

from glmtune.errors import ConfigError

FSDP_OPTIONS = ("full_shard", "shard_grad_op", "offload", "auto_wrap")


def check_fsdp(value: str | None) -> list[str]:
    """The options of an ``fsdp`` value; unknown ones fail naming the key."""
    options = (value or "").split()
    bad = [o for o in options if o not in FSDP_OPTIONS]
    if bad:
        raise ConfigError(f"fsdp: unknown option {bad[0]!r}; use any of: {', '.join(FSDP_OPTIONS)}")
    if "full_shard" in options and "shard_grad_op" in options:
        raise ConfigError("fsdp: full_shard and shard_grad_op exclude each other; pick one")
    return options


def fsdp_arguments(value: str | None, gpu: bool) -> dict[str, Any]:
    """``TrainingArguments`` kwargs for ``fsdp`` (``{}`` when unset).

    accelerate only shards on accelerators: on CPU it would silently run plain DDP instead, so that is
    refused rather than pretending.
    """
    options = check_fsdp(value)
    if not options:
        return {}
    if not gpu:
        raise ConfigError("fsdp: needs GPUs (accelerate runs FSDP only on accelerators; on CPU torchrun "
                          "would silently train plain DDP); drop fsdp for CPU runs")
    return {"fsdp": True, "fsdp_config": {
        "version": 2,
        "state_dict_type": "FULL_STATE_DICT",  # the final save gathers every shard onto rank 0
        "reshard_after_forward": "shard_grad_op" not in options,
        "cpu_offload": "offload" in options,
    }}  # fmt: skip
