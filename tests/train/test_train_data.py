"""The runner's data wiring: input checks, config options reaching the encoder, eval/val splits, tokenized folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glmtune.errors import ConfigError
from glmtune.train import data as train_data
from glmtune.train.config import TrainConfig

CFG = TrainConfig(model="builtin:tiny-chatglm2", data="x.jsonl")


def test_missing_or_unusable_inputs_name_the_key_and_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^data: file not found: .*nope\.jsonl$"):
        train_data.prepare_inputs([str(tmp_path / "nope.jsonl")], "data", CFG, tmp_path / "w")
    with pytest.raises(ConfigError, match=r"^eval_data: file not found: .*nope\.json$"):
        train_data.prepare_inputs([str(tmp_path / "nope.json")], "eval_data", CFG, tmp_path / "w")
    folder = tmp_path / "plain"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"data: .*plain is a folder but not a glmtune tokenized folder"):
        train_data.prepare_inputs([str(folder)], "data", CFG, tmp_path / "w")


def test_bad_data_path_fails_before_the_model_is_loaded(make_cfg, monkeypatch, tmp_path: Path) -> None:
    from glmtune.train import runner

    def never(cfg):  # loading a real 6B model takes minutes: a typo in data must not wait for it
        raise AssertionError("model loaded before the data paths were checked")

    monkeypatch.setattr(runner, "load_model_and_method", never)
    monkeypatch.setattr(runner, "load_tokenizer_and_family", never)
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


def _two_turn(path: Path, n: int) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"Name capital number {i}."},
                          {"role": "assistant", "content": f"Capital {i} is a city with a long answer."},
                          {"role": "user", "content": "And its river?"},
                          {"role": "assistant", "content": f"River {i}."}]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("extra", "encode_kwargs"),
    [
        ({}, {"multi_turn": "all", "cutoff_len": 96}),
        ({"multi_turn": "split"}, {"multi_turn": "split", "cutoff_len": 96}),
        ({"multi_turn": "last", "train_on_prompt": "true"}, {"multi_turn": "last", "train_on_prompt": True,
                                                             "cutoff_len": 96}),
        ({"max_source_length": 12, "max_target_length": 6, "multi_turn": "last", "truncate_side": "left"},
         {"multi_turn": "last", "max_source_length": 12, "max_target_length": 6, "truncate_side": "left"}),
        ({"cutoff_len": 40, "template": "alpaca-text"}, {"cutoff_len": 40, "template": "alpaca-text"}),
    ],
)  # fmt: skip
def test_config_encoding_options_reach_the_encoder(make_cfg, tiny_model, tmp_path, extra, encode_kwargs) -> None:
    import glmtune
    from glmtune.data.encode import encode_all
    from glmtune.train.runner import build_datasets

    tok = glmtune.load_tokenizer(tiny_model)
    data = _two_turn(tmp_path / "two.jsonl", 3)
    train, dev, template = build_datasets(make_cfg(data=str(data), **extra), tok, "chatglm2")
    kwargs = dict(encode_kwargs)
    expected_template = kwargs.pop("template", "chatglm2")
    expected = [ex for line in data.read_text(encoding="utf-8").splitlines()
                for ex in encode_all(tok, json.loads(line)["messages"], expected_template, **kwargs)]
    assert template == expected_template and dev is None
    assert list(train["input_ids"]) == [e["input_ids"] for e in expected]
    assert list(train["labels"]) == [e["labels"] for e in expected]
    assert list(train["length"]) == [len(e["input_ids"]) for e in expected]


def test_val_size_split_is_seeded_and_partitions_the_examples(make_cfg, tiny_model, tmp_path) -> None:
    import glmtune
    from glmtune.train.runner import build_datasets

    tok = glmtune.load_tokenizer(tiny_model)
    data = str(_records(tmp_path / "r.jsonl", 20))
    train, dev, _ = build_datasets(make_cfg(data=data, val_size=0.25), tok, "chatglm2")
    again_train, again_dev, _ = build_datasets(make_cfg("again", data=data, val_size=0.25), tok, "chatglm2")
    _, other_dev, _ = build_datasets(make_cfg("other", data=data, val_size=0.25, seed=7), tok, "chatglm2")
    assert (len(train), len(dev)) == (15, 5)
    assert list(dev["input_ids"]) == list(again_dev["input_ids"])
    assert list(train["input_ids"]) == list(again_train["input_ids"])
    assert sorted(map(tuple, dev["input_ids"])) != sorted(map(tuple, other_dev["input_ids"]))
    everything = sorted(map(tuple, [*train["input_ids"], *dev["input_ids"]]))
    assert everything == sorted(tuple(e["input_ids"]) for e in _encode_file(tok, tmp_path / "r.jsonl"))
    _, fixed_dev, _ = build_datasets(make_cfg("fixed", data=data, val_size=3), tok, "chatglm2")
    assert len(fixed_dev) == 3
    with pytest.raises(ConfigError, match=r"val_size: cannot put 20 of 20 conversations in the dev split"):
        build_datasets(make_cfg("all", data=data, val_size=20), tok, "chatglm2")


def _encode_file(tok, path: Path, cutoff_len: int = 96) -> list[dict]:
    import glmtune

    out: list[dict] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        encoded = glmtune.encode(tok, json.loads(line)["messages"], cutoff_len=cutoff_len)
        out += encoded if isinstance(encoded, list) else [encoded]  # chatglm2: one example per turn
    return out


def test_explicit_eval_data_wins_over_val_size_and_packing_packs_train_only(make_cfg, tiny_model, tmp_path) -> None:
    import glmtune
    from glmtune.train.runner import build_datasets

    tok = glmtune.load_tokenizer(tiny_model)
    data, dev_file = _records(tmp_path / "r.jsonl", 12), _two_turn(tmp_path / "dev.jsonl", 2)
    cfg = make_cfg(data=str(data), eval_data=str(dev_file), val_size=4, packing="true", cutoff_len=90)
    train, dev, _ = build_datasets(cfg, tok, "chatglm2")
    expected_dev = [e["input_ids"] for e in _encode_file(tok, dev_file, 90)]
    assert list(dev["input_ids"]) == expected_dev  # eval_data, not a split, encoded with the config's options
    assert expected_dev != [e["input_ids"] for e in _encode_file(tok, dev_file, 64)]
    singles = _encode_file(tok, data, 90)  # about 40 tokens each: two per packed row
    lens = list(train["seq_lens"])
    assert all(sum(row) == n <= 90 for row, n in zip(lens, train["length"]))
    assert sorted(n for row in lens for n in row) == sorted(len(e["input_ids"]) for e in singles)  # all 12, once
    assert len(train) == 6


def test_val_size_keeps_each_conversation_on_one_side(make_cfg, tiny_model, tmp_path) -> None:
    # multi_turn=split makes 2 examples per conversation; splitting examples would put turn 1 of a
    # conversation in dev and turn 2 (whose prompt holds turn 1's answer) in train: a leaking eval
    import glmtune
    from glmtune.train.runner import build_datasets

    tok = glmtune.load_tokenizer(tiny_model)
    data = str(_two_turn(tmp_path / "two.jsonl", 10))
    for seed in (1, 2, 3, 42):
        train, dev, _ = build_datasets(make_cfg(f"s{seed}", data=data, multi_turn="split", val_size=0.2, seed=seed),
                                       tok, "chatglm2")  # fmt: skip
        assert (len(train), len(dev)) == (16, 4)  # 2 of 10 conversations (val_size counts rows)
        assert not set(train["conversation"]) & set(dev["conversation"])
        assert sorted(dev["conversation"])[::2] == sorted(dev["conversation"])[1::2]


def test_every_encoding_option_is_a_train_config_key() -> None:
    # glmtune train and glmtune tokenize build EncodeOptions from the same field names
    import dataclasses

    from glmtune.data.templates import EncodeOptions
    from glmtune.data.tokenize_cmd import parser
    from glmtune.train.config import TrainConfig

    options = {f.name for f in dataclasses.fields(EncodeOptions)} - {"extra"}
    assert options <= {f.name for f in dataclasses.fields(TrainConfig)}
    args = parser().parse_args(["--model", "m", "--data", "d", "-o", "o"])
    assert options <= set(vars(args))


@pytest.mark.parametrize("learn_tools", [True, False])
def test_train_on_observation_reaches_the_encoder(make_cfg, reference, tmp_path, learn_tools) -> None:
    import glmtune
    from glmtune.data.encode import encode_all
    from glmtune.train.runner import build_datasets

    tok = glmtune.load_tokenizer(reference / "checkpoints" / "chatglm3-mini")
    messages = [{"role": "user", "content": "北京天气？"},
                {"role": "assistant", "content": "查询中"},
                {"role": "tool", "content": "{\"temp\": 20}"},
                {"role": "assistant", "content": "20 度。"}]  # fmt: skip
    data = tmp_path / "tools.jsonl"
    data.write_text(json.dumps({"messages": messages}, ensure_ascii=False) + "\n", encoding="utf-8")
    cfg = make_cfg(data=str(data), template="chatglm3", train_on_observation=learn_tools)
    train, _, _ = build_datasets(cfg, tok, "chatglm3")
    (expected,) = encode_all(tok, messages, "chatglm3", cutoff_len=96, train_on_observation=learn_tools)
    assert list(train["labels"]) == [expected["labels"]]
    (other,) = encode_all(tok, messages, "chatglm3", cutoff_len=96, train_on_observation=not learn_tools)
    assert other["labels"] != expected["labels"]  # the option really changes what is learned
