from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from glmtune.config import load_config, parse_overrides
from glmtune.errors import ConfigError


@dataclass
class Inner:
    """An inner block."""

    r: int = 8
    alpha: float = 16.0
    targets: list[str] = field(default_factory=lambda: ["q"])


@dataclass
class Outer:
    name: str = "x"
    method: Literal["lora", "full"] = "lora"
    steps: int | None = None
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: run\ninner:\n  r: 4\n")
    cfg = load_config(Outer, p, ["inner.alpha=32", "steps=10", "flag=true", "inner.targets=[a, b]"])
    assert cfg.name == "run" and cfg.inner.r == 4 and cfg.inner.alpha == 32.0
    assert cfg.steps == 10 and cfg.flag is True and cfg.inner.targets == ["a", "b"]


def test_unknown_key_names_key_and_allowed(tmp_path):
    with pytest.raises(ConfigError, match=r"'inner.rank'.*allowed keys: alpha, r, targets"):
        load_config(Outer, None, ["inner.rank=4"])


def test_bad_literal_lists_choices():
    with pytest.raises(ConfigError, match=r"method: 'qlora2' is not allowed; choose one of: 'lora', 'full'"):
        load_config(Outer, None, ["method=qlora2"])


def test_bad_type_names_key():
    with pytest.raises(ConfigError, match=r"inner.r: expected an integer"):
        load_config(Outer, None, ["inner.r=abc"])
    with pytest.raises(ConfigError, match=r"flag: expected true or false"):
        load_config(Outer, None, ["flag=3"])


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])


def test_invalid_yaml_has_location(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+"):
        load_config(Outer, p)


@dataclass
class WithOptional:
    inner: Inner | None = None


def test_optional_block_reports_inner_key():
    with pytest.raises(ConfigError, match=r"inner.r: expected an integer"):
        load_config(WithOptional, None, ["inner.r=x"])
    assert load_config(WithOptional, None, ["inner.r=3"]).inner.r == 3


@dataclass
class Rates:
    lr: float = 1.0


def test_exponent_without_dot_is_a_number(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 2e-4\n")
    assert load_config(Rates, p).lr == 2e-4
    assert load_config(Rates, None, ["lr=5e-2"]).lr == 5e-2
    with pytest.raises(ConfigError, match="lr: expected a number"):
        load_config(Rates, None, ["lr=fast"])


def test_field_docs_lists_nested_keys():
    from glmtune.config import field_docs

    docs = field_docs(Outer)
    assert docs == {"name": "str", "method": "'lora' | 'full'", "steps": "int | null", "flag": "bool",
                    "inner": "Inner", "inner.r": "int", "inner.alpha": "float", "inner.targets": "list"}  # fmt: skip
    assert field_docs(WithOptional) == {"inner": "Inner | null", "inner.r": "int", "inner.alpha": "float",
                                        "inner.targets": "list"}  # fmt: skip


def test_non_string_yaml_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: run\n1: x\n")  # YAML reads 1 as an int key
    with pytest.raises(ConfigError, match=r"unknown config key '1'; allowed keys: flag, inner"):
        load_config(Outer, p)
