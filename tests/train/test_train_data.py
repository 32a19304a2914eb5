"""The runner's data wiring: input checks, config options reaching the encoder, eval/val splits, tokenized folders."""

from __future__ import annotations

import json
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


def _records(path: Path, n: int) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"It is {2 * i}."}]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_tokenized_folder_brings_its_own_template(make_cfg, tiny_model: Path, tmp_path: Path) -> None:
    import glmtune
    from glmtune.data.encode import EncodeOptions
    from glmtune.data.tokenized import build_tokenized_dataset
    from glmtune.train.runner import build_datasets

    tok = glmtune.load_tokenizer(tiny_model)
    folder = tmp_path / "tok"
    build_tokenized_dataset(tok, [_records(tmp_path / "r.jsonl", 6)], "alpaca-text", EncodeOptions(),
                            output_dir=folder, progress=False)  # fmt: skip
    eval_file = _records(tmp_path / "dev.jsonl", 2)
    train, dev, template = build_datasets(make_cfg(data=str(folder), eval_data=str(eval_file)), tok, "chatglm2")
    # samples and eval data use the format the folder was tokenized in, not the family's chatglm2
    assert template == "alpaca-text" and len(train) == 6
    first = json.loads(eval_file.read_text(encoding="utf-8").splitlines()[0])
    assert dev[0]["input_ids"] == glmtune.encode(tok, first["messages"], "alpaca-text", cutoff_len=96)["input_ids"]
    with pytest.raises(ConfigError, match=r"template: 'chatglm2'.*tokenized with 'alpaca-text'"):
        build_datasets(make_cfg(data=str(folder), template="chatglm2"), tok, "chatglm2")
