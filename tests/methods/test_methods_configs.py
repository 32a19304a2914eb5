"""Config blocks validate their values and the registry exposes the five methods."""

from __future__ import annotations

import pytest

from glmtune.config import from_dict
from glmtune.errors import ConfigError, GlmtuneError
from glmtune.methods import (
    METHODS,
    FreezeConfig,
    LoraConfig,
    PTuningConfig,
    QLoraConfig,
    TuningMethod,
    get_method,
)


def test_registry_has_the_five_methods() -> None:
    assert METHODS.names() == ["freeze", "full", "lora", "ptuning", "qlora"]
    for name in METHODS.names():
        method = get_method(name)
        assert isinstance(method, TuningMethod) and method.name == name


def test_unknown_method_lists_choices() -> None:
    with pytest.raises(GlmtuneError, match="choose one of: freeze, full, lora, ptuning, qlora"):
        get_method("prefix")


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (LoraConfig, {"r": 0}, "lora.r must be > 0"),
        (LoraConfig, {"alpha": -1}, "lora.alpha must be > 0"),
        (LoraConfig, {"dropout": 1.0}, r"lora.dropout must be in \[0, 1\)"),
        (LoraConfig, {"target_modules": []}, "lora.target_modules must not be empty"),
        (QLoraConfig, {"bits": 3}, "qlora.bits must be 4 or 8"),
        (QLoraConfig, {"quant_type": "int4"}, "quant_type"),
        (FreezeConfig, {"trainable_layers": -1}, "freeze.trainable_layers must be >= 0"),
        (FreezeConfig, {"trainable_modules": []}, "freeze.trainable_modules must be a non-empty list"),
        (FreezeConfig, {"trainable_layers": 0}, "freeze.trainable_layers is 0"),
        (PTuningConfig, {"pre_seq_len": 0}, "ptuning.pre_seq_len must be > 0"),
        (PTuningConfig, {"prefix_hidden_size": 8}, "only used with ptuning.prefix_projection"),
    ],
)
def test_bad_blocks_name_the_key(cls: type, data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(cls, data, prefix=f"{cls.__name__}.")


def test_good_blocks() -> None:
    assert from_dict(LoraConfig, {"r": 4, "target_modules": "all-linear"}).target_modules == "all-linear"
    assert from_dict(QLoraConfig, {"bits": 8}).bits == 8
    assert from_dict(FreezeConfig, {"trainable_layers": 0, "trainable_modules": ["mlp"]}).trainable_modules == ["mlp"]
    assert from_dict(PTuningConfig, {"prefix_projection": True, "prefix_hidden_size": 16}).prefix_hidden_size == 16


def test_importing_methods_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, glmtune.methods; print('torch' in sys.modules, 'peft' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
