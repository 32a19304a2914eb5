"""Chunked causal-LM loss: never materialise float32 logits over the whole vocabulary at once.

``glmtune train`` uses it by default (``chunked_loss: true``): only positions whose next-token label
is not -100 (the answer tokens) go through the output layer at all, which for instruction data skips
most of a step's vocabulary projection and softmax. The value equals the model's own loss.

For a 65k vocabulary, ``batch * seq * 65024 * 4`` bytes of float32 logits (plus their gradient) is
often the largest tensor of a fine-tuning step. Here the model runs with ``logits_to_keep`` an empty index and
``output_hidden_states=True`` (so it computes no logits: even one position reads the whole output layer), and the loss is taken
from the final hidden states through the output layer ``chunk`` tokens at a time; each chunk's
gradients are computed while its logits exist (a fused linear + cross-entropy), so logits are
neither stored for backward nor recomputed.

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

from glmtune.errors import GlmtuneError

IGNORE_INDEX = -100
DEFAULT_CHUNK = 1024


_LOG2E = 1.4426950408889634
# Below this the softmax sum's own terms turn subnormal (fewer bits): with s >= 2^-80 the largest term is
# >= 2^-80 / vocab, and every term within float32 precision of it stays normal for vocabularies < 2^20.
_SMALLEST_SUM = 2.0**-80
TILE_ROWS, TILE_VOCAB = 512, 512  # <= 1 MB fp32 logits per tile, near L2 size (measured best)


def _online_tiles(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor,
                  need_h: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(sum of cross-entropies, d(sum)/d(hidden)) in one pass over the vocabulary, one exp per logit.

    The softmax is accumulated over vocabulary tiles while each is in cache: ``s = sum_j exp(l_j)`` and
    ``acc = sum_j exp(l_j) W_j``, so ``loss = log s - l_y`` and ``d/dh = acc / s - W_y``. Nothing larger
    than one tile is ever allocated, which on CPU also spares the page faults of fresh ``n x vocab``
    buffers; fp32 only. No max is subtracted (one pass less over every tile): a float32 ``exp`` is exact
    to its last bits over the range of real logits, and rows where it is not (a logit above ~88, or all
    below ~-55: an infinite or nearly subnormal ``s``) are redone, alone, with a running max."""
    total = hidden.new_zeros((), dtype=torch.float32)
    grad_h = torch.empty_like(hidden) if need_h else None
    rows = max(1, -(-hidden.shape[0] // max(1, -(-hidden.shape[0] // TILE_ROWS))))  # equal row tiles
    for r0 in range(0, hidden.shape[0], rows):
        h, y = hidden[r0: r0 + rows], labels[r0: r0 + rows]
        w_y = weight[y]
        target = (h * w_y).sum(-1) + (bias[y] if bias is not None else 0)
        s, acc = _unshifted(h, weight, bias, need_h)
        loss, grad = s.log() - target, (acc / s[:, None] - w_y if acc is not None else None)
        out = ~((s >= _SMALLEST_SUM) & (s < torch.inf))  # NaN is out too
        if grad is not None:
            out |= ~torch.isfinite(grad).all(-1)
        if bool(out.any()):  # only those rows again, with the running max
            redo = out.nonzero().squeeze(-1)
            loss[redo], again = _running_max(h[redo], weight, bias, target[redo], w_y[redo], need_h)
            if grad is not None and again is not None:
                grad[redo] = again
        total += loss.sum()
        if grad_h is not None and grad is not None:
            grad_h[r0: r0 + h.shape[0]] = grad
    return total, grad_h


def _unshifted(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               need_h: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(sum_j exp(l_j), sum_j exp(l_j) W_j)`` per row, as ``2 ** (l_j log2 e)``: ``exp2`` is ~1.6x
    faster than ``exp`` here, and the factor rides on the hidden states, not on every logit."""
    n, ht = h.shape[0], (h * _LOG2E).t()
    s = h.new_zeros(n)
    acc = h.new_zeros(h.shape) if need_h else None
    buffer = h.new_empty((min(TILE_VOCAB, weight.shape[0]), n))  # reused: no fresh pages per tile
    for v0 in range(0, weight.shape[0], TILE_VOCAB):
        w = weight[v0: v0 + TILE_VOCAB]
        tile = buffer[: w.shape[0]]
        if bias is None:
            torch.mm(w, ht, out=tile)
        else:
            torch.addmm(bias[v0: v0 + TILE_VOCAB, None], w, ht, beta=_LOG2E, out=tile)
        tile.exp2_()
        s += tile.sum(0)
        if acc is not None:
            acc.addmm_(tile.t(), w)
    return s, acc


def _running_max(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, target: torch.Tensor,
                 w_y: torch.Tensor, need_h: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row losses and gradients with flash-attention's running max and rescaled sums: any logits."""
    n, ht = h.shape[0], h.t()
    m = h.new_full((n,), torch.finfo(torch.float32).min)  # finite: a tile of -inf logits gives 0, not NaN
    s = h.new_zeros(n)
    acc = h.new_zeros(h.shape) if need_h else None
    for v0 in range(0, weight.shape[0], TILE_VOCAB):
        w = weight[v0: v0 + TILE_VOCAB]
        tile = torch.mm(w, ht)  # [tile_vocab, n]
        if bias is not None:
            tile += bias[v0: v0 + TILE_VOCAB, None]
        new_m = torch.maximum(m, tile.amax(0))
        rescale = torch.exp(m - new_m)
        tile.sub_(new_m).exp_()
        s.mul_(rescale).add_(tile.sum(0))
        if acc is not None:
            acc.mul_(rescale[:, None]).addmm_(tile.t(), w)
        m = new_m
    return m + s.log() - target, (acc / s[:, None] - w_y if acc is not None else None)


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum of cross-entropies of ``hidden @ weight.T + bias`` against ``labels``, ``chunk`` rows at a time.

    Fused: while each chunk's logits exist, the forward also computes that chunk's gradients
    (``softmax - onehot`` times the weight / the hidden states) and keeps only those, so no logits are
    stored and none are recomputed in backward (checkpointing the chunks costs a third projection).
    On CPU in float32 with a frozen output layer (LoRA, P-Tuning, freeze: the common case) the forward
    is :func:`_online_tiles` instead: about 2x faster, same values within float rounding. (On GPUs
    the caching allocator makes the chunk buffers cheap and the tiles would be too small.)"""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                labels: torch.Tensor, chunk: int, with_grad: bool) -> torch.Tensor:
        need_h, need_w = with_grad and hidden.requires_grad, with_grad and weight.requires_grad
        need_b = with_grad and bias is not None and bias.requires_grad
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        fp32 = all(t is None or t.dtype == torch.float32 for t in (hidden, weight, bias))
        if fp32 and hidden.device.type == "cpu" and not need_w and not need_b:  # tiles sized for CPU caches
            with torch.autocast(hidden.device.type, enabled=False):  # fp32 tiles even inside an autocast region
                total, grad_h = _online_tiles(hidden, weight, bias, labels, need_h)
            ctx.save_for_backward(grad_h, None, None)
            return total
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, labels.shape[0], chunk):
            h, y = hidden[start: start + chunk], labels[start: start + chunk]
            logits = F.linear(h, weight, bias).float()
            total += F.cross_entropy(logits, y, reduction="sum")
            if need_h or need_w or need_b:
                g = torch.softmax(logits, dim=-1)
                g[torch.arange(y.shape[0], device=y.device), y] -= 1  # d(sum CE)/d(logits), float32
                g = g.to(hidden.dtype)  # as autograd does through .float()
                if need_h:
                    grad_h[start: start + chunk] = g @ weight
                if need_w:
                    grad_w += (g.t() @ h).float()
                if need_b:
                    grad_b += g.float().sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale = grad_out.float()
        return (None if grad_h is None else grad_h * scale.to(grad_h.dtype),
                None if grad_w is None else (grad_w * scale).to(ctx.dtypes[0]),
                None if grad_b is None else (grad_b * scale).to(ctx.dtypes[1]), None, None, None)


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
    if weight.is_floating_point() and h.dtype != weight.dtype:
        h = h.to(weight.dtype)  # e.g. float32 hidden states (peft's float32 adapters) before a bf16 head
    total = _LinearCrossEntropy.apply(h, weight, bias, y, int(chunk), torch.is_grad_enabled())
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
        none = torch.empty(0, dtype=torch.long, device=labels.device)  # no position's logits at all
        outputs = model(**inputs, output_hidden_states=True, logits_to_keep=none, use_cache=False)
    except TypeError as exc:
        raise GlmtuneError(f"chunked_loss is not supported by this model ({exc}); set chunked_loss: false") from None
    logits = getattr(outputs, "logits", None)
    hidden = outputs.hidden_states[-1] if getattr(outputs, "hidden_states", None) else None
    if logits is None or logits.shape[-2] > 1 or hidden is None or hidden.shape[:2] != labels.shape[:2]:
        raise GlmtuneError(
            f"chunked_loss is not supported by {type(model).__name__}: its forward ignores "
            "logits_to_keep or output_hidden_states=True, or adds positions of its own (prompt learning); "
            "set chunked_loss: false"
        )
    total, count = chunked_cross_entropy(hidden, labels, _output_layer(model), chunk)
    denom = num_items_in_batch if num_items_in_batch is not None else count.clamp(min=1)
    if isinstance(denom, torch.Tensor):
        denom = denom.to(total.device)
    # keep the (empty) logits in the graph so DDP sees every parameter used
    loss = total / denom + 0.0 * logits.sum()
    return loss, outputs
