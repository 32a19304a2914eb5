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
    """What the SentencePiece-backed ChatGLM tokenizers share, so v1 and ChatGLM2/3 differ only in ids.

    Mixed in before ``PreTrainedTokenizer``, whose attributes it uses. Loads the model file (before ``PreTrainedTokenizer.__init__``, which already asks for the vocab),
    caches the piece -> id map, decodes through the class's own id -> piece map, and saves the file
    back byte for byte under its THUDM name. A subclass gives ``_base_vocab`` (and may widen
    ``_ids_not_decoded``).
    """

    vocab_file: str
    sp: spm.SentencePieceProcessor
    sp_size: int
    vocab_files_names: dict[str, str]
    _vocab: dict[str, int] | None

    def _load_model_file(self, vocab_file: str) -> None:
        self.vocab_file = str(vocab_file)
        self.sp = load_sentencepiece(vocab_file)
        self.sp_size = self.sp.get_piece_size()
        self._vocab = None

    def _base_vocab(self) -> dict[str, int]:
        """Piece/command text -> id of the fixed vocabulary (added tokens come on top)."""
        raise NotImplementedError

    def get_vocab(self) -> dict[str, int]:
        if self._vocab is None:
            self._vocab = self._base_vocab()
        vocab = dict(self._vocab)
        vocab.update(self._added_tokens_encoder)
        return vocab

    def _ids_not_decoded(self, skip_special_tokens: bool) -> set[int]:
        """Ids ``_decode`` drops before mapping ids to pieces."""
        return set(self.all_special_ids) if skip_special_tokens else set()

    def _decode(
        self,
        token_ids: int | list[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> str:
        ids = [token_ids] if isinstance(token_ids, int) else [int(i) for i in token_ids]
        skip = self._ids_not_decoded(skip_special_tokens)
        # our own id -> piece map: the transformers default would write "<unk>"/"</s>" out
        tokens = [self._convert_id_to_token(i) for i in ids if i not in skip]
        text = self.convert_tokens_to_string(tokens)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        return self.clean_up_tokenization(text) if clean_up_tokenization_spaces else text

    def create_token_type_ids_from_sequences(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        return [0] * len(self.build_inputs_with_special_tokens(token_ids_0, token_ids_1))

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
