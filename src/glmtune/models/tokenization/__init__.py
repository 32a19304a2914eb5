"""Native tokenizers of the ChatGLM family (no remote code): v1 (ice_text), ChatGLM2 and ChatGLM3.

The family registry points at ``chatglm:load_tokenizer``, ``chatglm2:load_tokenizer`` and
``chatglm3:load_tokenizer``; each takes a checkpoint folder as THUDM ships it.
"""

from glmtune.models.tokenization.chatglm import ChatGLMTokenizer
from glmtune.models.tokenization.chatglm2 import ChatGLM2Tokenizer
from glmtune.models.tokenization.chatglm3 import ChatGLM3Tokenizer

__all__ = ["ChatGLM2Tokenizer", "ChatGLM3Tokenizer", "ChatGLMTokenizer"]
