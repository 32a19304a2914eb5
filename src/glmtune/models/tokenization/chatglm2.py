"""Native ChatGLM2-6B tokenizer (ChatGLM3's class extends it, in ``chatglm3``, which this module never imports).

Behaviour reproduced from THUDM's tokenizer (see the reference MANIFEST, step 2):
- plain SentencePiece over ``tokenizer.model`` (64789 pieces); five command ids follow it:
  ``[MASK] [gMASK] [sMASK] sop eop`` = 64789..64793. Nothing typed in text is special.
- ``add_special_tokens=True`` PREPENDS ``[gMASK], sop``; eos 2 (``</s>``), pad 0 (``<unk>``), no bos.
- decode maps the command ids and ``<unk>``/``<s>``/``</s>`` to "" and does no clean-up.
- padding is on the left and also yields ``position_ids`` (0.. on real tokens, 0 on pads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizer
from transformers.utils import PaddingStrategy

from glmtune.models.tokenization._common import (
    SentencePieceFileMixin,
    init_kwargs_from_config,
    locate,
    read_tokenizer_config,
)

MODEL_FILE = "tokenizer.model"


class ChatGLM2Tokenizer(SentencePieceFileMixin, PreTrainedTokenizer):
    """ChatGLM2-6B tokenizer: SentencePiece + five command ids, ``[gMASK] sop`` prefix, left padding."""

    vocab_files_names = {"vocab_file": MODEL_FILE}
    model_input_names = ["input_ids", "attention_mask", "position_ids"]
    padding_side = "left"
    glmtune_family = "chatglm2"
    # command texts in id order after the SentencePiece pieces
    COMMAND_TEXTS: tuple[str, ...] = ("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop")

    def __init__(self, vocab_file: str, **kwargs: Any) -> None:
        self._load_model_file(vocab_file)
        self.special_ids: dict[str, int] = {t: self.sp_size + i for i, t in enumerate(self.COMMAND_TEXTS)}
        self._special_texts: dict[int, str] = {i: t for t, i in self.special_ids.items()}
        # ids the original decodes to "": unk/pad (0), <s> (1), </s> (2)
        self._silent_ids = frozenset({self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id()})
        kwargs.setdefault("eos_token", "</s>")
        kwargs.setdefault("unk_token", "<unk>")
        kwargs.setdefault("pad_token", "<unk>")
        kwargs.setdefault("padding_side", "left")
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        kwargs["glmtune_family"] = self.glmtune_family
        super().__init__(vocab_file=self.vocab_file, **kwargs)

    # ----- ids of the command tokens, for prompt templates -----
    @property
    def gmask_token_id(self) -> int:
        return self.special_ids["[gMASK]"]

    @property
    def sop_token_id(self) -> int:
        return self.special_ids["sop"]

    @property
    def eop_token_id(self) -> int:
        return self.special_ids["eop"]

    @property
    def prefix_tokens(self) -> list[int]:
        """What ``add_special_tokens=True`` puts in front of every sequence."""
        return [self.gmask_token_id, self.sop_token_id]

    # ----- vocabulary -----
    @property
    def vocab_size(self) -> int:
        return self.sp_size + len(self.special_ids)

    def _base_vocab(self) -> dict[str, int]:
        vocab = {self.sp.id_to_piece(i): i for i in range(self.sp_size)}
        vocab.update(self.special_ids)
        return vocab

    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        """SentencePiece pieces of ``text``; unlike the transformers default no special text is matched."""
        kwargs.pop("split_special_tokens", None)
        text, _ = self.prepare_for_tokenization(text, **kwargs)
        return self._tokenize(text)

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return self.sp.encode(text, out_type=str)

    def _convert_token_to_id(self, token: str) -> int:
        special = self.special_ids.get(token)
        return special if special is not None else self.sp.piece_to_id(token)

    def _convert_id_to_token(self, index: int) -> str:
        if index in self._special_texts or index in self._silent_ids or not 0 <= index < self.sp_size:
            return ""
        return self.sp.id_to_piece(index)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self.sp.decode_pieces([t for t in tokens if t])

    # ----- special tokens -----
    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """``[gMASK] sop`` + ids (+ pair ids + eos, the prompt/answer layout)."""
        ids = self.prefix_tokens + token_ids_0
        if token_ids_1 is not None:
            ids = ids + token_ids_1 + [self.eos_token_id]
        return ids

    def get_special_tokens_mask(
        self,
        token_ids_0: list[int],
        token_ids_1: list[int] | None = None,
        already_has_special_tokens: bool = False,
    ) -> list[int]:
        if already_has_special_tokens:
            marked = set(self.special_ids.values()) | set(self.all_special_ids)
            return [1 if i in marked else 0 for i in token_ids_0]
        mask = [1, 1] + [0] * len(token_ids_0)
        if token_ids_1 is not None:
            mask += [0] * len(token_ids_1) + [1]
        return mask

    # ----- padding: attention_mask and position_ids, like the original -----
    def _pad(
        self,
        encoded_inputs: dict[str, Any],
        max_length: int | None = None,
        padding_strategy: PaddingStrategy = PaddingStrategy.DO_NOT_PAD,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
    ) -> dict:
        main = self.model_input_names[0]
        length = len(encoded_inputs[main])
        if "position_ids" in self.model_input_names and "position_ids" not in encoded_inputs:
            encoded_inputs["position_ids"] = list(range(length))
        encoded_inputs = super()._pad(
            encoded_inputs,
            max_length=max_length,
            padding_strategy=padding_strategy,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_attention_mask=return_attention_mask,
        )
        difference = len(encoded_inputs[main]) - length
        if difference > 0 and "position_ids" in encoded_inputs:
            positions = list(encoded_inputs["position_ids"])
            side = padding_side or self.padding_side
            encoded_inputs["position_ids"] = (
                [0] * difference + positions if side == "left" else positions + [0] * difference
            )
        return encoded_inputs


KEYS_V2: tuple[str, ...] = ()


def load_tokenizer(path: str | Path, **kwargs: Any) -> ChatGLM2Tokenizer:
    """ChatGLM2 tokenizer from a checkpoint folder (``tokenizer.model`` + ``tokenizer_config.json``)."""
    folder, model = locate(path, MODEL_FILE)
    init = init_kwargs_from_config(read_tokenizer_config(folder), KEYS_V2, kwargs)
    return ChatGLM2Tokenizer(str(model), name_or_path=str(folder), **init)
