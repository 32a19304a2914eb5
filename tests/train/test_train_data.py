"""The runner's data wiring: input checks, config options reaching the encoder, eval/val splits, tokenized folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from glmtune.errors import ConfigError
from glmtune.train import data as train_data


def test_missing_or_unusable_inputs_name_the_key_and_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^data: file not found: .*nope\.jsonl$"):
        train_data.prepare_inputs([str(tmp_path / "nope.jsonl")], "data", "auto", tmp_path / "w")
    with pytest.raises(ConfigError, match=r"^eval_data: file not found: .*nope\.json$"):
        train_data.prepare_inputs([str(tmp_path / "nope.json")], "eval_data", "auto", tmp_path / "w")
    folder = tmp_path / "plain"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"data: .*plain is a folder but not a glmtune tokenized folder"):
        train_data.prepare_inputs([str(folder)], "data", "auto", tmp_path / "w")


def test_bad_data_path_fails_before_the_model_is_loaded(make_cfg, monkeypatch, tmp_path: Path) -> None:
    from glmtune.train import runner

    def never(cfg):  # loading a real 6B model takes minutes: a typo in data must not wait for it
        raise AssertionError("model loaded before the data paths were checked")

    monkeypatch.setattr(runner, "load_everything", never)
    with pytest.raises(ConfigError, match=r"eval_data: file not found: .*missing\.jsonl"):
        runner.run(make_cfg(eval_data=str(tmp_path / "missing.jsonl")))
