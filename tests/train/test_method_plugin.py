"""A tuning method from outside glmtune is one class plus one ``register_method`` call: its YAML block is
parsed into its own config class, and ``glmtune train`` trains and saves with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from glmtune.config import key_listing, load_config
from glmtune.errors import ConfigError
from glmtune.methods import TuningMethod, register_method, unregister_method
from glmtune.methods.base import freeze_all, remember
from glmtune.methods.full import save_full_model
from glmtune.train.config import TrainConfig


@dataclass
class HeadOnlyConfig:
    """The ``headonly:`` block."""

    train_norm: bool = False  # also train the final norm


class HeadOnlyMethod(TuningMethod):
    """Trains only the output head (and optionally the final norm); saves the whole model."""

    def apply(self, model: Any, cfg: Any) -> Any:
        remember(model, self.name, cfg)
        freeze_all(model)
        model.get_output_embeddings().weight.requires_grad_(True)
        if cfg.headonly.train_norm:
            model.model.norm.weight.requires_grad_(True)
        return model

    def save(self, model: Any, output_dir: str | Path, tokenizer: Any = None,
             state_dict: dict[str, Any] | None = None) -> None:
        save_full_model(model, output_dir, self.name, tokenizer, state_dict)


@pytest.fixture
def headonly():
    register_method("headonly", HeadOnlyConfig)(HeadOnlyMethod)  # the one registration line a plugin needs
    yield
    unregister_method("headonly")


def test_block_is_parsed_into_the_registered_class(headonly) -> None:
    cfg = load_config(TrainConfig, None, ["model=m", "data=d.jsonl", "method=headonly", "headonly.train_norm=true"])
    assert isinstance(cfg.headonly, HeadOnlyConfig) and cfg.headonly.train_norm is True
    assert cfg.lora.r == 8  # the built-in blocks are still there, at their defaults
    assert "headonly.train_norm: bool = false  # also train the final norm" in key_listing(TrainConfig)
    with pytest.raises(ConfigError, match=r"unknown config key 'headonly.train_nrom'; allowed keys: train_norm"):
        load_config(TrainConfig, None, ["model=m", "data=d.jsonl", "headonly.train_nrom=true"])
    with pytest.raises(ConfigError, match=r"headonly.train_norm: expected true or false"):
        load_config(TrainConfig, None, ["model=m", "data=d.jsonl", "headonly.train_norm=3"])


def test_unregistered_method_lists_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match=r"method: 'headonly' is not a registered tuning method; "
                                          r"choose one of: freeze, full, lora, ptuning, qlora"):
        load_config(TrainConfig, None, ["model=m", "data=d.jsonl", "method=headonly"])
    with pytest.raises(ConfigError, match=r"unknown config key 'headonly'"):
        load_config(TrainConfig, None, ["model=m", "data=d.jsonl", "headonly.train_norm=true"])


def test_plugin_method_trains_and_saves(headonly, make_cfg, tiny_model: Path) -> None:
    import glmtune
    from glmtune.methods.base import read_adapter_info
    from glmtune.train.runner import run

    cfg = make_cfg(method="headonly", max_steps=1, **{"headonly.train_norm": "true"})
    result = run(cfg)
    assert result.global_step == 1 and result.train_loss is not None
    assert read_adapter_info(result.output_dir)["method"] == "headonly"
    base = glmtune.load_model(tiny_model, dtype=torch.float32).state_dict()
    saved = glmtune.load_model(result.output_dir, dtype=torch.float32).state_dict()
    moved = {k for k in base if not torch.equal(base[k], saved[k])}
    assert moved and all(k in ("lm_head.weight", "model.norm.weight") for k in moved), moved
