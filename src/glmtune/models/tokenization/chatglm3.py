"""Native ChatGLM3-6B tokenizer: ChatGLM2's plus four role tokens (``<|system|>`` ... = 64794..64797).

Differences from ChatGLM2, as the THUDM code behaves (reference MANIFEST, step 2):
- decode writes command/role ids out as their text (``"[gMASK]sop<|user|> \\n ..."``), and
  ``skip_special_tokens=True`` does not remove them (they are not special tokens of the HF wrapper);
- ``encode_special_tokens=True`` (constructor) matches all nine command/role texts typed in text,
  bare ``sop``/``eop`` included, each text chunk around them encoded with the dummy prefix;
- ``build_single_message(role, metadata, content)`` is the prompt primitive of the chat format.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.models.tokenization._common import init_kwargs_from_config, locate, read_tokenizer_config
from glmtune.models.tokenization.chatglm2 import MODEL_FILE, ChatGLM2Tokenizer

ROLES = ("system", "user", "assistant", "observation")


class ChatGLM3Tokenizer(ChatGLM2Tokenizer):
    """ChatGLM3-6B tokenizer: ChatGLM2's with role tokens and the official ``encode_special_tokens`` mode."""

    glmtune_family = "chatglm3"
    COMMAND_TEXTS = ChatGLM2Tokenizer.COMMAND_TEXTS + tuple(f"<|{role}|>" for role in ROLES)

    def __init__(self, vocab_file: str, encode_special_tokens: bool = False, **kwargs: Any) -> None:
        self.encode_special_tokens = bool(encode_special_tokens)
        # longest first so that no text is cut by a shorter one that starts it
        texts = sorted(self.COMMAND_TEXTS, key=len, reverse=True)
        self._special_pattern = re.compile("|".join(re.escape(t) for t in texts))
        super().__init__(vocab_file, encode_special_tokens=self.encode_special_tokens, **kwargs)

    def role_token_id(self, role: str) -> int:
        """Id of ``<|role|>`` for role system / user / assistant / observation."""
        if role not in ROLES:
            raise GlmtuneError(f"unknown ChatGLM3 role {role!r}; choose one of: {', '.join(ROLES)}")
        return self.special_ids[f"<|{role}|>"]

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        if not self.encode_special_tokens:
            return self.sp.encode(text, out_type=str)
        pieces: list[str] = []
        last = 0
        for match in self._special_pattern.finditer(text):
            if match.start() > last:
                pieces.extend(self.sp.encode(text[last : match.start()], out_type=str))
            pieces.append(match.group())
            last = match.end()
        if last < len(text):
            pieces.extend(self.sp.encode(text[last:], out_type=str))
        return pieces

    def _convert_id_to_token(self, index: int) -> str:
        # command texts are not pieces: ChatGLM2's decode_pieces writes them out as they are
        special = self._special_texts.get(index)
        return special if special is not None else super()._convert_id_to_token(index)

    def _ids_not_decoded(self, skip_special_tokens: bool) -> set[int]:
        # skip_special_tokens only drops eos/unk/pad, which decode to "" anyway: command ids stay
        return set()

    def build_single_message(self, role: str, metadata: str, message: str) -> list[int]:
        """``[<|role|>] + ids(metadata + "\\n") + ids(message)``: one turn of the ChatGLM3 chat format.

        Each part is encoded on its own with SentencePiece's dummy prefix (hence ``30910, 13`` after the
        role id for empty metadata) and no special text is matched, as THUDM's ``build_single_message``.
        """
        return [self.role_token_id(role)] + self.sp.encode(f"{metadata}\n") + self.sp.encode(message)


KEYS_V3 = ("encode_special_tokens",)


def load_tokenizer(path: str | Path, **kwargs: Any) -> ChatGLM3Tokenizer:
    """ChatGLM3 tokenizer from a checkpoint folder (``tokenizer.model`` + ``tokenizer_config.json``)."""
    folder, model = locate(path, MODEL_FILE)
    init = init_kwargs_from_config(read_tokenizer_config(folder), KEYS_V3, kwargs)
    return ChatGLM3Tokenizer(str(model), name_or_path=str(folder), **init)


load_tokenizer_v3 = load_tokenizer  # its former name in the chatglm2 module (which no longer imports this one)
