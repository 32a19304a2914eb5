"""Mini checkpoints in hub layout (fp16 shards, real config and tokenizer): path-only load reproduces
the recorded chat prompt ids, last-position logits, greedy chat output and training losses."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

import glmtune  # noqa: E402

ATOL = 1e-5


@pytest.fixture(scope="module", params=["chatglm2-mini", "chatglm3-mini"])
def mini(request, reference):
    folder = reference / "checkpoints" / request.param
    expected = json.loads((reference / "checkpoints" / f"{request.param}.expected.json").read_text())
    return request.param, glmtune.load_model(folder), expected


def test_family_and_dtype(mini):
    name, model, _ = mini
    assert model.config.glmtune["family"] == name.split("-")[0]
    assert model.dtype == torch.float32  # fp16 on disk, float32 on the CPU by default


def test_last_position_logits(mini):
    _, model, exp = mini
    lp = exp["last_position_logits"]
    chat = next(c for c in exp["chat"] if c["name"] == lp["case"])
    assert chat["prompt_input_ids"] == lp["input_ids"]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([chat["prompt_input_ids"]]),
                    attention_mask=torch.tensor([chat["prompt_attention_mask"]]),
                    position_ids=torch.tensor([chat["prompt_position_ids"]]))
    logits = out.logits[0, -1]
    torch.testing.assert_close(logits, torch.tensor(lp["logits"], dtype=torch.float32), atol=ATOL, rtol=0)
    assert int(logits.argmax()) == lp["argmax"]


def test_chat_greedy_output(mini):
    _, model, exp = mini
    for chat in exp["chat"]:
        with torch.no_grad():
            seq = model.generate(input_ids=torch.tensor([chat["prompt_input_ids"]]),
                                 attention_mask=torch.tensor([chat["prompt_attention_mask"]]),
                                 max_new_tokens=len(chat["new_token_ids"]), do_sample=False)
        assert seq[0].tolist() == chat["output_ids"], chat["name"]


def test_training_losses(mini):
    _, model, exp = mini
    for row in exp["training_loss"]:
        batch = {k: torch.tensor(v) for k, v in row["batch"].items()}
        batch["input_ids"] = torch.tensor([row["input_ids"]])
        batch["labels"] = torch.tensor([row["labels"]])
        with torch.no_grad():
            loss = model(**batch).loss.item()
        assert abs(loss - row["loss"]) < ATOL, row["id"]


def test_prompt_ids_from_tokenizer(mini, reference):
    name, _, exp = mini
    tok = glmtune.load_tokenizer(reference / "checkpoints" / name)
    chat = exp["chat"][0]  # no_history: the prompt format of the original chat()
    if name.startswith("chatglm3"):
        ids = [64790, 64792] + tok.build_single_message("user", "", chat["query"]) + [64796]
    else:
        ids = tok.encode(f"[Round 1]\n\n问：{chat['query']}\n\n答：", add_special_tokens=True)
    assert list(ids) == chat["prompt_input_ids"]
