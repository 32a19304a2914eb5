"""The name transformers gives the KV cache in model inputs and outputs.

transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name is a deprecated alias that
goes in 5.40). glmtune's own v1 module returns its cache under whichever field this transformers'
output classes declare, read from the classes themselves rather than from a version number.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from transformers.modeling_outputs import CausalLMOutputWithPast

CACHE_FIELD = "cache" if "cache" in {f.name for f in fields(CausalLMOutputWithPast)} else "past_key_values"


def cache_from(kwargs: dict[str, Any]) -> Any:
    """The cache a caller handed over under either name (``None`` when neither is set)."""
    for name in ("cache", "past_key_values"):
        if kwargs.get(name) is not None:
            return kwargs[name]
    return None
