"""``hf``/``glm4`` templates: the tokenizer's own chat template with assistant masks (tiny local tokenizer)."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import glmtune

WORDS = ["<pad>", "</s>", "<|user|>", "<|assistant|>", "<|system|>", "<end>", "hello", "hi", "there", "bye", "be", "brief"]
TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|> {{ m.content }} <end> {% endfor %}"
            "{% if add_generation_prompt %}<|assistant|> {% endif %}")
GEN_TEMPLATE = ("{% for m in messages %}{% if m.role == 'assistant' %}<|assistant|> {% generation %}{{ m.content }}"
                " <end>{% endgeneration %} {% else %}<|{{ m.role }}|> {{ m.content }} <end> {% endif %}{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|> {% endif %}")


def tiny(template: str) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>")
    tok.chat_template = template
    return tok


def ids(*words):
    return [WORDS.index(w) for w in words]


@pytest.mark.parametrize("template", [TEMPLATE, GEN_TEMPLATE])
def test_chat_template_masks(template):
    tok = tiny(template)
    I = -100  # noqa: E741
    one = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}]
    out = glmtune.encode(tok, one, template="hf")
    assert out["input_ids"] == ids("<|user|>", "hello", "<end>", "<|assistant|>", "hi", "there", "<end>")
    assert out["labels"] == [I, I, I, I, *ids("hi", "there", "<end>")]
    three = [{"role": "system", "content": "be brief"}, *one, {"role": "user", "content": "bye"},
             {"role": "assistant", "content": "bye"}, {"role": "user", "content": "hello"},
             {"role": "assistant", "content": "hi"}]
    out = glmtune.encode(tok, three, template="glm4")
    learned = [x for x in out["labels"] if x != I]
    assert learned == ids("hi", "there", "<end>", "bye", "<end>", "hi", "<end>")
    last = glmtune.encode(tok, three, template="hf", multi_turn="last")
    assert [x for x in last["labels"] if x != I] == ids("hi", "<end>")
    prompt = glmtune.build_chat_input(tok, three[:4], template="glm4")  # system, user, assistant, user
    assert prompt == out["input_ids"][: len(prompt)]
    assert prompt[-1] == ids("<|assistant|>")[0]
