"""Typed dataclass configs from YAML plus ``key=value`` overrides.

Every config in glmtune is a (nested) dataclass. ``load_config(Cls, "x.yaml", ["lora.r=16"])``
reads the YAML, applies the dotted overrides (values parsed as YAML scalars), and checks every key
and type, so a typo fails with a message naming the key and the allowed keys or values instead of
being silently ignored.

A dict field whose metadata holds ``BLOCKS`` (a callable returning ``{name: dataclass}``) is an open
set of blocks: each top-level key ``name: {...}`` is parsed into its registered class and stored in that
field, so plugins (tuning methods) add config blocks without the config class naming them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from glmtune.errors import ConfigError

C = TypeVar("C")
BLOCKS = "glmtune_config_blocks"  # field metadata key: callable -> {block name: dataclass}


def open_blocks(cls: Any) -> tuple[str, dict[str, type]] | None:
    """(field name, {block name: dataclass}) of ``cls``'s open-block field, if it has one."""
    for f in dataclasses.fields(cls):
        if BLOCKS in f.metadata:
            return f.name, dict(f.metadata[BLOCKS]())
    return None


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=[x, y]"]`` into a nested dict; values are parsed as YAML."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = _merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widen to floats)."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of: {', '.join(map(repr, allowed))}")
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arg in get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        nested = [e for e in errors if e.startswith(f"{key}.")]
        if nested:  # the value had the right shape; report the inner key that was wrong
            raise ConfigError(nested[0])
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null, got {value!r}")
        return None
    if dataclasses.is_dataclass(tp):
        if value is None:
            return tp()
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (arg,) = get_args(tp)[:1] or (Any,)
        return [_coerce(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "2e-4" (no dot) as a string; users mean a number
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    found = open_blocks(cls)
    blocks = found[1] if found else {}
    if found:
        fields.pop(found[0])  # filled from the block keys, never a key itself
    unknown = [k for k in data if k not in fields and k not in blocks]
    if unknown:
        raise ConfigError(
            f"unknown config key {f'{prefix}{unknown[0]}'!r}; allowed keys: {', '.join(sorted([*fields, *blocks]))}"
        )
    kwargs = {name: _coerce(value, hints[name], f"{prefix}{name}") for name, value in data.items() if name in fields}
    if found:
        kwargs[found[0]] = {name: _coerce(data[name], block, f"{prefix}{name}")
                            for name, block in blocks.items() if name in data}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from None


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None) -> C:
    """Read YAML ``path`` (optional), apply ``overrides`` and validate into ``cls``."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of config keys")
        data = loaded
    data = _merge(data, parse_overrides(overrides or []))
    return from_dict(cls, data)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict view of a config (for saving next to outputs); open blocks appear as top-level keys."""
    out = dataclasses.asdict(cfg)
    found = open_blocks(cfg)
    if found:
        out.update(out.pop(found[0]))
    return out


def field_docs(cls: type, prefix: str = "") -> dict[str, str]:
    """Key -> type string for ``--help``-style listings; a nested block's keys follow it (``lora.r``)."""
    hints = typing.get_type_hints(cls)
    docs: dict[str, str] = {}
    found = open_blocks(cls)
    for f in dataclasses.fields(cls):
        if found and f.name == found[0]:
            for name, block in found[1].items():
                docs[prefix + name] = block.__name__
                docs.update(field_docs(block, f"{prefix}{name}."))
            continue
        tp = hints[f.name]
        docs[prefix + f.name] = _type_name(tp)
        for arg in get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,):
            if dataclasses.is_dataclass(arg):
                docs.update(field_docs(arg, f"{prefix}{f.name}."))  # type: ignore[arg-type]
    return docs


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return "(required)"
    if dataclasses.is_dataclass(value):
        return "{...}"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value) \
        if isinstance(value, str) else str(value)


def _comments(cls: type) -> dict[str, str]:
    """``name: type = default  # comment`` lines of a dataclass body: the comment is the key's one-line doc."""
    import inspect
    import re

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    above: list[str] = []  # comment lines right above a field describe it when it has none of its own
    for line in source.splitlines():
        comment = re.match(r"^\s{4}#\s*(.+)$", line)
        if comment:
            above.append(comment.group(1).strip())
            continue
        m = re.match(r"^\s{4}(\w+): ([^#]*?)(?:#\s*(.+))?$", line)
        if m:
            doc = m.group(3) or " ".join(above)
            if doc:
                found[m.group(1)] = doc.strip()
        above = []
    return found


def key_listing(cls: type, prefix: str = "") -> list[str]:
    """``key: type = default  # what it does`` for every key, nested blocks included (``lora.r``)."""
    hints = typing.get_type_hints(cls)
    comments = _comments(cls)
    lines: list[str] = []
    found = open_blocks(cls)
    for f in dataclasses.fields(cls):
        if found and f.name == found[0]:
            for name, block in found[1].items():
                doc = (block.__doc__ or "").strip().split("\n")[0]
                lines.append(f"{prefix}{name}: {block.__name__} = {{...}}" + (f"  # {doc}" if doc else ""))
                lines += key_listing(block, f"{prefix}{name}.")
            continue
        tp = hints[f.name]
        doc = comments.get(f.name)
        nested = [a for a in (get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,))
                  if dataclasses.is_dataclass(a)]
        if nested and not doc:
            doc = (nested[0].__doc__ or "").strip().split("\n")[0]
        line = f"{prefix}{f.name}: {_type_name(tp)} = {_default_text(f)}"
        lines.append(f"{line}  # {doc}" if doc else line)
        for arg in nested:
            lines += key_listing(arg, f"{prefix}{f.name}.")  # type: ignore[arg-type]
    return lines
