"""Hand-assembled golden ids/labels per template (1 and 3 turns), options and errors."""

from __future__ import annotations

import pytest

import glmtune
from glmtune.data.encode import encode_conversation
from glmtune.errors import DataError, GlmtuneError

I = -100  # noqa: E741
Q = ["你好", "晚上睡不着应该怎么办", "What is 2+2?"]
A = ["你好👋！我是人工智能助手。", "以下是一些建议：\n\n1. 保持规律", "2 + 2 = 4."]
_TOK: dict = {}


def tok(reference, gen):
    if gen not in _TOK:
        _TOK[gen] = glmtune.load_tokenizer(reference / "checkpoints" / f"{gen}-mini")
    return _TOK[gen]


def conv(n):
    msgs = []
    for q, a in zip(Q[:n], A[:n]):
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs


def enc(t, text):
    return t.encode(text, add_special_tokens=False)


def test_chatglm2_golden(reference):
    t = tok(reference, "chatglm2")
    p1, a1 = enc(t, f"[Round 1]\n\n问：{Q[0]}\n\n答："), enc(t, A[0])
    assert glmtune.encode(t, conv(1)) == {
        "input_ids": [64790, 64792, *p1, *a1, 2], "labels": [I] * (2 + len(p1)) + a1 + [2]}
    # last: the official ptuning layout (the whole round prompt, the last answer learned)
    prompt = "".join(f"[Round {i + 1}]\n\n问：{Q[i]}\n\n答：{A[i]}\n\n" for i in range(2))
    p = enc(t, prompt + f"[Round 3]\n\n问：{Q[2]}\n\n答：")
    a = enc(t, A[2])
    assert glmtune.encode(t, conv(3), multi_turn="last") == {
        "input_ids": [64790, 64792, *p, *a, 2], "labels": [I] * (2 + len(p)) + a + [2]}
    split = glmtune.encode(t, conv(3), multi_turn="split")
    assert len(split) == 3 and split[-1]["input_ids"] == [64790, 64792, *p, *a, 2]
    # all: one example per turn, each with the chat() prompt (one sequence could only hold the
    # stream_chat layout, whose ids differ from what the model is asked with)
    assert glmtune.encode(t, conv(3)) == split


def test_chatglm3_golden(reference):
    t = tok(reference, "chatglm3")
    nl = enc(t, "\n")

    def msg(role_id, text, learn):
        head, body = [role_id], nl + enc(t, text)
        return head + body, [I] + (body if learn else [I] * len(body))

    ids, labels = [64790, 64792], [I, I]
    for i in range(3):
        u_ids, u_lab = msg(64795, Q[i], False)
        if i:  # the user role token after a reply is its learned stop signal
            u_lab[0] = 64795
        a_ids, a_lab = msg(64796, A[i], True)
        ids += u_ids + a_ids
        labels += u_lab + a_lab
    out = glmtune.encode(t, conv(3))
    assert out == {"input_ids": ids + [2], "labels": labels + [2]}
    one = glmtune.encode(t, conv(1))
    k = len(one["input_ids"]) - 1
    assert one["input_ids"] == ids[: k] + [2]
    assert one["labels"] == labels[: k] + [2]
    sys_out = glmtune.encode(t, [{"role": "system", "content": "Be brief."}, *conv(1)])
    s_ids = [64794, *nl, *enc(t, "Be brief.")]
    assert sys_out["input_ids"] == [64790, 64792, *s_ids, *one["input_ids"][2:]]
    last = glmtune.encode(t, conv(3), multi_turn="last")
    n_learned = len(nl + enc(t, A[2])) + 1
    assert last["input_ids"] == out["input_ids"]
    assert sum(x != I for x in last["labels"]) == n_learned


def test_chatglm_v1_golden(reference):
    t = tok(reference, "chatglm")
    q, a = enc(t, Q[0]), enc(t, A[0])
    assert glmtune.encode(t, conv(1)) == {
        "input_ids": [*q, 130001, 130004, *a, 130005], "labels": [I] * (len(q) + 1) + [130004, *a, 130005]}
    examples = glmtune.encode(t, conv(3))  # GLM v1 learns one answer per sequence: one example per turn
    assert len(examples) == 3
    prompt = "".join(f"[Round {i}]\n问：{Q[i]}\n答：{A[i]}\n" for i in range(2)) + f"[Round 2]\n问：{Q[2]}\n答："
    p, a3 = enc(t, prompt), enc(t, A[2])
    assert examples[2] == {
        "input_ids": [*p, 130001, 130004, *a3, 130005], "labels": [I] * (len(p) + 1) + [130004, *a3, 130005]}
    assert glmtune.encode(t, conv(3), multi_turn="last") == examples[2]
    with pytest.raises(GlmtuneError, match="train_on_prompt"):
        glmtune.encode(t, conv(1), train_on_prompt=True)


