"""Pieces shared by the native ChatGLM tokenizers: finding and loading a checkpoint's files, saving them back.

The THUDM ``tokenizer_config.json`` files carry ``auto_map`` (remote code) and extra ``*_token`` keys that
transformers 5 would turn into splitting special tokens; so we never hand the file to transformers as is,
we read it here and pass on only the keys each tokenizer understands.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import sentencepiece as spm

from glmtune.errors import GlmtuneError
from glmtune.utils.io import read_json

TOKENIZER_CONFIG = "tokenizer_config.json"
# keys of tokenizer_config.json that every ChatGLM tokenizer accepts (others are ignored on purpose)
COMMON_KEYS = ("model_max_length", "padding_side", "truncation_side")


def read_tokenizer_config(folder: Path) -> dict[str, Any]:
    """The folder's tokenizer_config.json as a dict ({} when absent)."""
    return read_json(folder / TOKENIZER_CONFIG)


def locate(path: str | Path, file_name: str) -> tuple[Path, Path]:
    """(folder, model file) for ``path``, which is a checkpoint folder or the model file itself."""
    path = Path(path)
    if path.is_file():
        return path.parent, path
    if not path.is_dir():
        raise GlmtuneError(f"tokenizer folder not found: {path}")
    model = path / file_name
    if not model.is_file():
        found = ", ".join(sorted(p.name for p in path.iterdir())[:12]) or "nothing"
        raise GlmtuneError(f"{path} has no {file_name} (found: {found})")
    return path, model


def init_kwargs_from_config(config: dict[str, Any], keys: tuple[str, ...], overrides: dict[str, Any]) -> dict:
    """The allowed ``keys`` of a tokenizer_config.json, then the caller's explicit overrides."""
    kwargs = {k: config[k] for k in (*COMMON_KEYS, *keys) if k in config and config[k] is not None}
    kwargs.update(overrides)
    return kwargs


def load_sentencepiece(model_file: str | Path) -> spm.SentencePieceProcessor:
    """A SentencePiece processor for ``model_file``, with a clear error for a missing or broken file."""
    path = Path(model_file)
    if not path.is_file():
        raise GlmtuneError(f"tokenizer model file not found: {path}")
    processor = spm.SentencePieceProcessor()
    try:
        processor.Load(str(path))
    except (OSError, RuntimeError) as exc:
        raise GlmtuneError(f"{path}: not a SentencePiece model ({exc})") from None
    return processor


class SentencePieceFileMixin:
    """Saves the tokenizer's own SentencePiece file (byte for byte) under its THUDM name."""

    vocab_file: str
    sp: spm.SentencePieceProcessor
    vocab_files_names: dict[str, str]

    def __getstate__(self) -> dict[str, Any]:
        # the piece -> id cache is rebuilt on demand: keeps pickles (datasets.map, DataLoader workers) small
        state = self.__dict__.copy()
        state["_vocab"] = None
        return state

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        if not os.path.isdir(save_directory):
            raise GlmtuneError(f"cannot save the tokenizer: {save_directory} is not a folder")
        name = (f"{filename_prefix}-" if filename_prefix else "") + self.vocab_files_names["vocab_file"]
        target = os.path.join(save_directory, name)
        source = self.vocab_file
        if source and os.path.isfile(source):
            if os.path.abspath(source) != os.path.abspath(target):
                shutil.copyfile(source, target)
        else:
            with open(target, "wb") as handle:
                handle.write(self.sp.serialized_model_proto())
        return (target,)
