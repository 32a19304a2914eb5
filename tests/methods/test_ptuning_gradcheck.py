"""The P-Tuning v2 prefix gradient is the true derivative of the loss (float64 finite differences).

ChatGLM-6B (v1) P-Tuning learns slowly (prefix grad norm ~8x smaller than ChatGLM2 at the same
settings on the mini checkpoints). The forward matches the original THUDM code (reference d.* cases)
and this check shows the backward is the exact derivative of that forward, so the original code's
autograd gives the same gradient: the small gradient is the model's, not glmtune's.
"""

from __future__ import annotations

import pytest
import torch

import glmtune

FAMILIES = {"chatglm": "glmtune.models.chatglm_v1.prefix", "chatglm2": "glmtune.models.glm_mapping.prefix",
            "chatglm3": "glmtune.models.glm_mapping.prefix"}


def prefix_model(reference, family: str, **kw):
    import importlib

    module = importlib.import_module(FAMILIES[family])
    # sdpa: its float64 math stays float64 (the eager paths take the softmax in float32)
    model = glmtune.load_model(reference / "models" / f"{family}-tiny", attn_implementation="sdpa").double()
    torch.manual_seed(0)
    module.enable_prefix(model, pre_seq_len=2, **kw)
    model.double().eval()  # eval: no prefix dropout, so the loss is a deterministic function of the prefix
    for p in model.parameters():
        p.requires_grad_(False)
    params = module.prefix_parameters(model)
    for p in params:
        p.requires_grad_(True)
    return model, params


def loss64(model, ids, labels) -> torch.Tensor:
    """Next-token CE in float64 (the models' own loss is taken in float32, too coarse for differences)."""
    logits = model(input_ids=ids).logits.double()
    return torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100)


def batch(family: str):
    ids = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    ids = [*ids[:6], 1001, 1004, *ids[6:]] if family == "chatglm" else [*ids, 2]  # v1 needs [gMASK] <sop>
    x = torch.tensor([ids])
    labels = x.clone()
    labels[:, :4] = -100
    return x, labels


def _rmsnorm_in_input_dtype(self, hidden_states: torch.Tensor) -> torch.Tensor:
    """GlmRMSNorm's math without its float32 round trip (which would hide float64 differences)."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


@pytest.mark.parametrize("family", ["chatglm", "chatglm2", "chatglm3"])
@pytest.mark.parametrize("projection", [False, True])
def test_prefix_gradient_matches_finite_differences(reference, family, projection, monkeypatch):
    from transformers.models.glm import modeling_glm

    monkeypatch.setattr(modeling_glm.GlmRMSNorm, "forward", _rmsnorm_in_input_dtype)
    model, params = prefix_model(reference, family, prefix_projection=projection, prefix_hidden_size=8)
    ids, labels = batch(family)
    loss64(model, ids, labels).backward()
    gen = torch.Generator().manual_seed(1)
    for param in params:
        grad = param.grad.detach().clone()
        flat = param.detach().view(-1)
        for idx in torch.randint(0, flat.numel(), (6,), generator=gen).tolist():
            old, eps = flat[idx].item(), 1e-6
            with torch.no_grad():
                flat[idx] = old + eps
                up = loss64(model, ids, labels).item()
                flat[idx] = old - eps
                down = loss64(model, ids, labels).item()
                flat[idx] = old
            numeric = (up - down) / (2 * eps)
            assert grad.view(-1)[idx].item() == pytest.approx(numeric, rel=1e-5, abs=1e-9), (family, idx)
