"""Chunked loss on ChatGLM-6B v1 (130k vocabulary, masks/2-D positions from ids): equals the model's loss."""

from __future__ import annotations

import json

import pytest
import torch

from glmtune.errors import GlmtuneError
from glmtune.train.loss import chunked_causal_lm_loss


def _v1(reference):
    import glmtune

    torch.manual_seed(0)
    return glmtune.load_model(reference / "models" / "chatglm-tiny", dtype=torch.float32)


def _left_padded(config) -> dict[str, torch.Tensor]:
    """Two v1 rows ([gMASK] <sop> answer eos), the second left-padded; prompt labels -100."""
    g, sop, eos, pad = config.gmask_token_id, config.bos_token_id, config.eos_token_id, config.pad_token_id
    ids = torch.full((2, 12), pad)
    ids[0] = torch.tensor([5, 6, 7, 8, g, sop, 10, 11, 12, 13, 14, eos])
    ids[1, 4:] = torch.tensor([20, 21, g, sop, 30, 31, 32, eos])
    labels = ids.clone()
    labels[0, :6] = -100
    labels[1, :8] = -100
    return {"input_ids": ids, "attention_mask": (ids != pad).long(), "labels": labels}


def _assert_same_loss_and_grads(model, batch, chunk, num_items=None):
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    extra = {} if num_items is None else {"num_items_in_batch": num_items}
    ref = model(**batch, **extra).loss
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in params.items()}
    model.zero_grad()
    loss, _ = chunked_causal_lm_loss(model, batch, chunk=chunk, num_items_in_batch=num_items)
    loss.backward()
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    for name, param in params.items():
        torch.testing.assert_close(param.grad, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    assert any(float(g.abs().sum()) > 0 for g in ref_grads.values())


@pytest.mark.parametrize("chunk", [3, 1024])
def test_v1_plain(reference, chunk):
    model = _v1(reference)
    _assert_same_loss_and_grads(model, _left_padded(model.config), chunk)


def test_v1_lora(reference):
    from peft import LoraConfig, get_peft_model

    model = _v1(reference)
    batch = _left_padded(model.config)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["query_key_value"], init_lora_weights=False)
    _assert_same_loss_and_grads(get_peft_model(model, lora), batch, chunk=5)


def test_v1_ptuning_prefix(reference):
    from glmtune.models.chatglm_v1.prefix import enable_prefix, prefix_parameters

    model = _v1(reference)
    enable_prefix(model, pre_seq_len=3)
    model.requires_grad_(False)
    for param in prefix_parameters(model):
        param.requires_grad_(True)
    _assert_same_loss_and_grads(model, _left_padded(model.config), chunk=4)


def test_v1_num_items_and_packed_4d_mask(reference):
    from glmtune.models.chatglm_v1.masks import packed_inputs

    model = _v1(reference)
    c = model.config
    first = [5, 6, c.gmask_token_id, c.bos_token_id, 9, c.eos_token_id]
    second = [7, c.gmask_token_id, c.bos_token_id, 11, 12, c.eos_token_id]
    ids, mask, positions = packed_inputs([first, second], c, 14)  # 4-D block mask + [1,2,L] positions
    labels = ids.clone()
    labels[0, [0, 1, 2, 6, 7, 8]] = -100
    labels[0, 12:] = -100
    batch = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "labels": labels}
    n = int((labels[:, 1:] != -100).sum())
    _assert_same_loss_and_grads(model, batch, chunk=2, num_items=torch.tensor(3 * n))
    full, _ = chunked_causal_lm_loss(model, batch, chunk=2)
    own = model(**batch, num_items_in_batch=3 * n).loss
    torch.testing.assert_close(own * 3, full.detach(), atol=1e-5, rtol=1e-5)


def test_model_ignoring_logits_to_keep_is_refused():
    from transformers.modeling_outputs import CausalLMOutputWithPast

    class FullLogits(torch.nn.Module):
        def forward(self, input_ids, **kwargs):
            hidden = torch.zeros(*input_ids.shape, 4)
            return CausalLMOutputWithPast(logits=torch.zeros(*input_ids.shape, 9), hidden_states=(hidden,))

    ids = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(GlmtuneError, match="chunked_loss: false"):
        chunked_causal_lm_loss(FullLogits(), {"input_ids": ids, "labels": ids})


@pytest.mark.slow
def test_train_v1_mini_with_chunked_loss(reference, tmp_path, monkeypatch):
    import glmtune.train.trainer as trainer_mod
    from glmtune.cli import main as cli

    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return chunked_causal_lm_loss(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "chunked_causal_lm_loss", counted)
    data = tmp_path / "d.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"{i} 加 {i} 等于几？"},
                          {"role": "assistant", "content": f"{2 * i}"}]} for i in range(8)]
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    def run(chunked: bool) -> list[float]:
        out = tmp_path / f"out-{chunked}"
        argv = ["train", f"model={reference / 'checkpoints' / 'chatglm-mini'}", "method=lora", f"data={data}",
                f"output_dir={out}", "max_steps=2", "batch_size=2", "logging_steps=1", "save_steps=100",
                "cutoff_len=48", "val_size=0", "report_to=[none]", "sample_prompts=[]", f"chunked_loss={chunked}"]
        assert cli(argv) == 0
        lines = (out / "train_log.jsonl").read_text().splitlines()
        return [json.loads(x)["loss"] for x in lines if '"loss"' in x]

    plain = run(False)
    assert not calls
    losses = run(True)
    assert len(losses) == 2 and losses == pytest.approx(plain, abs=2e-5)  # the same run, computed in chunks
    assert len(calls) >= 2  # the training steps really went through the chunked loss
