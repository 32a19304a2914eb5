"""TrainConfig validation names the key; precision resolution on CPU."""

from __future__ import annotations

import pytest
import torch

from glmtune.config import load_config
from glmtune.errors import ConfigError
from glmtune.train.config import TrainConfig
from glmtune.train.precision import resolve_precision

BASE = ["model=builtin:tiny-chatglm2", "data=x.jsonl"]


def cfg(*overrides: str) -> TrainConfig:
    return load_config(TrainConfig, None, [*BASE, *overrides])


def test_overrides_reach_nested_blocks():
    c = cfg("lora.r=16", "rope_scaling={type: dynamic, factor: 4}", "val_size=20", "chunked_loss=512")
    assert c.lora.r == 16 and c.rope_scaling.type == "dynamic" and c.rope_scaling.factor == 4.0
    assert c.val_size == 20 and isinstance(c.val_size, int) and c.chunked_loss == 512
    assert cfg("val_size=0.1").val_size == 0.1


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("batch_size=0", "batch_size"), ("learning_rate=-1", "learning_rate"), ("method=prefix", "method"),
        ("max_source_length=64", "max_source_length"), ("val_size=1.5", "val_size"), ("lora.r=0", "lora.r"),
        ("rope_scaling.type=ntk", "rope_scaling.type"), ("precision=int8", "precision"), ("nope=1", "nope"),
    ],
)  # fmt: skip
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        cfg(override)
    message = str(err.value)  # the key leads the message (or is the quoted unknown key)
    assert message.startswith((f"{key}:", f"{key} ", f"unknown config key '{key}'")), message


def test_required_keys():
    with pytest.raises(ConfigError, match="model"):
        load_config(TrainConfig, None, ["data=x.jsonl"])
    with pytest.raises(ConfigError, match="data"):
        load_config(TrainConfig, None, ["model=m"])
    with pytest.raises(ConfigError, match="adapter"):
        cfg("method=full", "adapter=some/dir")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU behaviour")
def test_precision_on_cpu():
    auto = resolve_precision("auto", "lora")
    assert auto.name == "fp32" and auto.load_dtype == torch.float32 and not auto.bf16 and not auto.fp16
    bf16 = resolve_precision("bf16", "lora")
    assert bf16.bf16 and bf16.load_dtype == torch.bfloat16
    assert resolve_precision("bf16", "full").load_dtype == torch.float32  # fp32 masters for trained weights
    with pytest.raises(ConfigError, match="precision: fp16"):
        resolve_precision("fp16", "lora")
