"""Training data for the runner: raw or converted files -> tokenized datasets + a collator.

``data:``/``eval_data:`` may be converted JSONL records, raw dataset files in any format
``glmtune convert`` reads (converted on the fly into ``output_dir/data/``, format ``data_format``),
or a tokenized folder. Tokenizing, packing and collating are the encoding module's
(``glmtune.data.tokenized``/``collate``/``packing``); this module only wires them to the config.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from glmtune.errors import ConfigError, DataError

log = logging.getLogger("glmtune.train")


def is_records_jsonl(path: Path) -> bool:
    """True when ``path`` is already glmtune JSONL records (first non-empty line has ``messages``)."""
    if path.suffix != ".jsonl":
        return False
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(first, dict) and isinstance(first.get("messages"), list)
    return False


def check_inputs(paths: list[str], key: str) -> None:
    """Every path is a file or a tokenized folder; else a ConfigError naming ``key`` and the path."""
    from glmtune.data.tokenized import META_FILE, is_tokenized_dir

    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir() and not is_tokenized_dir(path):
            raise ConfigError(f"{key}: {raw} is a folder but not a glmtune tokenized folder (no {META_FILE}); "
                              "give data files or the output folder of 'glmtune tokenize'")  # fmt: skip
        if not path.exists():
            raise ConfigError(f"{key}: file not found: {raw}")


def prepare_inputs(paths: list[str], key: str, cfg: Any, work_dir: Path) -> list[str]:
    """Return paths the tokenizer step reads: records JSONL or tokenized folders; raw files are converted
    with the same options ``glmtune convert`` takes (data_format, on_error, lenient, columns, ...)."""
    from glmtune.data.convert import Options, convert_files
    from glmtune.data.formats.columns import parse_mapping

    check_inputs(paths, key)
    opts = Options(cfg.prompt_column, cfg.response_column, cfg.history_column,
                   parse_mapping([f"{k}={v}" for k, v in cfg.columns.items()]) if cfg.columns else {})  # fmt: skip
    fmt = "columns" if cfg.columns and cfg.data_format == "auto" else cfg.data_format
    out: list[str] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir() or is_records_jsonl(path):
            out.append(str(path))
            continue
        settings = [path.resolve(), path.stat().st_mtime_ns, fmt, cfg.on_error, cfg.lenient, sorted(cfg.columns.items()),
                    cfg.prompt_column, cfg.response_column, cfg.history_column]  # fmt: skip
        digest = hashlib.sha256(repr(settings).encode()).hexdigest()
        target = work_dir / f"{path.stem}-{digest[:10]}.jsonl"
        if not target.is_file():
            try:
                convert_files([path], target, fmt, options=opts, on_error=cfg.on_error, lenient=cfg.lenient,
                              log=log.info)  # fmt: skip
            except DataError as exc:  # convert's hints name its flags; train takes them as keys
                raise DataError(f"{key}: " + str(exc).replace("--on-error skip", "on_error=skip")
                                .replace("--lenient", "lenient=true").replace("--map", "columns")) from None
        out.append(str(target))
    return out


def reconcile_tokenized(cfg: Any, paths: list[str]) -> None:
    """A tokenized folder fixes the encoding options it was made with: a config key left at its default
    takes the folder's value (said in one line, and recorded in the saved config); a key the config
    sets to something else is a ConfigError naming both values (the ids cannot follow it)."""
    import dataclasses

    from glmtune.data.tokenized import is_tokenized_dir, load_meta

    if len(paths) != 1 or not is_tokenized_dir(paths[0]):
        return
    saved = load_meta(paths[0]).get("options") or {}
    defaults = {f.name: f.default for f in dataclasses.fields(type(cfg)) if f.default is not dataclasses.MISSING}
    for name, value in saved.items():
        if name == "extra" or not hasattr(cfg, name) or getattr(cfg, name) == value:
            continue
        mine = getattr(cfg, name)
        if mine == defaults.get(name):
            log.info("%s: using %r from the tokenized folder %s (the config leaves it at its default %r)",
                     name, value, paths[0], mine)  # fmt: skip
            setattr(cfg, name, value)
        else:
            raise ConfigError(f"{name}: {mine!r}, but data {paths[0]} was tokenized with {name}={value!r}; "
                              f"drop the key or run glmtune tokenize again with {name}={mine!r}")


def folder_template(paths: list[str]) -> str | None:
    """The template a tokenized folder was encoded with (None when ``paths`` are data files)."""
    from glmtune.data.tokenized import is_tokenized_dir, load_meta

    return load_meta(paths[0]).get("template") if len(paths) == 1 and is_tokenized_dir(paths[0]) else None


def tokenize(
    cfg: Any, tokenizer: Any, paths: list[str], template: str, cache_dir: Path | None, progress: bool = True
) -> Any:
    """A ``datasets.Dataset`` with ``input_ids``, ``labels`` and ``length`` columns."""
    from glmtune.data.encode import EncodeOptions
    from glmtune.data.tokenized import build_tokenized_dataset

    official = cfg.max_source_length is not None
    options = EncodeOptions.from_settings(cfg, cutoff_len=None if official else cfg.cutoff_len)
    dataset, report = build_tokenized_dataset(
        tokenizer, paths, template, options, cache_dir=cache_dir, num_proc=cfg.num_proc, progress=progress
    )
    log.info(str(report))
    return dataset


def split_val(dataset: Any, val_size: float | int, seed: int) -> tuple[Any, Any]:
    """Seeded (train, dev) split of a tokenized dataset; dev is None when ``val_size`` is 0.

    ``val_size`` counts conversations (input rows): all examples of one conversation land on the same
    side, so a dev answer never appears as training context (``multi_turn: split``, ChatGLM-6B).
    A folder without the ``conversation`` column is split by example.
    """
    import random

    if not val_size:
        return dataset, None
    convs = dataset["conversation"] if "conversation" in dataset.column_names else range(len(dataset))
    ids = sorted(set(convs))
    n = len(ids)
    n_dev = max(1, round(n * val_size)) if isinstance(val_size, float) else int(val_size)
    if not 0 < n_dev < n:
        raise ConfigError(f"val_size: cannot put {n_dev} of {n} conversations in the dev split")
    dev = set(random.Random(seed).sample(ids, n_dev))
    in_dev = [c in dev for c in convs]
    return (dataset.select([i for i, d in enumerate(in_dev) if not d]),
            dataset.select([i for i, d in enumerate(in_dev) if d]))  # fmt: skip


def pack(dataset: Any, cutoff_len: int | None) -> Any:
    """Concatenate examples into ``cutoff_len`` blocks (the encoding module's packing)."""
    from glmtune.data.packing import pack_dataset

    if cutoff_len is None:
        raise ConfigError("packing: needs cutoff_len (the block length)")
    return pack_dataset(dataset, cutoff_len)


def make_collator(tokenizer: Any, packing: bool = False, flatten: bool = False) -> Any:
    """The encoding module's collator: pads input_ids/labels (-100) and builds the attention mask, or
    (``flatten``) joins the batch into one unpadded row with per-example positions."""
    from glmtune.data.collate import make_collator as _make

    return _make(tokenizer, packing=packing, flatten=flatten)
