"""Chunked causal-LM loss: never materialise float32 logits over the whole vocabulary at once.

For a 65k vocabulary, ``batch * seq * 65024 * 4`` bytes of float32 logits (plus their gradient) is
often the largest tensor of a fine-tuning step. Here the model runs with ``logits_to_keep=1`` and
``output_hidden_states=True`` (so it computes one position of logits only), and the loss is taken
from the final hidden states through the output layer ``chunk`` tokens at a time. Each chunk is
wrapped in ``torch.utils.checkpoint`` so its logits are recomputed in backward instead of stored.

Supported: models whose forward honours ``logits_to_keep`` and whose last ``hidden_states`` entry
is the input of ``get_output_embeddings()``: every ChatGLM generation in glmtune -- transformers'
``GlmForCausalLM`` (ChatGLM2, ChatGLM3, GLM-4) and glmtune's ChatGLM-6B v1 module (130k vocabulary;
its masks and 2-D positions are still derived from ``input_ids``, or taken from a packed 4-D mask),
plain and under peft LoRA; v1 also with glmtune's P-Tuning v2 prefix (it feeds each layer its prefix
directly) -- and most modern transformers causal LMs (Llama, Qwen2, ...). Not supported: peft
prompt-learning wrappers (peft prefix/prompt tuning) and any model that ignores ``logits_to_keep``:
those raise ``GlmtuneError`` rather than silently computing the full logits; use
``chunked_loss: false`` there.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from glmtune.errors import GlmtuneError

IGNORE_INDEX = -100
DEFAULT_CHUNK = 1024


def _chunk_loss_sum(hidden: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: Any) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias).float()
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")


def chunked_cross_entropy(
    hidden: torch.Tensor, labels: torch.Tensor, output_layer: torch.nn.Module, chunk: int = DEFAULT_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of token losses, number of target tokens) of next-token prediction, ``chunk`` tokens at a time.

    ``hidden`` is ``[batch, seq, dim]`` (final, normed hidden states); ``labels`` ``[batch, seq]`` with
    -100 for ignored positions, unshifted (position t predicts labels[t + 1]).
    """
    weight = getattr(output_layer, "weight", None)
    if weight is None:
        raise GlmtuneError("chunked_loss: the model's output layer has no weight; set chunked_loss: false")
    bias = getattr(output_layer, "bias", None)
    h = hidden[:, :-1, :].reshape(-1, hidden.shape[-1])
    y = labels[:, 1:].reshape(-1).to(h.device)
    keep = y != IGNORE_INDEX
    h, y = h[keep], y[keep]  # only target positions go through the output layer
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, y.shape[0], chunk):
        part = checkpoint(
            _chunk_loss_sum, h[start : start + chunk], y[start : start + chunk], weight, bias, use_reentrant=False
        )
        total = total + part
    return total, keep.sum()


def _output_layer(model: torch.nn.Module) -> torch.nn.Module:
    inner = model
    while hasattr(inner, "module") and not hasattr(inner, "get_output_embeddings"):
        inner = inner.module  # DDP / accelerate wrappers
    layer = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if layer is None:
        raise GlmtuneError(
            "chunked_loss: this model has no output embeddings to compute the loss from; set chunked_loss: false"
        )
    return layer


def chunked_causal_lm_loss(
    model: torch.nn.Module,
    inputs: dict[str, Any],
    chunk: int = DEFAULT_CHUNK,
    num_items_in_batch: torch.Tensor | int | None = None,
) -> tuple[torch.Tensor, Any]:
    """Causal-LM loss of ``model`` on ``inputs`` (with ``labels``) via :func:`chunked_cross_entropy`.

    Divides by ``num_items_in_batch`` when given (gradient-accumulation-correct, as transformers
    models do), else by this batch's number of target tokens.
    """
    inputs = dict(inputs)
    labels = inputs.pop("labels")
    try:
        outputs = model(**inputs, output_hidden_states=True, logits_to_keep=1, use_cache=False)
    except TypeError as exc:
        raise GlmtuneError(f"chunked_loss is not supported by this model ({exc}); set chunked_loss: false") from None
    logits = getattr(outputs, "logits", None)
    hidden = outputs.hidden_states[-1] if getattr(outputs, "hidden_states", None) else None
    if logits is None or logits.shape[-2] > 1 or hidden is None or hidden.shape[:2] != labels.shape[:2]:
        raise GlmtuneError(
            f"chunked_loss is not supported by {type(model).__name__}: its forward ignores "
            "logits_to_keep=1 or output_hidden_states=True, or adds positions of its own (prompt learning); "
            "set chunked_loss: false"
        )
    total, count = chunked_cross_entropy(hidden, labels, _output_layer(model), chunk)
    denom = num_items_in_batch if num_items_in_batch is not None else count.clamp(min=1)
    if isinstance(denom, torch.Tensor):
        denom = denom.to(total.device)
    # keep the (unused) last-position logits in the graph so DDP sees every parameter used
    loss = total / denom + 0.0 * logits.sum()
    return loss, outputs