def test_alpaca_text_golden(reference):
    t = tok(reference, "chatglm2")
    p, a = enc(t, f"### Instruction:\n{Q[0]}\n\n### Response:\n"), enc(t, A[0])
    assert glmtune.encode(t, conv(1), template="alpaca-text") == {
        "input_ids": [*p, *a, 2], "labels": [I] * len(p) + a + [2]}
    ids, labels = [], []
    for i in range(3):
        text = ("\n\n" if i else "") + f"### Instruction:\n{Q[i]}\n\n### Response:\n"
        p, a = enc(t, text), enc(t, A[i])
        ids += p + a + [2]
        labels += [I] * len(p) + a + [2]
    assert glmtune.encode(t, conv(3), template="alpaca-text") == {"input_ids": ids, "labels": labels}
    # the inference prompt of round 3 is exactly the ids in front of its learned answer
    prompt = glmtune.build_chat_input(t, [*conv(2), {"role": "user", "content": Q[2]}], "alpaca-text")
    assert prompt == ids[: len(prompt)] and ids[len(prompt):len(prompt) + len(a)] == a


@pytest.mark.parametrize("gen", ["chatglm", "chatglm2"])
def test_system_message_without_slot_is_an_error(reference, gen):
    with pytest.raises(DataError, match="no system slot"):
        glmtune.encode(tok(reference, gen), [{"role": "system", "content": "x"}, *conv(1)])


@pytest.mark.parametrize(("gen", "template"), [("chatglm", None), ("chatglm2", None), ("chatglm2", "alpaca-text")])
def test_empty_system_message_is_ignored(reference, gen, template):
    # converters keep a blank system turn (sharegpt/messages rows); it says nothing, so it must not
    # fail a template without a system slot, nor put a stray blank preamble into alpaca-text
    t = tok(reference, gen)
    for blank in ("", "  "):
        empty = [{"role": "system", "content": blank}]
        assert glmtune.encode(t, [*empty, *conv(3)], template=template) == glmtune.encode(t, conv(3), template=template)
        query = [*conv(1), {"role": "user", "content": Q[1]}]
        assert glmtune.build_chat_input(t, [*empty, *query], template) == glmtune.build_chat_input(t, query, template)


def test_truncation_keeps_eos_and_counts(reference):
    t = tok(reference, "chatglm2")
    long = [{"role": "user", "content": "讲一个故事。" * 20}, {"role": "assistant", "content": "从前有座山。" * 30}]
    res = encode_conversation(t, long, cutoff_len=40)
    (ex,) = res.examples
    assert len(ex["input_ids"]) == 40 and ex["input_ids"][-1] == 2 and ex["labels"][-1] == 2
    assert ex["input_ids"][:2] == [64790, 64792] and res.truncated == 1
    head = encode_conversation(t, long, cutoff_len=40).examples[0]["input_ids"][2:8]
    tail = encode_conversation(t, long, cutoff_len=40, truncate_side="left").examples[0]["input_ids"][2:8]
    assert head == enc(t, "[Round 1]\n\n问：讲一个故事。")[:6] and tail != head
    res = encode_conversation(t, long, max_source_length=8, max_target_length=4)
    assert len(res.examples[0]["input_ids"]) == 8 + 4 + 1 and res.examples[0]["input_ids"][-1] == 2
    v3 = encode_conversation(tok(reference, "chatglm3"), long, cutoff_len=3)
    assert v3.examples == [] and v3.dropped == 1
    assert glmtune.encode(tok(reference, "chatglm3"), long, cutoff_len=3) is None


def test_long_prompt_never_leaves_an_answer_of_just_eos(reference):
    # cutoff_len 64 and an 18k-token prompt: the proportional split gives the 43-token answer 0 tokens;
    # learning eos right after the prompt would teach the model to answer long inputs with nothing
    t = tok(reference, "chatglm2")
    long = [{"role": "user", "content": "讲一个很长的故事。" * 3000}, {"role": "assistant", "content": "从前有座山。" * 8}]
    res = encode_conversation(t, long, cutoff_len=64)
    assert res.examples == [] and res.dropped == 1 and res.truncated == 1
    shorter = encode_conversation(t, [{"role": "user", "content": "讲一个很长的故事。" * 300}, long[1]], cutoff_len=64)
    (ex,) = shorter.examples  # a share of the answer fits: kept, closed by eos
    learned = [x for x in ex["labels"] if x != I]
    assert len(ex["input_ids"]) == 64 and learned[-1] == 2 and learned[:-1] == enc(t, long[1]["content"])[: len(learned) - 1]
    assert len(learned) > 1


def test_options_are_checked():
    with pytest.raises(GlmtuneError):
        glmtune.encode(None, conv(1), template="chatglm2", multi_turn="every")
    with pytest.raises(GlmtuneError):
        glmtune.encode(None, conv(1), template="chatglm2", cutoff_len=10, max_source_length=5, max_target_length=5)
