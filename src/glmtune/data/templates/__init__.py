"""Prompt templates: one small module per format, registered in ``TEMPLATES``.

``resolve_template(tokenizer, name)`` returns the template instance; ``name=None`` picks the
family's default from the tokenizer (its ``glmtune_family`` attribute; ``guess_family`` for others).
"""

from __future__ import annotations

from typing import Any

from glmtune.data.templates.alpaca_text import AlpacaTextTemplate
from glmtune.data.templates.base import EncodeOptions, Layout, Segment, Template
from glmtune.data.templates.chat_template import ChatTemplate, Glm4Template
from glmtune.data.templates.chatglm import ChatGLMTemplate
from glmtune.data.templates.chatglm2 import ChatGLM2Template
from glmtune.data.templates.chatglm3 import ChatGLM3Template
from glmtune.errors import GlmtuneError
from glmtune.models.family import FAMILIES
from glmtune.registry import Registry

__all__ = ["TEMPLATES", "EncodeOptions", "Layout", "Segment", "Template", "family_of", "guess_family",
           "resolve_template"]

TEMPLATES: Registry[type[Template]] = Registry("template")
TEMPLATES.register("chatglm")(ChatGLMTemplate)
TEMPLATES.register("chatglm2")(ChatGLM2Template)
TEMPLATES.register("chatglm3")(ChatGLM3Template)
TEMPLATES.register("glm4")(Glm4Template)
TEMPLATES.register("hf")(ChatTemplate)
TEMPLATES.register("alpaca-text", "alpaca")(AlpacaTextTemplate)

_INSTANCES: dict[str, Template] = {}


def family_of(tokenizer: Any) -> str:
    """The model family a tokenizer belongs to, for picking the default template and batching.

    Every glmtune tokenizer says so itself (its ``glmtune_family`` attribute, also saved in its
    tokenizer_config.json); only a foreign tokenizer is guessed at (``guess_family``).
    """
    fam = getattr(tokenizer, "glmtune_family", None)
    if isinstance(fam, str) and fam:
        return fam
    return guess_family(tokenizer)


def guess_family(tokenizer: Any) -> str:
    """The family of a tokenizer that does not name it: the one place for these heuristics.

    THUDM's remote-code tokenizers are recognised by ChatGLM3's role tokens, their class name and
    their size (v1's ice_text: 130344 tokens, ChatGLM2's: 64794); a GLM-4 tokenizer by ``[gMASK]``
    and a chat template; anything else is a plain transformers model ("hf").
    """
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    if vocab.get("<|user|>") == 64795 or getattr(tokenizer, "role_special_token_expression", None):
        return "chatglm3"
    cls = type(tokenizer).__name__.lower()
    if "chatglm3" in cls:
        return "chatglm3"
    size = len(tokenizer) if hasattr(tokenizer, "__len__") else 0
    if "chatglm" in cls or size == 130344 or size == 64794:
        return "chatglm" if size >= 130000 or cls.endswith("v1tokenizer") else "chatglm2"
    return "glm4" if "[gMASK]" in vocab and getattr(tokenizer, "chat_template", None) else "hf"


def resolve_template(tokenizer: Any, name: str | Template | None = None) -> Template:
    """The template object for ``name`` (a registered name or instance), or the tokenizer family's default."""
    if isinstance(name, Template):
        return name
    if name is None:
        fam = family_of(tokenizer)
        name = FAMILIES.get(fam).default_template if fam in FAMILIES else fam
    if name not in _INSTANCES:
        cls = TEMPLATES.get(name)
        if cls is None:  # pragma: no cover - Registry.get raises
            raise GlmtuneError(f"unknown template {name!r}")
        _INSTANCES[name] = cls()
    return _INSTANCES[name]
