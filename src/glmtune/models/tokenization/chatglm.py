"""Native ChatGLM-6B (v1.1) tokenizer over THUDM's ``ice_text.model``.

Behaviour reproduced from the v1.1 code (reference MANIFEST, steps 1-2):
- text: ``\\n`` -> ``<n>``, ``\\t`` -> ``<|tab|>``, runs of 2..80 spaces -> ``<|blank_N|>`` (longer runs
  take ``<|blank_80|>`` first), then SentencePiece (its nmt_nfkc normaliser does NFKC and drops ``\\r``);
- ``<sop> <eop> <unk> <pad> [MASK]`` typed in text are one id each (special tokens of the HF wrapper,
  spaces around them stripped); ``[gMASK]`` and ``</s>`` are ordinary text;
- ``add_special_tokens=True`` APPENDS ``[gMASK], <sop>``; bos ``<sop>``, eos ``<eop>``, pad ``<pad>``;
- decode drops pad, maps ``<n>``/tab/blank pieces back, and applies ``clean_up_tokenization_spaces``;
- ``num_image_tokens`` (0 in v1.1, 20000 in the older layout) shifts every text id up.
Padding is on the left; padded batches carry the original 4-D mask and 2-D positions (``_glm_masks``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from transformers import AddedToken, PreTrainedTokenizer
from transformers.utils import PaddingStrategy

from glmtune.models.tokenization._common import (
    SentencePieceFileMixin,
    init_kwargs_from_config,
    locate,
    read_tokenizer_config,
)
from glmtune.models.tokenization._glm_masks import pad_glm_inputs

MODEL_FILE = "ice_text.model"
MAX_BLANK = 80
SPECIAL_TOKENS = {
    "bos_token": "<sop>",
    "eos_token": "<eop>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "[MASK]",
}
_SPACES = re.compile(" {2,}")
_BLANK_PIECE = re.compile(r"<\|blank_(\d+)\|>")


def _blank_run(match: re.Match[str]) -> str:
    full, rest = divmod(len(match.group()), MAX_BLANK)
    tail = f"<|blank_{rest}|>" if rest >= 2 else " " * rest
    return f"<|blank_{MAX_BLANK}|>" * full + tail


def _unblank(match: re.Match[str]) -> str:
    n = int(match.group(1))
    return " " * n if 2 <= n <= MAX_BLANK else match.group()


class ChatGLMTokenizer(SentencePieceFileMixin, PreTrainedTokenizer):
    """ChatGLM-6B v1.1 tokenizer: ice_text SentencePiece, ``<n>``/blank pieces, appended ``[gMASK] <sop>``."""

    vocab_files_names = {"vocab_file": MODEL_FILE}
    model_input_names = ["input_ids", "attention_mask", "position_ids"]
    padding_side = "left"
    glmtune_family = "chatglm"

    def __init__(
        self,
        vocab_file: str,
        num_image_tokens: int = 0,
        remove_space: bool = False,
        do_lower_case: bool = False,
        **kwargs: Any,
    ) -> None:
        self._load_model_file(vocab_file)
        self.num_image_tokens = int(num_image_tokens)
        self.remove_space = bool(remove_space)
        self.do_lower_case = bool(do_lower_case)
        # registered special tokens are matched in text with the spaces around them stripped (4.2x behaviour)
        self._added_tokens_decoder = {
            self._piece_id(text): AddedToken(text, lstrip=True, rstrip=True, normalized=False, special=True)
            for text in SPECIAL_TOKENS.values()
        }
        for key, text in SPECIAL_TOKENS.items():
            kwargs.setdefault(key, text)
        kwargs.setdefault("padding_side", "left")
        kwargs.setdefault("clean_up_tokenization_spaces", True)
        kwargs["glmtune_family"] = self.glmtune_family
        super().__init__(
            vocab_file=self.vocab_file,
            num_image_tokens=self.num_image_tokens,
            remove_space=self.remove_space,
            do_lower_case=self.do_lower_case,
            **kwargs,
        )

    def _piece_id(self, piece: str) -> int:
        return self.sp.piece_to_id(piece) + self.num_image_tokens

    # ----- ids of the GLM tokens, for prompt templates -----
    @property
    def special_ids(self) -> dict[str, int]:
        """Ids of the GLM command pieces and the SentencePiece control pieces."""
        names = ("[MASK]", "[gMASK]", "[sMASK]", "<unused_0>", "<sop>", "<eop>", "<ENC>", "<dBLOCK>")
        return {name: self._piece_id(name) for name in (*names, "<pad>", "<unk>", "</s>", "<s>")}

    @property
    def gmask_token_id(self) -> int:
        return self._piece_id("[gMASK]")

    @property
    def sop_token_id(self) -> int:
        return self._piece_id("<sop>")

    @property
    def eop_token_id(self) -> int:
        return self._piece_id("<eop>")

    @property
    def end_token_id(self) -> int:
        """``</s>``: v1.1's ``end_token`` (not its eos)."""
        return self._piece_id("</s>")

    # ----- vocabulary -----
    @property
    def vocab_size(self) -> int:
        return self.sp_size + self.num_image_tokens

    def _base_vocab(self) -> dict[str, int]:
        vocab = {f"<image_{i}>": i for i in range(self.num_image_tokens)}
        vocab.update({self.sp.id_to_piece(i): i + self.num_image_tokens for i in range(self.sp_size)})
        return vocab

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        if self.remove_space:
            text = " ".join(text.strip().split())
        if self.do_lower_case:
            text = text.lower()
        text = _SPACES.sub(_blank_run, text.replace("\n", "<n>").replace("\t", "<|tab|>"))
        return self.sp.encode(text, out_type=str)

    def _convert_token_to_id(self, token: str) -> int:
        if token.startswith("<image_") and token.endswith(">") and token[7:-1].isdigit():
            index = int(token[7:-1])
            if index < self.num_image_tokens:
                return index
        return self._piece_id(token)

    def _convert_id_to_token(self, index: int) -> str:
        if index < self.num_image_tokens:
            return f"<image_{index}>"
        return self.sp.id_to_piece(index - self.num_image_tokens)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        text = self.sp.decode_pieces(tokens)
        return _BLANK_PIECE.sub(_unblank, text.replace("<n>", "\n").replace("<|tab|>", "\t"))

    def _ids_not_decoded(self, skip_special_tokens: bool) -> set[int]:
        # v1.1's decode always drops pad
        return {self.pad_token_id} | super()._ids_not_decoded(skip_special_tokens)

    # ----- special tokens -----
    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """ids + ``[gMASK] <sop>`` (+ pair ids + ``<eop>``, the prompt/answer layout)."""
        ids = token_ids_0 + [self.gmask_token_id, self.sop_token_id]
        if token_ids_1 is not None:
            ids = ids + token_ids_1 + [self.eop_token_id]
        return ids

    def get_special_tokens_mask(
        self,
        token_ids_0: list[int],
        token_ids_1: list[int] | None = None,
        already_has_special_tokens: bool = False,
    ) -> list[int]:
        if already_has_special_tokens:
            marked = set(self.all_special_ids) | {self.gmask_token_id}
            return [1 if i in marked else 0 for i in token_ids_0]
        mask = [0] * len(token_ids_0) + [1, 1]
        if token_ids_1 is not None:
            mask += [0] * len(token_ids_1) + [1]
        return mask

    def _pad(
        self,
        encoded_inputs: dict[str, Any],
        max_length: int | None = None,
        padding_strategy: PaddingStrategy = PaddingStrategy.DO_NOT_PAD,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
    ) -> dict:
        return pad_glm_inputs(
            self,
            encoded_inputs,
            max_length=max_length,
            padding_strategy=padding_strategy,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_attention_mask=return_attention_mask,
        )


KEYS_V1 = ("num_image_tokens", "remove_space", "do_lower_case")


def load_tokenizer(path: str | Path, **kwargs: Any) -> ChatGLMTokenizer:
    """ChatGLM-6B tokenizer from a checkpoint folder (``ice_text.model`` + ``tokenizer_config.json``)."""
    folder, model = locate(path, MODEL_FILE)
    init = init_kwargs_from_config(read_tokenizer_config(folder), KEYS_V1, kwargs)
    return ChatGLMTokenizer(str(model), name_or_path=str(folder), **init)
