"""Helpers shared by the family detectors: what a checkpoint folder's own files say about it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmtune.utils.io import read_json

ROLE_TOKENS = ("<|user|>", "<|assistant|>", "<|observation|>")  # ChatGLM3's role tokens, absent from ChatGLM2
ROLE_IDS = {64795, 64797}  # ChatGLM3's <|user|> / <|observation|>: stop ids in its generation_config
# the official repository ids that save_pretrained records in _name_or_path: a record, not a guess
OFFICIAL_ID = re.compile(r"^(?:thudm|zai-org)/chatglm([23])-6b(?:-[a-z0-9]+)*$")


@dataclass
class FolderFiles:
    """A checkpoint folder's small text files, read once and only when asked."""

    folder: Path
    config: dict[str, Any]
    tok: dict[str, Any]
    _texts: dict[str, str] = field(default_factory=dict)

    def text(self, name: str) -> str:
        if name not in self._texts:
            path = self.folder / name
            try:
                self._texts[name] = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
            except OSError:
                self._texts[name] = ""
        return self._texts[name]


def is_thudm_chatglm(config: dict[str, Any]) -> bool:
    return config.get("model_type") == "chatglm"


def is_v1(config: dict[str, Any]) -> bool:
    if config.get("model_type") == "glmtune_chatglm_v1":  # saved by glmtune's own v1 model
        return True
    return is_thudm_chatglm(config) and ("position_encoding_2d" in config or "inner_hidden_size" in config)


def recorded_family(config: dict[str, Any]) -> str | None:
    """The family glmtune recorded in a converted checkpoint's config (``config.glmtune.family``)."""
    record = config.get("glmtune")
    return record.get("family") if isinstance(record, dict) else None


def _official_generation(files: FolderFiles) -> str | None:
    ids = [files.config.get("_name_or_path"), files.tok.get("name_or_path"), files.tok.get("_name_or_path")]
    found = {m.group(1) for p in ids if p and (m := OFFICIAL_ID.match(str(p).strip().lower().rstrip("/")))}
    return f"chatglm{found.pop()}" if len(found) == 1 else None


def chatglm2_or_3(files: FolderFiles) -> tuple[str | None, str]:
    """Which of ChatGLM2/ChatGLM3 a THUDM-layout folder is, and the evidence (``None``: the files don't say).

    The two share architecture, config fields and tokenizer.model; ChatGLM3 alone has role tokens
    (in its tokenizer code and config, chat template, tokenizer.json, and generation stop ids).
    """
    tok_text = " ".join(str(files.tok.get(k, "")) for k in ("chat_template", "added_tokens_decoder",
                                                            "additional_special_tokens"))
    places = {"tokenizer_config.json": tok_text, "tokenization_chatglm.py": files.text("tokenization_chatglm.py"),
              "tokenizer.json": files.text("tokenizer.json")}
    for name, text in places.items():
        if any(token in text for token in ROLE_TOKENS):
            return "chatglm3", f"role tokens in {name}"
    gen = read_json(files.folder / "generation_config.json") if (files.folder / "generation_config.json").is_file() else {}
    eos = gen.get("eos_token_id")
    if isinstance(eos, list) and ROLE_IDS & set(eos):
        return "chatglm3", "role-token stop ids in generation_config.json"
    if "special_tokens" in places["tokenization_chatglm.py"]:  # ChatGLM2's tokenizer code: no role tokens
        return "chatglm2", "tokenization_chatglm.py without role tokens"
    official = _official_generation(files)
    if official:
        return official, "the official repository id in _name_or_path"
    return None, "no role tokens, tokenizer code or official repository id in the folder"
