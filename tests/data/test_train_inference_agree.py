"""Training prompt == inference prompt, for every family x template x multi_turn x system x tool turns.

For each learned assistant turn of an encoded example, the ids in front of it must be exactly the
inference prompt built from the messages before that turn, and the learned run must end with a
token inference stops on. Otherwise a model is trained on one layout and asked in another.
"""

from __future__ import annotations

import itertools

import pytest
from test_templates_hf import GEN_TEMPLATE, TEMPLATE, tiny

import glmtune
from glmtune.data.templates import resolve_template

I = -100  # noqa: E741
TURNS = [("你好", "你好👋！我是人工智能助手。"), ("晚上睡不着应该怎么办", "以下是一些建议：\n\n1. 保持规律"),
         ("What is 2+2?", "2 + 2 = 4.")]
HF_TURNS = [("hello", "hi there"), ("bye", "bye"), ("hello", "hi")]
TOOLS = [{"name": "get_weather", "description": "天气", "parameters": {"type": "object"}}]

CASES = [  # (tokenizer source, template)
    ("chatglm", "chatglm"), ("chatglm", "alpaca-text"),
    ("chatglm2", "chatglm2"), ("chatglm2", "alpaca-text"),
    ("chatglm3", "chatglm3"), ("chatglm3", "alpaca-text"),
    ("hf-plain", "hf"), ("hf-generation", "hf"), ("hf-plain", "glm4"),
]
SYSTEM_SLOT = {"chatglm3", "alpaca-text", "hf", "glm4"}
_TOK: dict = {}


def tokenizer(reference, source):
    if source not in _TOK:
        if source.startswith("hf"):
            _TOK[source] = tiny(GEN_TEMPLATE if source == "hf-generation" else TEMPLATE)
        else:
            _TOK[source] = glmtune.load_tokenizer(reference / "checkpoints" / f"{source}-mini")
    return _TOK[source]


def conversations(template: str, hf: bool) -> list[list[dict]]:
    turns = HF_TURNS if hf else TURNS
    base = [[m for q, a in turns[:n] for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
            for n in (1, 3)]
    out = list(base)
    if template in SYSTEM_SLOT:
        system = {"role": "system", "content": "be brief" if hf else "你是一个乐于助人的助手。"}
        out += [[system, *c] for c in base]
    if template == "chatglm3":
        out.append([{"role": "system", "content": "你可以调用工具。", "tools": TOOLS},
                    {"role": "user", "content": "北京天气怎么样？"},
                    {"role": "assistant", "content": "我来查询一下。"},
                    {"role": "tool", "content": '{"temperature": 20}'},
                    {"role": "assistant", "content": "北京今天20度。"}])
    return out


def learned_runs(labels: list[int]) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, label in enumerate([*labels, I]):
        if label != I and start is None:
            start = i
        elif label == I and start is not None:
            runs.append((start, i))
            start = None
    return runs


@pytest.mark.parametrize(("source", "template"), CASES)
@pytest.mark.parametrize("multi_turn", ["all", "last", "split"])
def test_training_prompt_equals_inference_prompt(reference, source, template, multi_turn):
    tok = tokenizer(reference, source)
    tpl = resolve_template(tok, template)
    stops = set(tpl.stop_ids(tok))
    checked = 0
    for messages in conversations(template, source.startswith("hf")):
        encoded = glmtune.encode(tok, messages, template, multi_turn=multi_turn, train_on_observation=False)
        examples = encoded if isinstance(encoded, list) else [encoded]
        assistant_at = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        for example in examples:
            ids, runs = example["input_ids"], learned_runs(example["labels"])
            # each learned run is one assistant turn, in order; the example ends with the last one it learns
            turns = iter(assistant_at)
            for start, end in runs:
                # ChatGLM-6B's official ptuning/main.py also learns <sop> (predicted from [gMASK]), which
                # chat() puts at the end of the prompt: the run starts one token before the reply there
                start += 1 if template == "chatglm" else 0
                expected = None
                for turn in turns:
                    prompt = glmtune.build_chat_input(tok, messages[:turn], tpl)
                    if ids[:start] == prompt:
                        expected = prompt
                        break
                assert expected is not None, (template, multi_turn, messages, start)
                assert ids[end - 1] in stops, (template, multi_turn, "learned run must end with a stop id")
                checked += 1
    assert checked


def test_every_case_is_covered():
    assert len(list(itertools.product(CASES, ["all", "last", "split"]))) == 27
